"""Stage caching: a folder holds one stage's outputs, `done.json` (layout.STAGE_DONE) says for which input hash.

A finished stage with the same hash is skipped; a folder holding another hash's outputs is
cleared first; a folder with a matching but unfinished `stage.json` (STAGE_STARTED) is left as it is, so the stage
resumes from the checkpoint inside.

In a multi-process job rank 0 alone reads and writes these files; the other ranks get its
verdict and, for a distributed stage, run the stage beside it.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from pae_lab.fsutil import read_json, write_json
from pae_lab.plan.layout import STAGE_DONE, STAGE_STARTED


class Ranks(Protocol):
    """What caching needs of a multi-process job (pae_lab.stages.distributed.Dist has it)."""

    @property
    def is_main(self) -> bool: ...

    def from_main(self, fn: Callable[[], Any]) -> Any: ...

    def barrier(self) -> None: ...


@dataclass
class StageResult:
    summary: dict[str, Any]
    skipped: bool
    seconds: float


def is_done(stage_dir: Path, digest: str) -> bool:
    done = read_json(Path(stage_dir) / STAGE_DONE)
    return bool(done) and done.get("hash") == digest


def _open(stage_dir: Path, digest: str, force: bool) -> StageResult | None:
    """The cached result, or None after the folder was made ready (cleared if it held another hash)."""
    done = read_json(stage_dir / STAGE_DONE)
    if done and done.get("hash") == digest and not force:
        return StageResult(done.get("summary", {}), True, 0.0)
    started = read_json(stage_dir / STAGE_STARTED)
    if stage_dir.exists() and (force or not started or started.get("hash") != digest):
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    if not (stage_dir / STAGE_STARTED).exists():
        write_json(stage_dir / STAGE_STARTED, {"hash": digest, "started": time.time()})
    return None


def run_cached(stage_dir: Path, digest: str, fn: Callable[[Path], dict[str, Any]], force: bool = False,
               dist: Ranks | None = None, every_rank: bool = False) -> StageResult:
    """`every_rank`: all processes of the job run `fn` (a data-parallel training stage); else rank 0 alone."""
    stage_dir = Path(stage_dir)
    main = dist is None or dist.is_main
    ask_main = dist.from_main if dist is not None else (lambda f: f())  # torch-free when there is no Dist
    cached = ask_main(lambda: _open(stage_dir, digest, force))
    if cached is not None:
        return cached
    t0 = time.perf_counter()
    summary = fn(stage_dir) if main or every_rank else {}
    seconds = time.perf_counter() - t0
    if main:
        write_json(stage_dir / STAGE_DONE, {"hash": digest, "summary": summary, "seconds": seconds, "finished": time.time()})
    if dist is not None:
        dist.barrier()  # the next stage reads this one's files
    return StageResult(summary, False, seconds)
