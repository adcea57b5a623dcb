"""Where the report template is and what a report is built from, as one digest.

Light on purpose: `pae-lab run` asks whether its report is current before importing the report stack.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pae_lab
from pae_lab.plan.layout import REPORT_TEMPLATE, StudyLayout


class ReportError(RuntimeError):
    """The report could not be built; the message says why and what to do."""


def find_template(name: str = REPORT_TEMPLATE) -> Path:
    """The notebook template in the repository's reports/ folder, beside the editable package."""
    candidates = [Path(pae_lab.__file__).resolve().parent.parent / "reports" / name]
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise ReportError(f"report template {name} not found (looked in {looked}); install pae-lab editable from "
                      "the repository (`pip install -e .`) or pass template=PATH to build_report")


def report_inputs_digest(files: StudyLayout) -> str:
    """The tables the report reads (a study's and a search's), the template and pae-lab's version
    (the report code). The runs' curves and pictures are not hashed: they change only with results.csv."""
    h = hashlib.sha256(pae_lab.__version__.encode())
    for path in (*files.tables(), *files.search_tables(), find_template()):
        h.update(path.name.encode())
        h.update(path.read_bytes() if path.is_file() else b"<missing>")
    return h.hexdigest()[:16]
