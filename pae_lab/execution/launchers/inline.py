"""The `inline` launcher: every job in this process (a worker thread, so the live view keeps drawing); tests, debugging."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Literal

from pydantic import Field

from pae_lab.config.launchers import LauncherConfig
from pae_lab.execution.launchers.base import Launcher, Outcome, Poll, died, register_launcher


class InlineConfig(LauncherConfig):
    """`inline`: one job after the other in this process, always one process per job."""

    name: Literal["inline"] = Field("inline", description="`inline`: the jobs run in this process.")
    threads_per_job: int | None = Field(None, ge=1, description="torch threads while a job runs; default: torch's own.")


@register_launcher("inline", InlineConfig)
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
