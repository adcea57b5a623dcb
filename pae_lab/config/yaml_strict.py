"""A YAML reader for study files that refuses what PyYAML lets slip through.

`yaml.safe_load` keeps the last of two equal keys, decodes bytes it was never meant to read and
recurses until Python gives up. Here a duplicate key, a binary or non-UTF-8 file and nesting
deeper than `MAX_DEPTH` each become one `YAMLInputError` line naming the file and the key or line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_DEPTH = 32  # a study is ~4 levels deep; this only stops pathological files


class YAMLInputError(ValueError):
    """One line: file, where, what is wrong."""


class _DepthLimitedLoader(yaml.SafeLoader):
    """SafeLoader whose composer stops at MAX_DEPTH instead of hitting RecursionError."""

    def __init__(self, stream: str, path: Path):
        super().__init__(stream)
        self._path = path
        self._depth = 0

    def compose_node(self, parent, index):  # noqa: ANN001 (PyYAML's signature)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YAMLInputError(f"{self._path}: line {mark.line + 1}: nesting deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _key_text(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else f"<{node.tag.rsplit(':', 1)[-1]}>"


def _check_duplicates(node: yaml.Node, path: Path, where: str = "") -> None:
    """Walk the composed tree: a key seen twice in one mapping is an error naming its dotted path."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = _key_text(key_node)
            dotted = f"{where}.{key}" if where else key
            if key != "<<":
                if key in seen:
                    raise YAMLInputError(f"{path}: {dotted}: duplicate key (line {key_node.start_mark.line + 1}; "
                                         f"first set on line {seen[key]})")
                seen[key] = key_node.start_mark.line + 1
            _check_duplicates(value_node, path, dotted)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicates(item, path, f"{where}[{i}]")


def decode_text(path: Path, data: bytes) -> str:
    """UTF-8 text or a one-line error: binary files (NUL bytes) and other encodings are refused."""
    nul = data.find(b"\x00")
    if nul >= 0:
        raise YAMLInputError(f"{path}: binary file (NUL byte at offset {nul}), not a YAML study")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise YAMLInputError(f"{path}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                             f"{exc.start}); save the file as UTF-8") from None


def load_strict(path: Path) -> Any:
    """The document in `path`, or YAMLInputError (also for YAML syntax errors, with line and column)."""
    path = Path(path)
    loader = _DepthLimitedLoader(decode_text(path, path.read_bytes()), path)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_duplicates(node, path)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise YAMLInputError(f"{path}: invalid YAML: {where}{getattr(exc, 'problem', None) or exc}") from None
    finally:
        loader.dispose()
