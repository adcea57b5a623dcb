"""Run and stage identity: the hash of exactly the inputs a result depends on.

Same hash, same result: a finished stage with a matching hash is skipped, a changed input changes
the hash and the stage reruns. The package version is part of every hash, so a release that
changes results never reuses old outputs.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pae_lab import __version__


def canonical(value: Any) -> Any:
    """A JSON-ready, order-independent form of configs, models and paths."""
    if isinstance(value, BaseModel):
        return canonical(value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 1.0 and 1 in a YAML mean the same thing
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def content_hash(*parts: Any) -> str:
    payload = json.dumps([__version__, *map(canonical, parts)], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def path_digest(path: str | os.PathLike | None) -> str | None:
    """What a named file or folder holds: a file's content hash; a folder's file list with sizes and
    modification times (so adding, removing or rewriting an image changes it). None stays None."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if p.is_file():
        stat = p.stat()
        return _file_sha256(str(p.resolve()), stat.st_size, stat.st_mtime_ns)
    if p.is_dir():
        h = hashlib.sha256()
        for root, dirs, files in os.walk(p):
            dirs.sort()
            for name in sorted(files):
                f = Path(root) / name
                stat = f.stat()
                h.update(f"{f.relative_to(p)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return "dir:" + h.hexdigest()[:16]
    return "missing"


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return "file:" + h.hexdigest()[:16]
