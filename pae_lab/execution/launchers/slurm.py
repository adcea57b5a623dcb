"""The `slurm` launcher: submitit job arrays on a cluster; jobs are Checkpointable and requeue on timeout."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from pae_lab.config.launchers import LauncherConfig
from pae_lab.execution.launchers.base import Log, SubmititLauncher, register_launcher


class SlurmConfig(LauncherConfig):
    """`slurm`: submitit job arrays, one array task per run."""

    name: Literal["slurm"] = Field("slurm", description="`slurm`: submitit job arrays on a SLURM cluster.")
    threads_per_job: int | None = Field(None, ge=1, description="torch threads per job process; default: cpus_per_task.")
    partition: str | None = Field(None, description="SLURM partition.")
    account: str | None = Field(None, description="SLURM account.")
    qos: str | None = Field(None, description="SLURM QOS.")
    gpus_per_node: int = Field(1, ge=0, description="GPUs per node of a job.")
    nodes: int = Field(1, ge=1, description="Nodes per job; with tasks_per_node, the processes of one data-parallel job.")
    tasks_per_node: int | None = Field(None, ge=1, description="Processes per node (one per GPU); default: gpus_per_node, "
                                       "or 1 on a CPU cluster.")
    cpus_per_task: int = Field(8, ge=1, description="CPU cores per process (also its torch threads).")
    mem_gb: int = Field(32, ge=1, description="Memory per job in GB.")
    timeout_min: int = Field(240, ge=3, description="Checkpointable jobs are requeued on timeout (>= 3: submitit signals 90 s early).")
    max_num_timeout: int = Field(3, ge=0, description="Requeues on timeout before giving up.")
    array_parallelism: int = Field(64, ge=1, description="Array jobs running at once (slurm_array_parallelism).")
    additional_parameters: dict[str, Any] = Field(default_factory=dict, description="Extra sbatch options, e.g. {constraint: a100}.")
    lost_after_s: int = Field(600, ge=1, description="A job the SLURM controller no longer knows (or that scontrol cannot "
                              "answer for), with no result, is recorded as failed after this many seconds.")

    def tasks(self) -> int:
        """Processes per node: one per GPU unless given."""
        return self.tasks_per_node or max(self.gpus_per_node, 1)

    def processes_per_job(self) -> int:
        return self.nodes * self.tasks()


@register_launcher("slurm", SlurmConfig)
class SlurmLauncher(SubmititLauncher):
    batches = True
    remote = True
    cfg: SlurmConfig

    def __init__(self, cfg: SlurmConfig, folder: Path, log: Log | None = None):
        from pae_lab.execution.launchers.slurm_state import SlurmStates

        super().__init__(cfg, folder, log)
        self.states = SlurmStates(lost_after_s=cfg.lost_after_s)

    def executor(self):
        import submitit

        s = self.cfg
        ex = submitit.AutoExecutor(folder=str(self.folder / "%j"), cluster="slurm", slurm_max_num_timeout=s.max_num_timeout)
        params: dict[str, Any] = dict(timeout_min=s.timeout_min, gpus_per_node=s.gpus_per_node, cpus_per_task=s.cpus_per_task,
                                      nodes=s.nodes, tasks_per_node=s.tasks(),
                                      mem_gb=s.mem_gb, slurm_array_parallelism=s.array_parallelism,
                                      slurm_additional_parameters=dict(s.additional_parameters))
        if not s.gpus_per_node:
            params.pop("gpus_per_node")  # no --gpus-per-node at all: a CPU cluster has no gres
        for key in ("partition", "account", "qos"):
            if getattr(s, key):
                params[f"slurm_{key}"] = getattr(s, key)
        ex.update_parameters(**params)
        return ex

    def threads(self) -> int:
        return self.cfg.threads_per_job or self.cfg.cpus_per_task

    def submit(self, executor, jobs: list[Path]) -> list:
        from pae_lab.execution.job import RunJob

        return executor.map_array(RunJob(), [str(p) for p in jobs], [self.threads()] * len(jobs))

    def may_start(self, running: list) -> bool:
        return True  # SLURM queues the array itself, capped by slurm_array_parallelism

    def ended(self, job) -> str | None:
        return self.states.ended(str(job.job_id))
