"""Whether a study's results are current, so a rerun with nothing to do stops before MLflow and pandas.

The driver stamps a study once it has trained, aggregated, logged and settled every run's MLflow
status. The stamp holds a digest of what those steps read: the resolved study, every run's stage
hashes and result, the shared stages' hashes, the result tables, pae-lab's version and the source
of the code that aggregates (so a checkout whose aggregation changed re-aggregates finished studies
without a version bump, which would rerun every stage). A rerun
whose digest matches has nothing to train, aggregate or log, and MLflow still tells the truth:
nothing has touched it since the driver settled it. Light on purpose (no torch, mlflow or pandas).
"""
from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from pae_lab import __version__
from pae_lab.fsutil import read_json, write_json
from pae_lab.plan.graph import ordered
from pae_lab.plan.identity import content_hash
from pae_lab.plan.layout import StudyLayout
from pae_lab.plan.runs import RunSpec, expand, run_stage_names, shared_plan
from pae_lab.config.schema import StudyConfig
from pae_lab.plan.cache import is_done


AGGREGATING_CODE = ("pae_lab/results", "analysis")  # what turns finished runs into the study's tables


@cache
def aggregation_source() -> str:
    """A digest of the aggregating modules' source, as installed or checked out."""
    root, digest = Path(__file__).resolve().parents[2], hashlib.sha256()
    for folder in AGGREGATING_CODE:
        for path in sorted((root / folder).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def run_finished(spec: RunSpec) -> bool:
    """Every stage done for this run's hashes, and the run's result written."""
    return all(is_done(spec.stage_dir(s), spec.hashes[s]) for s in run_stage_names()) and spec.layout.status() == "done"


def results_digest(study: StudyConfig, runs: list[RunSpec] | None = None) -> str | None:
    """The digest of what aggregation and tracking read; None while anything is left to run."""
    runs = expand(study) if runs is None else runs
    hashes, folders = shared_plan(study)
    if not all(run_finished(r) for r in runs) or not all(is_done(folders[s.name], hashes[s.name]) for s in ordered("shared")):
        return None
    files = StudyLayout(study.study_dir())
    tables = hashlib.sha256()
    for path in files.tables():
        tables.update(path.read_bytes() if path.is_file() else b"<missing>")
    return content_hash("settled", __version__, aggregation_source(), study.model_dump(mode="json"), hashes, tables.hexdigest(),
                        files.mlflow_db.exists(), [(r.identity, r.hashes, read_json(r.layout.result)) for r in runs])


def is_settled(study: StudyConfig, runs: list[RunSpec] | None = None) -> bool:
    stamp = read_json(StudyLayout(study.study_dir()).settled) or {}
    return stamp.get("digest") is not None and stamp.get("digest") == results_digest(study, runs)


def mark_settled(study: StudyConfig, runs: list[RunSpec]) -> None:
    write_json(StudyLayout(study.study_dir()).settled, {"digest": results_digest(study, runs)})
