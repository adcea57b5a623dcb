"""Keeps the `local` launcher's jobs within the machine's memory.

Sixteen jobs started at once all look small; their peak comes late (the FD step), and then the
kernel's OOM killer picks some. So the guard works from a per-job estimate: `launcher.mem_gb_per_job`
or, once any job of the study has run, the largest peak RSS measured (psutil while it runs, its
own ru_maxrss when it ends), kept in the launcher folder for the next attempt. A new job starts only
if the available memory, less what the running jobs may still grow by, holds one more estimate.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import psutil

from pae_lab.fsutil import read_json, write_json
from pae_lab.plan.layout import PEAK_RSS

GB = 1024**3
MARGIN = 1.1  # headroom over the estimate: page cache, the driver itself


def tree_rss(pid: int) -> int:
    """Resident memory of a process and its children, 0 once it is gone."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def admits(available: int, estimate: int, running_rss: Iterable[int]) -> bool:
    """One more job fits if, after every running job grows to the estimate, one estimate is left."""
    rss = list(running_rss)
    if not rss or estimate <= 0:
        return True  # nothing running: always start one, or nothing would ever run
    reserve = sum(max(0, estimate - r) for r in rss)
    return available - reserve >= estimate * MARGIN


class MemoryGuard:
    def __init__(self, folder: Path, per_job_gb: float | None, log: Callable[[str], None]):
        self.path = Path(folder) / PEAK_RSS
        self.configured = int((per_job_gb or 0) * GB)
        self.measured = int((read_json(self.path, {}) or {}).get("peak_rss_bytes", 0))
        self.log = log
        self._holding = False

    @property
    def estimate(self) -> int:
        return max(self.configured, self.measured)

    def announce(self, max_parallel: int, jobs: int) -> None:
        """Before anything starts: say how many jobs fit, or that nothing is known yet."""
        want = min(max_parallel, jobs)
        if want <= 1:
            return
        available = psutil.virtual_memory().available
        if not self.estimate:
            self.log(f"local launcher: no per-job memory estimate yet (set launcher.mem_gb_per_job); starting up to "
                     f"{want} jobs in {available / GB:.1f} GB available, later attempts are capped by the measured peak")
            return
        fit = max(1, int(available // (self.estimate * MARGIN)))
        if fit < want:
            self.log(f"local launcher: max_parallel {max_parallel} but only {fit} jobs of ~{self.estimate / GB:.2f} GB "
                     f"fit in {available / GB:.1f} GB available: running at most {fit} at once")

    def observe(self, rss: Iterable[int]) -> None:
        peak = max(rss, default=0)
        if peak > self.measured:
            self.measured = peak
            write_json(self.path, {"peak_rss_bytes": peak})

    def may_start(self, running_rss: list[int]) -> bool:
        ok = admits(psutil.virtual_memory().available, self.estimate, running_rss)
        if not ok and not self._holding:
            self.log(f"local launcher: holding further jobs until memory frees up ({len(running_rss)} running, "
                     f"~{self.estimate / GB:.2f} GB each, {psutil.virtual_memory().available / GB:.1f} GB available)")
        self._holding = not ok
        return ok
