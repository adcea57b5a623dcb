"""The driver: expand -> prepare tracking -> shared stages -> launch runs -> aggregate -> reconcile.

The driver is the only process that creates MLflow runs and writes study-level files; jobs only
write inside their own run folders and log into runs that already exist. A tracking server that
stops answering mid-study ends nothing: the driver's tracking steps skip (tracking.outage), and
at the end it sends the store what the runs' mirrors hold and it lacks.
"""
from __future__ import annotations

import importlib.metadata as md
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from pae_lab import __version__
from pae_lab.results.aggregate import aggregate
from pae_lab.config.errors import StudyError
from pae_lab.fsutil import atomic_write, write_json
from pae_lab.plan.graph import ordered, study_protocols
from pae_lab.plan.layout import StudyLayout
from pae_lab.tracking.study_runs import StudyRuns, code_version
from pae_lab.tracking.view import setup_experiment
from pae_lab.execution.monitor import RunMonitor
from pae_lab.plan.runs import RunSpec, expand, run_stage_names, shared_plan
from pae_lab.plan.progress import ProgressWriter, read_progress
from pae_lab.config.schema import StudyConfig
from pae_lab.plan.settled import mark_settled, run_finished
from pae_lab.plan.cache import is_done
from pae_lab.stages.execute import run_stage
from pae_lab.tracking.lag import Lag
from pae_lab.tracking.outage import TrackingGuard, reconcile
from pae_lab.tracking.store import RunLogger, StudyTracker, flatten

LIBRARIES = ("torch", "torchvision", "timm", "mlflow", "optuna", "submitit", "torch-fidelity", "scikit-learn",
             "scipy", "numpy", "pandas", "pydantic")


def library_versions() -> dict[str, str]:
    out = {"pae-lab": __version__}
    for name in LIBRARIES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "missing"
    return out


def record_death(spec: RunSpec, outcome: dict[str, Any], launcher: str, uri: str) -> None:
    """A job that died outside Python (signal, OOM, scancel, node loss, time limit) wrote nothing:
    the driver records the failure for it, against the stage it was in, and closes its MLflow run."""
    stages = run_stage_names()
    progress = read_progress(spec.run_dir)
    stage = progress.get("stage") if progress.get("stage") in stages else next(
        (s for s in stages if not is_done(spec.stage_dir(s), spec.hashes[s])), stages[-1])
    error = outcome.get("error") or "job ended without a result"
    write_json(spec.layout.failed, {"stage": stage, "error": error, "launcher": launcher,
                                    "killed": bool(outcome.get("killed")), "traceback": ""})
    ProgressWriter(spec.run_dir).update(stage, progress.get("step", 0), progress.get("total", 1), status="failed",
                                        force=True, error=error)
    logger = RunLogger(spec.run_dir, uri, spec.mlflow_run_id)
    logger.tags({"pae.failed_stage": stage, "pae.error": error[:5000]})
    logger.finish("KILLED" if outcome.get("killed") else "FAILED")


@dataclass
class StudyOutcome:
    runs: list[RunSpec]
    launched: int
    failed: list[str]
    summary: dict[str, Any]
    lag: Lag | None = None  # what the store still lacks after the reconcile (tracking.outage)


