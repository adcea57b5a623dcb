"""A process that holds and forgets calls in one folder (tests/test_tracking_outage.py's many-writers
test): its own module, so a spawned worker imports the held-calls code alone, not torch."""
from __future__ import annotations

from pathlib import Path

from pae_lab.tracking.held import call, forget, hold


def hold_many(folder: Path, worker: int, start, n: int) -> None:
    start.wait()  # every worker starts its loop at once
    for i in range(n):
        hold(folder, call(folder, "tags", tags={"n": f"{worker}.{i}"}))
        hold(folder, extra := call(folder, "tags", tags={"n": "gone"}))
        forget(folder, extra)
