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
