"""Reading a study file: YAML safely, the study's plugins, validation against the schema.

`load_config(path)` gives a validated StudyConfig; `pae_lab.plan.preflight.load_study(path)` adds
the checks that need the registries and the files. Every problem becomes one `StudyError` line
that names the file, the key path and the bad value.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pae_lab.config.errors import StudyError
from pae_lab.config.plugins import import_plugins
from pae_lab.config.yaml_strict import YAMLInputError, load_strict
from pae_lab.config.schema import StudyConfig


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _format_validation(path: Path, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith(("str", "dict["))))
    msg = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    shown = "" if first["type"] == "missing" or isinstance(value, dict) else f" (got {value!r})"
    more = f" [+{len(err.errors()) - 1} more]" if len(err.errors()) > 1 else ""
    return f"{path}: {_loc(loc) or '<top>'}: {msg}{shown}{more}"


def read_yaml(path: Path) -> dict[str, Any]:
    """The study file as a mapping; duplicate keys, binary, non-UTF-8 and too deep files are refused."""
    if not path.is_file():
        raise StudyError(f"{path}: study file not found")
    try:
        raw = load_strict(path)
    except YAMLInputError as exc:
        raise StudyError(str(exc)) from None
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: the study must be a YAML mapping, got {type(raw).__name__}")
    return raw


def parse_study(raw: dict[str, Any], path: Path) -> StudyConfig:
    """The study's plugins imported, then the mapping validated against the schema."""
    import_plugins(path, raw.get("plugins"))
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as err:
        raise StudyError(_format_validation(path, err)) from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> StudyConfig:
    """Read and validate a study file; `overrides` are dotted keys set on top."""
    path = Path(path)
    raw = read_yaml(path)
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value)
    return parse_study(raw, path)


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set `a.b.c` in nested dicts, creating levels as needed."""
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise StudyError(f"cannot set {key!r}: {part!r} is not a mapping")
    node[leaf] = value
