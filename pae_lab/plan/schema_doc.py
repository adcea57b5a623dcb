"""The study YAML reference, generated from the pydantic schema so docs and code cannot drift."""
from __future__ import annotations

import typing
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined, to_jsonable_python


def _default(field) -> str:
    if field.default_factory is not None:
        try:
            value: Any = field.default_factory()
        except TypeError:
            return "(see below)"
        if isinstance(value, BaseModel):
            return "(see below)"
    else:
        value = field.default
    if value is PydanticUndefined:
        return "**required**"
    return f"`{yaml_value(value)}`"


def yaml_value(value: Any) -> str:
    """A default as a study file would spell it: null, [0.0, 1.0], {a: 1}, not Python's repr."""
    text = yaml.safe_dump(to_jsonable_python(value), default_flow_style=True, width=10_000, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _model(annotation) -> type[BaseModel] | None:
    """The pydantic model behind an annotation, also inside `X | None`."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def reference(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Markdown tables: one per block, nested blocks after their parent."""
    lines = [f"\n#### `{prefix or 'top level'}`\n", "| key | default | meaning |", "|---|---|---|"]
    nested = []
    for name, field in model.model_fields.items():
        sub = _model(field.annotation)
        desc = (field.description or (sub.__doc__ or "").strip().splitlines()[0] if sub and sub.__doc__ else field.description or "")
        lines.append(f"| `{name}` | {_default(field)} | {desc.replace('|', '/')} |")
        path = f"{prefix}.{name}" if prefix else name
        registered = getattr(sub, "registered_configs", None)  # a block dispatched on `name` through a registry
        if registered:
            nested += [(cfg, f"{path} (name: {entry})") for entry, cfg in registered().items()]
        elif sub:
            nested.append((sub, path))
    for sub, path in nested:
        lines += reference(sub, path)
    return lines


def study_reference() -> str:
    from pae_lab.config.schema import StudyConfig

    return "\n".join(reference(StudyConfig))


def stage_table() -> str:
    """The README's stage table, rendered from pae_lab.plan.graph (so the two cannot drift)."""
    from pae_lab.plan.graph import RESOLVED, ordered

    code = lambda names: ", ".join(f"`{n}`" for n in names) or "-"  # noqa: E731
    rows = ["| stage | scope | reads | depends on | ranks | does |", "|---|---|---|---|---|---|"]
    rows += [f"| {s.name} | {s.scope} | {', '.join(s.reads) or '-'} | {code(s.depends)} | "
             f"{'all' if s.distributed else '0'} | {s.doc} |" for s in ordered()]
    resolved = ", ".join(f"`{n}`" for n in RESOLVED)
    return "\n".join(rows) + (f"\n\nNames without a dot are resolved inputs ({resolved}): the latent grid, the "
                              "variant's regularizers and own tokenizer block, the seed, the FD extractor as resolved "
                              "plus its weights file's digest, digests of the files a study names, each teacher part's prior "
                              "and weights, and the PCA path's method. *ranks*: which "
                              "processes of a multi-process job run the stage (all: data-parallel training; 0: rank 0 "
                              "alone, the others wait).")


START, END = "<!-- schema:start -->", "<!-- schema:end -->"
SECTIONS = {("<!-- schema:start -->", "<!-- schema:end -->"): study_reference,
            ("<!-- stages:start -->", "<!-- stages:end -->"): stage_table}


def update_readme(path: str = "README.md") -> None:
    """Rewrite every generated section between its README markers: `python -m pae_lab.plan.schema_doc`."""
    from pathlib import Path

    text = Path(path).read_text()
    for (start, end), render in SECTIONS.items():
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{start}\n{render()}\n{end}{tail}"
    Path(path).write_text(text)


if __name__ == "__main__":
    update_readme()
