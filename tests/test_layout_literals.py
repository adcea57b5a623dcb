"""Every file name lives in pae_lab/plan/layout.py: no other module of pae_lab spells one.

The scan reads each module's syntax tree, so it sees a name wherever it stands: a plain string
("results.csv"), a part of a path ("*/tokenizer/metrics.jsonl") or an f-string that builds one
(f"features_{split}.npy"). Prose (a message or docstring that mentions a file) has spaces and is
not a name. A bare suffix (".png" in `with_suffix`) names no file and is not flagged either.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

from pae_lab.plan import layout

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pae_lab"
LAYOUT = PACKAGE / "plan" / "layout.py"

# The suffixes layout.py spells, and common ones it does not (yet).
COMMON = (".npz", ".pth", ".pkl", ".safetensors", ".bin", ".yml", ".log", ".txt", ".out", ".err", ".sh", ".md",
          ".jpg", ".jpeg", ".webp", ".tar", ".gz", ".zip", ".parquet", ".h5", ".pdf", ".svg")
SUFFIXES = tuple(sorted(set(layout.SUFFIXES) | set(COMMON)))
NAME = re.compile(r"^\S*[^\s/.]\.(" + "|".join(s[1:] for s in SUFFIXES) + r")$", re.IGNORECASE)

# Names that are no file the pipeline writes or reads, each with why it may stay where it is.
ALLOWED = {
    ("plan/schema_doc.py", "README.md"): "the repository's README, which `pae-lab schema --readme` rewrites",
    ("models/external_diffusers.py", "config.json"): "a diffusers checkpoint folder's own config: diffusers fixes "
                                                     "the name, pae-lab only reads it",
}


def _text(node: ast.AST) -> str | None:
    """A string constant as it stands, or an f-string with `{}` for each value it formats."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def file_name_literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string in the module at `path` that looks like a file name."""
    found, inside_fstring = [], set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.JoinedStr):
            inside_fstring.update(id(v) for v in node.values)
        if id(node) in inside_fstring:
            continue
        text = _text(node)
        if text is not None and NAME.match(text):
            found.append((node.lineno, text))
    return sorted(found)


def offenders(package: Path = PACKAGE) -> list[str]:
    out = []
    for path in sorted(package.rglob("*.py")):
        if path == LAYOUT:
            continue
        rel = path.relative_to(package).as_posix()
        out += [f"pae_lab/{rel}:{line}: {text!r}" for line, text in file_name_literals(path)
                if (rel, text) not in ALLOWED]
    return out


def test_no_file_name_outside_layout() -> None:
    found = offenders()
    assert not found, ("file names belong in pae_lab/plan/layout.py (add a property or function there and call it):\n"
                       + "\n".join(found))


def test_every_allowed_entry_is_still_there() -> None:
    """An allow-list entry whose literal has gone is stale: remove it."""
    present = {(p.relative_to(PACKAGE).as_posix(), text) for p in PACKAGE.rglob("*.py") for _, text in
               file_name_literals(p)}
    assert set(ALLOWED) <= present, sorted(set(ALLOWED) - present)


def test_the_scan_sees_each_form(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('"""Writes results.csv."""\n'
                      'a = "results.csv"\n'
                      'b = root / "runs" / "*/tokenizer/metrics.jsonl"\n'
                      'c = f"features_{split}.npy"\n'
                      'd = f"{root / \'best.json\'} and more"\n'
                      'e = path.with_suffix(".png")\n'
                      'f = f"see {path}: it has no done.json yet"\n')
    assert file_name_literals(module) == [(2, "results.csv"), (3, "*/tokenizer/metrics.jsonl"),
                                          (4, "features_{}.npy"), (5, "best.json")]
