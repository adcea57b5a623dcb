"""Launchers: how the driver executes jobs. Stages never know which one runs them.

One module per launcher, each registering itself with `register_launcher` (the call a plugin
uses) and bringing its own settings model: `inline` (this process), `local` (submitit
subprocesses), `slurm` (submitit job arrays). The registry is `pae_lab.catalog.LAUNCHERS`.

Every launcher returns one outcome per job, also for a job that died outside Python (SIGKILL, the
OOM killer, scancel, node loss, a time limit without requeue): `{"status": "failed", "error":
<the launcher's or scheduler's reason>, "killed": True}`. These modules stay light: submitit and
the job code (every stage) are imported only when jobs are submitted.
"""
from __future__ import annotations

import importlib
import os
import time
from pathlib import Path
from typing import Any, Callable, ClassVar, TypeVar

from pae_lab.catalog import LAUNCHERS
from pae_lab.config.launchers import LauncherConfig
from pae_lab.registry import RegistryError

Poll = Callable[[], None]
Log = Callable[[str], None]
Outcome = dict[str, Any]
L = TypeVar("L", bound=type["Launcher"])


class Launcher:
    remote = False  # its jobs run on other machines (a cluster's nodes): the shared stages go to a job too
    config: ClassVar[type[LauncherConfig]] = LauncherConfig  # set by register_launcher

    def __init__(self, cfg: LauncherConfig, folder: Path, log: Log | None = None):
        self.cfg, self.folder = cfg, Path(folder)
        self.log: Log = log or (lambda message: None)

    def threads(self) -> int:
        """torch threads of each process of a job."""
        return self.cfg.threads_per_job or max(1, (os.cpu_count() or 1) // self.cfg.processes_per_job())

    def launch(self, jobs: list[Path], poll: Poll) -> dict[Path, Outcome]:
        raise NotImplementedError


def register_launcher(name: str, config: type[LauncherConfig]) -> Callable[[L], L]:
    """`@register_launcher("name", MyConfig)` on a Launcher subclass: `launcher: {name: ..., ...}` in a study is
    then validated by MyConfig (a LauncherConfig subclass) and runs its jobs through the class."""
    if not (isinstance(config, type) and issubclass(config, LauncherConfig)):
        raise RegistryError(f"launcher {name!r}: config must subclass LauncherConfig, got {config!r}")

    def wrap(cls: L) -> L:
        LAUNCHERS.register(name, cls)  # checks the name and that cls is a Launcher
        cls.config = config
        return cls

    return wrap


def died(reason: str, killed: bool = True) -> Outcome:
    """The outcome of a job that could not record its own failure."""
    return {"status": "failed", "stage": "job", "error": reason[-2000:], "killed": killed}


def pickled_outcome(job_id: str, paths) -> Outcome | None:
    """A submitit job's outcome from its result file (submitit moves it into place whole), or None while this
    submission has none: a local job's id is its pid, and a reused pid's folder may hold an older job's file.
    Raises when the file cannot be read."""
    from submitit.core.utils import pickle_load

    result, submitted = paths.result_pickle, paths.submitted_pickle
    if not result.exists() or (submitted.exists() and result.stat().st_mtime < submitted.stat().st_mtime):
        return None
    status, value = pickle_load(result)
    if status == "success":
        return value
    return died(f"job {job_id} raised: {str(value)[-1500:]}", killed=False)  # outside execute_run (e.g. unpicklable)


class SubmititLauncher(Launcher):
    """Shared loop of the submitit launchers: submit what may start, watch, collect."""

    batches = False  # submit everything admitted in one call (a job array) instead of one by one

    def executor(self):
        raise NotImplementedError

    def submit(self, executor, jobs: list[Path]) -> list:
        from pae_lab.execution.job import RunJob

        return [executor.submit(RunJob(), str(p), self.threads()) for p in jobs]

    def may_start(self, running: list) -> bool:
        raise NotImplementedError

    def watch(self, running: list) -> None:
        """Called every poll with the jobs in flight."""

    def ended(self, job) -> str | None:
        """None while the job may still produce its result; else why it ended without one."""
        raise NotImplementedError

    def outcome(self, job) -> Outcome | None:
        """The job's outcome once it has one, else None. A one-process job that holds no GPU is done when its
        result is written: `Job.result()` would also wait out the process's exit (3 s on average over the
        default ablation's 30 jobs, up to 10 s), in which the next job may as well start. A job of several
        ranks, or one that holds a GPU, is waited for until it has exited."""
        lead = job.task(0) if job.num_tasks > 1 else job  # rank 0 records a data-parallel job's outcome
        reason = self.ended(job)  # first: a result written before the process ended is then seen below
        try:
            found = pickled_outcome(job.job_id, lead.paths)
        except Exception as exc:  # e.g. a slow shared file system: ask again while the job lives
            if reason is None:
                return None
            return died(f"job {job.job_id}: its result file could not be read: {type(exc).__name__}: {exc}", killed=False)
        if found is not None:
            early = job.num_tasks == 1 and not found.get("holds_gpu")
            return found if early or reason is not None else None
        if reason is None:
            return None
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


def build_launcher(cfg: LauncherConfig, folder: Path, log: Log | None = None) -> Launcher:
    return LAUNCHERS.get(cfg.name)(cfg, folder, log)


_MOVED = {"InlineLauncher": "inline", "LocalLauncher": "local", "SlurmLauncher": "slurm"}


def __getattr__(name: str) -> Any:
    """The built-in launchers lived here before issue 22: `from ...launchers.base import SlurmLauncher` still works."""
    if name in _MOVED:
        return getattr(importlib.import_module(f"{__name__.rpartition('.')[0]}.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
