"""Launchers: how the driver executes jobs. Stages never know which one runs them.

inline  in this process (a worker thread, so the live view keeps drawing): tests, debugging.
local   submitit LocalExecutor subprocesses, at most `max_parallel` at once: a laptop or workstation.
slurm   submitit job arrays on a cluster; jobs are Checkpointable and requeue on timeout.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from pae_lab.schema import LauncherConfig
from pae_lab.job import RunJob, execute_run
from pae_lab.registry import Registry

Poll = Callable[[], None]
LAUNCHERS: Registry[type["Launcher"]] = Registry("launcher")


class Launcher:
    def __init__(self, cfg: LauncherConfig, folder: Path):
        self.cfg, self.folder = cfg, Path(folder)

    def threads(self) -> int:
        return self.cfg.threads_per_job or max(1, (os.cpu_count() or 1) // self.cfg.max_parallel)

    def launch(self, jobs: list[Path], poll: Poll) -> dict[Path, dict[str, Any]]:
        raise NotImplementedError


def _died(exc: BaseException) -> dict[str, Any]:
    return {"status": "failed", "stage": "job", "error": f"job died: {type(exc).__name__}: {str(exc)[-2000:]}"}


@LAUNCHERS.decorator("inline")
class InlineLauncher(Launcher):
    def launch(self, jobs: list[Path], poll: Poll) -> dict[Path, dict[str, Any]]:
        outcomes: dict[Path, dict[str, Any]] = {}

        def work() -> None:
            for path in jobs:
                try:
                    outcomes[path] = execute_run(path, self.cfg.threads_per_job)
                except BaseException as exc:  # noqa: BLE001 - recorded, the next run still goes
                    outcomes[path] = _died(exc)

        worker = threading.Thread(target=work, name="pae-lab-inline", daemon=True)
        worker.start()
        while worker.is_alive():
            poll()
            worker.join(0.5)
        poll()
        return outcomes


class SubmititLauncher(Launcher):
    """Shared polling for the submitit launchers: submit, watch, collect."""

    def executor(self):
        raise NotImplementedError

    def submit(self, executor, jobs: list[Path]) -> list:
        return [executor.submit(RunJob(), str(p), self.threads()) for p in jobs]

    def collect(self, job) -> dict[str, Any]:
        try:
            return job.result()
        except Exception as exc:  # the job process died (killed, OOM, timeout without requeue)
            return _died(exc)

    def launch(self, jobs: list[Path], poll: Poll) -> dict[Path, dict[str, Any]]:
        executor = self.executor()
        limit = self.max_in_flight(len(jobs))
        queue, running, outcomes = list(jobs), {}, {}
        try:
            while queue or running:
                while queue and len(running) < limit:
                    batch = queue[: limit - len(running)]
                    queue = queue[len(batch):]
                    running.update(zip(self.submit(executor, batch), batch))
                for job in [j for j in running if j.done()]:
                    outcomes[running.pop(job)] = self.collect(job)
                poll()
                time.sleep(1.0)
        except BaseException:  # Ctrl-C or a driver error: leave no orphan jobs; checkpoints keep the work
            for job in running:
                job.cancel(check=False)
            raise
        poll()
        return outcomes

    def max_in_flight(self, n: int) -> int:
        return self.cfg.max_parallel


@LAUNCHERS.decorator("local")
class LocalLauncher(SubmititLauncher):
    def executor(self):
        import submitit

        ex = submitit.LocalExecutor(folder=str(self.folder / "%j"))
        ex.update_parameters(timeout_min=self.cfg.timeout_min)
        return ex


@LAUNCHERS.decorator("slurm")
class SlurmLauncher(SubmititLauncher):
    def executor(self):
        import submitit

        s = self.cfg.slurm
        ex = submitit.AutoExecutor(folder=str(self.folder / "%j"), cluster="slurm", slurm_max_num_timeout=s.max_num_timeout)
        params: dict[str, Any] = dict(timeout_min=s.timeout_min, gpus_per_node=s.gpus_per_node, cpus_per_task=s.cpus_per_task,
                                      mem_gb=s.mem_gb, slurm_array_parallelism=s.array_parallelism,
                                      slurm_additional_parameters=dict(s.additional_parameters))
        for key in ("partition", "account", "qos"):
            if getattr(s, key):
                params[f"slurm_{key}"] = getattr(s, key)
        ex.update_parameters(**params)
        return ex

    def threads(self) -> int:
        return self.cfg.threads_per_job or self.cfg.slurm.cpus_per_task

    def submit(self, executor, jobs: list[Path]) -> list:
        return executor.map_array(RunJob(), [str(p) for p in jobs], [self.threads()] * len(jobs))

    def max_in_flight(self, n: int) -> int:
        return max(n, 1)  # SLURM queues the array itself, capped by slurm_array_parallelism


def build_launcher(cfg: LauncherConfig, folder: Path) -> Launcher:
    return LAUNCHERS.get(cfg.name)(cfg, folder)
