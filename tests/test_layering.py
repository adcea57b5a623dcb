"""Layering: no import circle anywhere in pae_lab/ or analysis/, counting imports inside functions too.

A lazy import only hides a circle until the day someone moves it to the top of the file; the
graph here includes every import statement, wherever it stands.
"""
from __future__ import annotations

import ast
import graphlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pae_lab", "analysis")


def module_names() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules that `name` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imports_of(name, path, set(modules)) for name, path in modules.items()}


def test_no_import_cycle() -> None:
    graph = import_graph()
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        raise AssertionError(f"import circle: {' -> '.join(err.args[1])}") from None


# The packages from the bottom up: each may import only from the layers below it (and its own).
# `analysis` is the metrics library and knows nothing of pae_lab; the domain packages (data, priors,
# models, losses, generation, variants) share one layer and follow the order listed.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("analysis",),
    ("pae_lab", "pae_lab.registry", "pae_lab.fsutil", "pae_lab.catalog", "pae_lab.architectures"),
    ("pae_lab.config",),
    ("pae_lab.data", "pae_lab.priors", "pae_lab.models", "pae_lab.losses", "pae_lab.generation", "pae_lab.variants"),
    ("pae_lab.plan",),
    ("pae_lab.tracking",),
    ("pae_lab.stages",),
    ("pae_lab.results",),
    ("pae_lab.execution",),
    ("pae_lab.tuning",),
    ("pae_lab.cli", "pae_lab.__main__"),
)
RANK = {package: (layer, place) for layer, packages in enumerate(LAYERS) for place, package in enumerate(packages)}


def package_of(module: str) -> str:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in RANK:
            return ".".join(parts[:end])
    raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS in tests/test_layering.py")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports that climb the layering: into a higher layer, or to a later package of the same layer."""
    out = []
    for module, targets in graph.items():
        here = package_of(module)
        for target in targets:
            there = package_of(target)
            if there != here and RANK[there] > RANK[here]:
                out.append(f"{module} -> {target}")
    return sorted(out)


def test_each_package_imports_only_the_layers_below() -> None:
    assert upward_imports(import_graph()) == []


def test_the_layer_check_sees_a_climb(tmp_path: Path) -> None:
    assert upward_imports({"analysis.x": {"pae_lab.fsutil"}, "pae_lab.plan.a": {"pae_lab.config.b"}}) == [
        "analysis.x -> pae_lab.fsutil"]
    assert upward_imports({"pae_lab.data.a": {"pae_lab.models.b"}}) == ["pae_lab.data.a -> pae_lab.models.b"]


def test_the_cycle_check_sees_function_level_imports(tmp_path: Path) -> None:
    a = tmp_path / "a.py"
    a.write_text("def f():\n    import pae_lab.b\n")
    assert imports_of("pae_lab.a", a, {"pae_lab.a", "pae_lab.b"}) == {"pae_lab.b"}


def test_schema_is_a_leaf_that_loads_without_torch() -> None:
    """Validating a study (schema + loading) must not import torch, sklearn or scipy."""
    code = ("import sys, pae_lab.config.schema, pae_lab.config.loading, pae_lab.plan.layout, pae_lab.plan.graph, pae_lab.plan.runs, pae_lab.plan.status, pae_lab.catalog, pae_lab.config.registries; "
            "print(sorted(m for m in ('torch', 'sklearn', 'scipy', 'submitit', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


TORCH_FREE_COMMANDS = (["--help"], ["schema"], ["variants"], ["registry"])


def test_listing_commands_import_no_torch() -> None:
    """`pae-lab variants`, `registry`, `schema` and `--help` list from pae_lab.catalog's declarations,
    so they start without torch, sklearn, scipy, mlflow or submitit."""
    code = ("import sys; from typer.testing import CliRunner; from pae_lab.cli import app; "
            f"rcs = [CliRunner().invoke(app, args).exit_code for args in {list(TORCH_FREE_COMMANDS)}]; "
            "print(rcs, sorted(m for m in ('torch', 'sklearn', 'scipy', 'submitit', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"{[0] * len(TORCH_FREE_COMMANDS)} []"


def test_catalog_declarations_match_what_the_modules_register() -> None:
    """Every declared built-in is registered by the module it names, and what a listing shows from
    the declaration (a variant's resolved weights, a regularizer's default weight) is what resolving gives."""
    from pae_lab.catalog import REGULARIZERS, VARIANTS
    from pae_lab.config.registries import all_registries

    for kind, registry in all_registries().items():
        for name in registry.names():
            assert registry.get(name) is not None, (kind, name)
    # and the reverse, in a process without the tests' plugins: every built-in is declared
    code = ("import json, analysis.panel, pae_lab.data, pae_lab.generation, pae_lab.losses, pae_lab.priors, pae_lab.variants, "
            "pae_lab.config.tokenizers, pae_lab.plan.graph, pae_lab.tuning.algorithms, pae_lab.execution.launchers.inline, "
            "pae_lab.execution.launchers.local, pae_lab.execution.launchers.slurm; "
            "from pae_lab.config.registries import all_registries; "
            "print(json.dumps({k: [n for n in r.order() if n not in r._declared] for k, r in all_registries().items() "
            "if k not in ('extractors', 'metrics')}))")  # the metrics library fills these itself, without torch
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert not any(json.loads(out).values()), f"declare these in pae_lab/catalog.py: {out}"
    for name in VARIANTS.names():
        if VARIANTS.info(name):
            assert VARIANTS.get(name).regularizers == VARIANTS.info(name)["regularizers"], name
    for name in REGULARIZERS.names():
        if REGULARIZERS.info(name):
            assert REGULARIZERS.get(name).default_weight == REGULARIZERS.info(name)["default_weight"], name
