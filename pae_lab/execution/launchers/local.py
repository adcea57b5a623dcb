"""The `local` launcher: submitit LocalExecutor subprocesses, at most `max_parallel` at once and only as
many as fit in memory: a laptop or workstation."""
from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field

from pae_lab.config.launchers import LauncherConfig
from pae_lab.execution.launchers.base import Log, Outcome, Poll, SubmititLauncher, register_launcher


class LocalConfig(LauncherConfig):
    """`local`: submitit subprocesses on this machine."""

    name: Literal["local"] = Field("local", description="`local`: submitit subprocesses on this machine.")
    max_parallel: int = Field(1, ge=1, description="Runs in flight at once.")
    threads_per_job: int | None = Field(None, ge=1, description="torch threads per job process; default: CPU cores / "
                                        "(max_parallel x tasks_per_job).")
    timeout_min: int = Field(120, ge=1, description="Wall-clock limit of one local job.")
    tasks_per_job: int = Field(1, ge=1, description="Processes per local job: data-parallel training (gloo on the CPU, "
                               "NCCL with one GPU each); the threads are split between them.")
    mem_gb_per_job: float | None = Field(None, gt=0, description="Memory one local job may peak at; default: the largest "
                                         "peak measured by earlier jobs of this study. Local jobs start only while one more fits.")

    def processes_per_job(self) -> int:
        return self.tasks_per_job


@register_launcher("local", LocalConfig)
class LocalLauncher(SubmititLauncher):
    cfg: LocalConfig

    def __init__(self, cfg: LocalConfig, folder: Path, log: Log | None = None):
        from pae_lab.execution.launchers.memguard import MemoryGuard

        super().__init__(cfg, folder, log)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.guard = MemoryGuard(self.folder, cfg.mem_gb_per_job, self.log)

    def threads(self) -> int:
        share = max(1, (os.cpu_count() or 1) // (self.cfg.max_parallel * self.cfg.tasks_per_job))
        return self.cfg.threads_per_job or share

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
        return len(running) < self.cfg.max_parallel and self.guard.may_start(self.rss(running))

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
