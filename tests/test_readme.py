"""The README's YAML reference is the schema's, and its two commands are the ones CI runs."""
from pathlib import Path

from pae_lab.plan.schema_doc import SECTIONS

ROOT = Path(__file__).resolve().parents[1]


def test_readme_reference_and_stage_table_match_the_code() -> None:
    text = (ROOT / "README.md").read_text()
    for (start, end), render in SECTIONS.items():
        between = text.split(start, 1)[1].split(end, 1)[0]
        assert between.strip() == render().strip(), f"{start}: run python -m pae_lab.plan.schema_doc"


def test_ci_runs_the_readme_commands() -> None:
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    for command in ("python3 -m venv .venv && .venv/bin/pip install -e '.[test]'", ".venv/bin/python -m pytest -q"):
        assert command in readme and command in ci


def test_the_architecture_table_names_every_module() -> None:
    """Each module of pae_lab/ and analysis/ is in a row of the README's module table that names its folder."""
    text = (ROOT / "README.md").read_text()
    rows = [line for line in text.split("| module | one job |", 1)[1].split("\n\n", 1)[0].splitlines() if line.startswith("|")]
    missing = []
    for path in sorted([*(ROOT / "pae_lab").rglob("*.py"), *(ROOT / "analysis").rglob("*.py")]):
        if path.name == "__init__.py":
            continue
        folder = path.parent.relative_to(ROOT).as_posix() + "/"
        if not any(f"`{folder}" in row and f"{path.name}`" in row for row in rows):
            missing.append(path.relative_to(ROOT).as_posix())
    assert not missing, f"add these to the README's architecture table: {missing}"