class Driver:
    def __init__(self, study: StudyConfig, console: Console | None = None, runs: list[RunSpec] | None = None):
        """`runs`: the study as the caller already planned it (`expand`), so a command plans once."""
        self.study = study
        self.console = console or Console()
        self.layout = StudyLayout(study.study_dir())
        self.runs = expand(study) if runs is None else runs
        self.mlflow = StudyRuns(study, self.runs)
        self.uri = self.mlflow.uri
        self.track = TrackingGuard(self.uri, self.console)  # tracking steps that survive a server outage

    # -- preparation -------------------------------------------------------------------------
    def prepare(self, force: bool = False) -> tuple[StudyTracker, str]:
        root = self.layout.root
        if force:
            for path in (self.layout.shared_root, self.layout.runs_root, self.layout.teacher_check):
                shutil.rmtree(path, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
        self.layout.settled.unlink(missing_ok=True)  # until this run has settled every status again
        resolved = self.study.model_dump(mode="json")
        atomic_write(self.layout.study_yaml, lambda p: p.write_text(yaml.safe_dump(resolved, sort_keys=False)))
        tracker = self.mlflow.tracker()
        setup_experiment(tracker.client, tracker.experiment_id, self.study.description)
        parent = self.mlflow.ensure_parent(tracker)
        tracker.set_status(parent, "RUNNING")
        tracker.log_params(parent, flatten(resolved))
        tracker.log_artifact(parent, self.layout.study_yaml)
        return tracker, parent

    def shared_stages(self, parent_logger: RunLogger) -> dict[str, Any]:
        from pae_lab.catalog import LAUNCHERS

        hashes, folders = shared_plan(self.study)
        processes = self.study.launcher.processes_per_job()
        as_job = processes > 1 or LAUNCHERS.get(self.study.launcher.name).remote  # never on a login node
        if as_job and not all(is_done(folders[s.name], hashes[s.name]) for s in ordered("shared")):
            self.shared_job(parent_logger.run_id, processes)  # what is left below is cached
        progress = ProgressWriter(self.layout.shared_root)
        out = {}
        for stage in ordered("shared"):
            with self.console.status(f"shared stage [bold]{stage.name}[/] ..."):
                res = run_stage(stage, self.study, folders, hashes[stage.name], logger=parent_logger,
                                progress=progress)
            verb = "cached" if res.skipped else f"done in {res.seconds:.1f}s"
            self.console.log(f"shared stage {stage.name}: {verb}")
            out[stage.name] = res.summary
        return out

    def shared_job(self, parent: str | None, processes: int) -> None:
        """The shared stages as one job of the launcher: on the cluster's nodes, data-parallel over its processes."""
        from pae_lab.execution.launchers.base import build_launcher, died
        from pae_lab.execution.shared_job import write_shared_job

        job = write_shared_job(self.layout, self.study, self.uri, parent)
        launcher = build_launcher(self.study.launcher, self.layout.submitit,
                                  log=lambda message: self.console.log(f"[yellow]{message}[/]"))
        with self.console.status(f"shared stages in one job of {processes} processes ({self.study.launcher.name}) ..."):
            outcome = launcher.launch([job], lambda: None).get(job) or died("the launcher returned no outcome")
        if outcome.get("status") != "done":
            raise StudyError(f"shared stage {outcome.get('stage', '?')} failed in its {processes}-process job "
                             f"({job}): {outcome.get('error', '')}")
        self.console.log(f"shared stages: one {self.study.launcher.name} job, {processes} process(es)")

    # -- execution ---------------------------------------------------------------------------
    def pending(self) -> list[RunSpec]:
        return [r for r in self.runs if not run_finished(r)]

    def launch(self, runs: list[RunSpec]) -> dict[Path, dict[str, Any]]:
        for spec in runs:  # a fresh attempt: forget the last attempt's progress, failure and stop request
            for path in (spec.layout.progress, spec.layout.stop, spec.layout.failed):
                path.unlink(missing_ok=True)
        from pae_lab.execution.launchers.base import build_launcher, died  # only when something runs: a finished study needs none

        launcher = build_launcher(self.study.launcher, self.layout.submitit,
                                  log=lambda message: self.console.log(f"[yellow]{message}[/]"))
        jobs = {r.layout.run_json: r for r in runs}
        monitor_runs = {f"{r.variant}/seed{r.seed}": r.run_dir for r in runs}
        with RunMonitor(monitor_runs, self.console) as monitor:
            outcomes = launcher.launch(list(jobs), monitor.poll)
        for path, spec in jobs.items():
            outcome = outcomes.get(path) or died(f"{self.study.launcher.name} launcher returned no outcome")
            if outcome.get("status") != "done" and not spec.layout.failed.exists():
                record_death(spec, outcome, self.study.launcher.name, self.uri)
                self.console.log(f"[red]{spec.variant}/seed{spec.seed}: failed[/] {outcome.get('error', '')}")
        return outcomes

    def write_study_json(self, summary: dict[str, Any], kind: str = "study", parent: str | None = None) -> None:
        protocols = study_protocols(spec.stage_dir for spec in self.runs)
        write_json(self.layout.study_json, {
            "name": self.study.name, "kind": kind, "target": summary["target"], "declared_target": summary["declared_target"],
            "target_controls": summary["target_controls"], "gfd": summary["gfd"], "kid": summary["kid"],
            "baseline": summary["baseline"], "notes": summary.get("notes", []),
            "frontier": summary.get("frontier_fit", {}), "config": self.study.model_dump(mode="json"),
            "protocols": protocols, "versions": library_versions(), "code_version": code_version(),
            "tracking_uri": self.study.tracking.uri, "mlflow_parent_run_id": parent,
        })

    def run(self, force: bool = False) -> StudyOutcome:
        tracker, parent = self.prepare(force)
        parent_logger = RunLogger(self.layout.shared_root, self.uri, parent)
        pending: list[RunSpec] = []
        track = self.track
        try:
            self.shared_stages(parent_logger)
            self.mlflow.register(tracker, parent, track=track)
            pending = self.pending()
            finished = len(self.runs) - len(pending)
            if not pending:
                self.console.log(f"all {len(self.runs)} runs already finished: nothing to retrain")
            else:
                if finished:
                    self.console.log(f"{finished} of {len(self.runs)} runs already finished (reused); running {len(pending)}")
                self.launch(pending)
        except BaseException:
            track("settle the runs' statuses", self.mlflow.settle, tracker, self.runs)
            track("mark the study KILLED", tracker.set_status, parent, "KILLED")
            raise
        track("settle the runs' statuses", self.mlflow.settle, tracker, self.runs)
        summary = aggregate(self.study, self.runs, self.layout.root)
        for note in summary["notes"]:
            self.console.log(note)
        self.write_study_json(summary, parent=parent)
        track("log the study's tables", lambda: [tracker.log_artifact(parent, path) for path in self.layout.tables()])
        track("log the summaries", self.mlflow.log_summaries, tracker, parent, summary)
        failed = [f"{r.variant}/seed{r.seed}" for r in self.runs if r.layout.status() == "failed"]
        track("finish the study's run", tracker.finish, parent, "FAILED" if failed else "FINISHED")
        lag = reconcile(self.study, parent, self.console)
        if not (failed or lag.total or lag.held_total or track.skipped):  # else the next `pae-lab run` logs again what was missed
            mark_settled(self.study, self.runs)
        return StudyOutcome(self.runs, len(pending), failed, summary, lag)
