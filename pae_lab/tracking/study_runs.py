"""A study's runs in MLflow: where they are logged, the parent run, one child per run configuration,
statuses that match the folders, and the headline values once a study is aggregated.

Where `pae-lab run`, `sync`, `tune`, `report` and `ui` ask for the tracking address (resolved in
tracking.store, which `status` imports without MLflow) and the experiment name.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from pae_lab import __version__
from pae_lab.config.errors import StudyError
from pae_lab.config.schema import StudyConfig
from pae_lab.fsutil import read_json, write_json
from pae_lab.plan.graph import identity_dump
from pae_lab.plan.identity import content_hash
from pae_lab.plan.runs import RunSpec
from analysis.metric_info import headline_columns
from pae_lab.tracking.store import PROBE_TIMEOUT_S, StudyTracker, answers, is_server
from pae_lab.tracking.store import tracking_uri as tracking_uri  # resolved in store, which `status` may import
from pae_lab.tracking.view import child_summary, log_changed, run_params, share_view, study_metrics, study_regularizers


def experiment_name(study: StudyConfig) -> str:
    return study.tracking.experiment or study.name


def code_version() -> str:
    """pae-lab's version and, in a git checkout, its commit: tagged on every parent run."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


class StudyRuns:
    """The MLflow side of one study configuration and its expanded runs."""

    def __init__(self, study: StudyConfig, runs: list[RunSpec]):
        self.study, self.runs = study, runs
        self.root = Path(study.study_dir())
        self.uri = tracking_uri(study.tracking.uri, self.root)

    @property
    def parent_key(self) -> str:
        """The study's MLflow parent run: one per configuration of the whole study."""
        return f"study:{self.study.name}:{content_hash('study', sorted(r.identity for r in self.runs))}"

    def tracker(self) -> StudyTracker:
        if is_server(self.uri) and not answers(self.uri, PROBE_TIMEOUT_S):  # fail at once, not after MLflow's retries
            raise StudyError(f"tracking.uri: {self.uri} does not answer: start the server (`pae-lab server "
                             "<study.yaml>`) or fix the address")
        return StudyTracker(self.uri, experiment_name(self.study), artifact_root=self.root)

    def ensure_parent(self, tracker: StudyTracker, status: str = "RUNNING") -> str:
        return tracker.ensure_run(self.parent_key, self.study.name,
                                  {"pae.kind": "study", "pae.code_version": code_version()}, status=status)

    def register(self, tracker: StudyTracker, parent: str, runs: list[RunSpec] | None = None, track=None) -> None:
        """One MLflow child run per run *configuration*: a changed config gets a new run, the old one
        keeps its history. New runs wait as SCHEDULED until their job starts. `track` (the driver's
        tracking.outage.TrackingGuard): a run the server is down for gets no id, and its job still
        its run.json; the reconcile at the end creates the run."""
        training, regularizers = identity_dump(self.study.training), study_regularizers(self.runs)
        for spec in runs or self.runs:
            child = (spec, tracker, parent, training, regularizers)
            spec.mlflow_run_id = track(f"create the run {spec.variant}/seed{spec.seed}", self._child, *child) \
                if track else self._child(*child)
            write_json(spec.layout.run_json, spec.to_file())

    @staticmethod
    def _child(spec: RunSpec, tracker: StudyTracker, parent: str, training: dict, regularizers: list[str]) -> str:
        run_id = tracker.ensure_run(
            f"{spec.key}:{spec.identity}", f"{spec.variant}/seed{spec.seed}",
            {"variant": spec.variant, "seed": spec.seed, "config_hash": spec.identity,
             "pae.kind": "run", "study": spec.study}, parent_id=parent, status="SCHEDULED")
        tracker.log_params(run_id, run_params(spec, training, regularizers))
        return run_id

    @staticmethod
    def settle(tracker: StudyTracker, runs: list[RunSpec]) -> None:
        """Make every child run's MLflow status the truth on disk: FINISHED, FAILED, or KILLED for a
        job that never finished (killed, cancelled, the driver interrupted)."""
        truth = {"done": "FINISHED", "failed": "FAILED", "pending": "KILLED"}
        for spec in runs:
            if not spec.mlflow_run_id:
                continue
            want = truth[spec.layout.status()]
            if want == "FAILED" and (read_json(spec.layout.failed) or {}).get("killed"):
                want = "KILLED"  # died by a signal or the scheduler, as the driver recorded
            if tracker.status(spec.mlflow_run_id) != want:
                tracker.set_status(spec.mlflow_run_id, want)

    def log_summaries(self, tracker: StudyTracker, parent: str, summary: dict[str, Any]) -> None:
        """Each finished child's headline values once; the parent's study-level results."""
        results, target, gfd = summary["results"], summary["target"], summary["gfd"]
        for _, row in results[results["status"] == "done"].iterrows():
            if row.get("run_id"):  # the generation scores are already curves, logged by the job
                log_changed(tracker.client, row["run_id"], child_summary(row, gfd, curves=summary["curves"]))
        metrics, tags = study_metrics(results, summary["correlations"], target, summary["baseline"])
        log_changed(tracker.client, parent, metrics)
        for key, value in tags.items():
            tracker.client.set_tag(parent, key, value)
        share_view(tracker.client, tracker.experiment_id, headline_columns(results.columns, gfd),
                   study_regularizers(self.runs))
