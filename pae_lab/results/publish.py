"""Build a study's report and log it to the study's parent MLflow run; skip it while its inputs
(the study's tables, the template, pae-lab's version) are unchanged."""
from __future__ import annotations

from rich.console import Console

from pae_lab.config.schema import StudyConfig
from pae_lab.fsutil import read_json, write_json
from pae_lab.plan.layout import StudyLayout
from pae_lab.results.report_inputs import report_inputs_digest


def publish_report(study: StudyConfig, console: Console, kind: str | None = None, only_if_changed: bool = False) -> None:
    """`kind`: "study" or "tune" (read from study.json when None)."""
    files = StudyLayout(study.study_dir())
    digest = report_inputs_digest(files)
    stamp, html = files.report.inputs, files.report.html
    if only_if_changed and html.exists() and (read_json(stamp) or {}).get("digest") == digest:
        console.print(f"report: {html}  (inputs unchanged)")
        return
    from pae_lab.results.report import build_report
    from pae_lab.tracking.store import StudyTracker
    from pae_lab.tracking.study_runs import experiment_name, tracking_uri

    parent = (read_json(files.study_json) or {}).get("mlflow_parent_run_id")
    tracker = (StudyTracker(tracking_uri(study.tracking.uri, files.root), experiment_name(study), artifact_root=files.root)
               if parent else None)
    with console.status("building the report notebook ..."):
        paths = build_report(files.root, kind=kind, log_artifact=(lambda p: tracker.log_artifact(parent, p, "report"))
                             if tracker else None)
    write_json(stamp, {"digest": digest})
    console.print(f"report: {paths.html}  (notebook {paths.ipynb})")
