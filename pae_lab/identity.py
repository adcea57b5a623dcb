"""Run and stage identity: the hash of exactly the inputs a result depends on.

Same hash, same result: a finished stage with a matching hash is skipped, a changed input changes
the hash and the stage reruns. The package version is part of every hash, so a release that
changes results never reuses old outputs.
"""
from __future__ import annotations

import hashlib
import json
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
