"""A YAML reader for study files that refuses what PyYAML lets slip through.

`yaml.safe_load` keeps the last of two equal keys, decodes bytes it was never meant to read,
recurses until Python gives up and lets aliases of aliases (the "billion laughs") grow a few
lines into a billion values. Here a duplicate key, a binary or non-UTF-8 file, nesting deeper
than `MAX_DEPTH`, an alias inside its own anchor and a node expanding to more than `MAX_NODES`
values each become one `YAMLInputError` line naming the file and the key or line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_DEPTH = 32  # a study is ~4 levels deep; this only stops pathological files
MAX_NODES = 100_000  # a study expands to a few hundred nodes; nine aliases of aliases make 9**9


class YAMLInputError(ValueError):
    """One line: file, where, what is wrong."""


def _dotted(where: str, step: Any) -> str:
    """`where` one step further down: `[i]` for a list item, `.key` for a mapping value."""
    if step is None:
        return where
    if isinstance(step, int):
        return f"{where}[{step}]"
    return f"{where}.{step}" if where else str(step)


def _key_text(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else f"<{node.tag.rsplit(':', 1)[-1]}>"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader whose composer measures as it builds, so no later walk or copy ever expands a bomb.

    PyYAML composes an alias as the very node of its anchor, so the tree stays small while what it
    stands for (and what every walk over it, the duplicate check, pydantic or a hash, sees) grows
    geometrically. Each node's expanded size is summed from its children's once, when it is composed.
    """

    def __init__(self, stream: str, path: Path):
        super().__init__(stream)
        self._path = path
        self._where = [""]  # dotted key of the node being composed, one entry per level
        self._sizes: dict[int, int] = {}  # id(node) -> values it expands to; absent while it is composed

    def _fail(self, mark: yaml.Mark, what: str) -> None:
        where = self._where[-1] or "<top>"
        raise YAMLInputError(f"{self._path}: {where}: {what} (line {mark.line + 1})")

    def compose_node(self, parent, index):  # noqa: ANN001 (PyYAML's signature)
        step = _key_text(index) if isinstance(index, yaml.Node) else index
        self._where.append(_dotted(self._where[-1], step))
        try:
            if len(self._where) - 1 > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YAMLInputError(f"{self._path}: line {mark.line + 1}: nesting deeper than {MAX_DEPTH} levels")
            event = self.peek_event()
            anchored = self.anchors.get(event.anchor) if isinstance(event, yaml.AliasEvent) else None
            if anchored is not None and id(anchored) not in self._sizes:  # begun, not finished: a cycle
                self._fail(event.start_mark, f"alias *{event.anchor} inside its own anchor &{event.anchor} "
                                             "repeats forever")
            node = super().compose_node(parent, index)
            if id(node) not in self._sizes:
                self._sizes[id(node)] = self._size(node)
            return node
        finally:
            self._where.pop()

    def _size(self, node: yaml.Node) -> int:
        children = node.value if isinstance(node, yaml.SequenceNode) else (
            [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
        size = 1 + sum(self._sizes[id(child)] for child in children)
        if size > MAX_NODES:
            self._fail(node.start_mark, f"{size:,} values once its aliases are expanded, more than the "
                                        f"{MAX_NODES:,} a study may hold (aliases repeating aliases?)")
        return size


def _check_duplicates(node: yaml.Node, path: Path, where: str = "") -> None:
    """Walk the composed tree: a key seen twice in one mapping is an error naming its dotted path."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = _key_text(key_node)
            dotted = _dotted(where, key)
            if key != "<<":
                if key in seen:
                    raise YAMLInputError(f"{path}: {dotted}: duplicate key (line {key_node.start_mark.line + 1}; "
                                         f"first set on line {seen[key]})")
                seen[key] = key_node.start_mark.line + 1
            _check_duplicates(value_node, path, dotted)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicates(item, path, _dotted(where, i))


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
    loader = _StrictLoader(decode_text(path, path.read_bytes()), path)
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
