"""Launchers: how the driver executes jobs. Stages never know which one runs them.

inline  in this process (a worker thread, so the live view keeps drawing): tests, debugging.
local   submitit LocalExecutor subprocesses, at most `max_parallel` at once and only as many as fit
        in memory: a laptop or workstation.
slurm   submitit job arrays on a cluster; jobs are Checkpointable and requeue on timeout.

Every launcher returns one outcome per job, also for a job that died outside Python (SIGKILL, the
OOM killer, scancel, node loss, a time limit without requeue): `{"status": "failed", "error":
<the launcher's or scheduler's reason>, "killed": True}`. This module stays light: submitit and
the job code (every stage) are imported only when jobs are submitted.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pae_lab.registry import Registry

if TYPE_CHECKING:
    from pae_lab.config.schema import LauncherConfig

Poll = Callable[[], None]
Log = Callable[[str], None]
Outcome = dict[str, Any]
LAUNCHERS: Registry[type["Launcher"]] = Registry("launcher")


class Launcher:
    remote = False  # its jobs run on other machines (a cluster's nodes): the shared stages go to a job too

    def __init__(self, cfg: "LauncherConfig", folder: Path, log: Log | None = None):
        self.cfg, self.folder = cfg, Path(folder)
        self.log: Log = log or (lambda message: None)

    def threads(self) -> int:
        """torch threads of each process of a job."""
        share = max(1, (os.cpu_count() or 1) // (self.cfg.max_parallel * self.cfg.tasks_per_job))
        return self.cfg.threads_per_job or share

    def launch(self, jobs: list[Path], poll: Poll) -> dict[Path, Outcome]:
        raise NotImplementedError


def died(reason: str, killed: bool = True) -> Outcome:
    """The outcome of a job that could not record its own failure."""
    return {"status": "failed", "stage": "job", "error": reason[-2000:], "killed": killed}


@LAUNCHERS.decorator("inline")
class InlineLauncher(Launcher):
    def launch(self, jobs: list[Path], poll: Poll) -> dict[Path, Outcome]:
        from pae_lab.execution.job import execute

        outcomes: dict[Path, Outcome] = {}

        def work() -> None:
            for path in jobs:
                try:
                    outcomes[path] = execute(path, self.cfg.threads_per_job)
                except BaseException as exc:  # noqa: BLE001 - recorded, the next run still goes
                    outcomes[path] = died(f"job died: {type(exc).__name__}: {exc}", killed=False)

        worker = threading.Thread(target=work, name="pae-lab-inline", daemon=True)
        worker.start()
        while worker.is_alive():
            poll()
            worker.join(0.5)
        poll()
        return outcomes


class SubmititLauncher(Launcher):
    """Shared loop of the submitit launchers: submit what may start, watch, collect."""

    def executor(self):
        raise NotImplementedError

    def submit(self, executor, jobs: list[Path]) -> list:
        from pae_lab.execution.job import RunJob

        return [executor.submit(RunJob(), str(p), self.threads()) for p in jobs]

    def may_start(self, running: list) -> bool:
        return len(running) < self.cfg.max_parallel

    def watch(self, running: list) -> None:
        """Called every poll with the jobs in flight."""

    def ended(self, job) -> str | None:
        """None while the job may still produce its result; else why it ended without one."""
        raise NotImplementedError

    def outcome(self, job) -> Outcome | None:
        lead = job.task(0) if job.num_tasks > 1 else job  # rank 0 records a data-parallel job's outcome
        if lead.paths.result_pickle.exists():
            try:
                return lead.result()
            except Exception as exc:  # the job raised outside execute_run (e.g. unpicklable outcome)
                return died(f"job {job.job_id} raised: {type(exc).__name__}: {str(exc)[-1500:]}", killed=False)
        reason = self.ended(job)
        if reason is None:
            return None
        if lead.paths.result_pickle.exists():  # written just before the process ended
            return self.outcome(job)
        tail = (lead.stderr() or "").strip().splitlines()[-3:]
        return died(reason + (f"; stderr: {' | '.join(tail)}" if tail else ""))

    def launch(self, jobs: list[Path], poll: Poll) -> dict[Path, Outcome]:
        executor = self.executor()
        queue, running, outcomes = list(jobs), {}, {}
        try:
            while queue or running:
                while queue and self.may_start(list(running)):
                    n = len(queue) if self.batches else 1
                    batch, queue = queue[:n], queue[n:]
                    running.update(zip(self.submit(executor, batch), batch))
                self.watch(list(running))
                for job in list(running):
                    outcome = self.outcome(job)
                    if outcome is not None:
                        outcomes[running.pop(job)] = outcome
                poll()
                if queue or running:
                    time.sleep(1.0)
        except BaseException:  # Ctrl-C or a driver error: leave no orphan jobs; checkpoints keep the work
            for job in running:
                job.cancel(check=False)
            raise
        poll()
        return outcomes

    batches = False  # submit everything admitted in one call (a job array) instead of one by one


@LAUNCHERS.decorator("local")
class LocalLauncher(SubmititLauncher):
    def __init__(self, cfg: "LauncherConfig", folder: Path, log: Log | None = None):
        from pae_lab.execution.launchers.memguard import MemoryGuard

        super().__init__(cfg, folder, log)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.guard = MemoryGuard(self.folder, cfg.mem_gb_per_job, self.log)

    def executor(self):
        import submitit

        python = f"{shlex.quote(sys.executable)} -m pae_lab.execution.launchers.exitwatch {shlex.quote(sys.executable)}"
        ex = submitit.LocalExecutor(folder=str(self.folder / "%j"), python=python)
        ex.update_parameters(timeout_min=self.cfg.timeout_min, tasks_per_node=self.cfg.tasks_per_job)
        return ex

    def launch(self, jobs: list[Path], poll: Poll) -> dict[Path, Outcome]:
        self.guard.announce(self.cfg.max_parallel, len(jobs))
        return super().launch(jobs, poll)

    def rss(self, jobs: list) -> list[int]:
        from pae_lab.execution.launchers.memguard import tree_rss

        return [tree_rss(job._process.pid) if getattr(job, "_process", None) else 0 for job in jobs]

    def may_start(self, running: list) -> bool:
        return super().may_start(running) and self.guard.may_start(self.rss(running))

    def watch(self, running: list) -> None:
        self.guard.observe(self.rss(running))

    def outcome(self, job) -> Outcome | None:
        out = super().outcome(job)
        if out is not None and out.get("peak_rss_bytes"):
            self.guard.observe([out["peak_rss_bytes"]])
        return out

    def ended(self, job) -> str | None:
        from pae_lab.execution.launchers.exitwatch import exit_file

        proc = getattr(job, "_process", None)
        if proc is not None and proc.poll() is None:
            return None
        path = exit_file(str(self.folder / "%j"), str(job.job_id), "0")
        record = json.loads(path.read_text()) if path.exists() else {}
        code = record.get("returncode")
        where = f"local job {job.job_id} (pid {record.get('pid', '?')})"
        if record.get("signal"):
            hint = " (also what the kernel's OOM killer sends)" if record["signal"] == "SIGKILL" else ""
            return f"{where} killed by {record['signal']}{hint}"
        if code is not None:
            return f"{where} exited with code {code} without a result"
        return f"local job {job.job_id}: its controller ended (exit {proc.returncode if proc else '?'}) without a result"


@LAUNCHERS.decorator("slurm")
class SlurmLauncher(SubmititLauncher):
    batches = True
    remote = True

    def __init__(self, cfg: "LauncherConfig", folder: Path, log: Log | None = None):
        from pae_lab.execution.launchers.slurm_state import SlurmStates

        super().__init__(cfg, folder, log)
        self.states = SlurmStates(lost_after_s=cfg.slurm.lost_after_s)

    def executor(self):
        import submitit

        s = self.cfg.slurm
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
        return self.cfg.threads_per_job or self.cfg.slurm.cpus_per_task

    def submit(self, executor, jobs: list[Path]) -> list:
        from pae_lab.execution.job import RunJob

        return executor.map_array(RunJob(), [str(p) for p in jobs], [self.threads()] * len(jobs))

    def may_start(self, running: list) -> bool:
        return True  # SLURM queues the array itself, capped by slurm_array_parallelism

    def ended(self, job) -> str | None:
        return self.states.ended(str(job.job_id))


def build_launcher(cfg: "LauncherConfig", folder: Path, log: Log | None = None) -> Launcher:
    return LAUNCHERS.get(cfg.name)(cfg, folder, log)
