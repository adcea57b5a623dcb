"""Progress files: jobs write where they are, the driver (any launcher) reads and renders them."""
from __future__ import annotations

import time
from pathlib import Path

from pae_lab.fsutil import read_json, write_json
from pae_lab.plan.layout import RunLayout



class ProgressWriter:
    """Throttled writer of `{stage, step, total, status}` for one run folder."""

    def __init__(self, run_dir: Path, every_s: float = 0.5):
        self.path = RunLayout(Path(run_dir)).progress
        self.every_s = every_s
        self._last = 0.0

    def update(self, stage: str, step: int, total: int, status: str = "running", force: bool = False, **extra) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.every_s or step >= total:
            self._last = now
            write_json(self.path, {"stage": stage, "step": step, "total": total, "status": status, "time": time.time(), **extra})


def read_progress(run_dir: Path) -> dict:
    return read_json(RunLayout(Path(run_dir)).progress, default={}) or {}
