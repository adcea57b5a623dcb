"""Stage caching: a folder holds one stage's outputs, `done.json` (layout.STAGE_DONE) says for which input hash.

A finished stage with the same hash is skipped; a folder holding another hash's outputs is
cleared first; a folder with a matching but unfinished `stage.json` (STAGE_STARTED) is left as it is, so the stage
resumes from the checkpoint inside.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pae_lab.fsutil import read_json, write_json
from pae_lab.layout import STAGE_DONE, STAGE_STARTED


@dataclass
class StageResult:
    summary: dict[str, Any]
    skipped: bool
    seconds: float


def is_done(stage_dir: Path, digest: str) -> bool:
    done = read_json(Path(stage_dir) / STAGE_DONE)
    return bool(done) and done.get("hash") == digest


def run_cached(stage_dir: Path, digest: str, fn: Callable[[Path], dict[str, Any]], force: bool = False) -> StageResult:
    stage_dir = Path(stage_dir)
    done = read_json(stage_dir / STAGE_DONE)
    if done and done.get("hash") == digest and not force:
        return StageResult(done.get("summary", {}), True, 0.0)
    started = read_json(stage_dir / STAGE_STARTED)
    if stage_dir.exists() and (force or not started or started.get("hash") != digest):
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    if not (stage_dir / STAGE_STARTED).exists():
        write_json(stage_dir / STAGE_STARTED, {"hash": digest, "started": time.time()})
    t0 = time.perf_counter()
    summary = fn(stage_dir)
    seconds = time.perf_counter() - t0
    write_json(stage_dir / STAGE_DONE, {"hash": digest, "summary": summary, "seconds": seconds, "finished": time.time()})
    return StageResult(summary, False, seconds)
