"""The driver: expand -> prepare tracking -> shared stages -> launch runs -> aggregate.

The driver is the only process that creates MLflow runs and writes study-level files; jobs only
write inside their own run folders and log into runs that already exist.
"""
from __future__ import annotations

import importlib.metadata as md
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from pae_lab import __version__
from pae_lab.aggregate import aggregate, run_status
from pae_lab.config import StudyConfig
from pae_lab.fsutil import atomic_write, read_json, write_json
from pae_lab.launch import build_launcher
from pae_lab.monitor import RunMonitor
from pae_lab.plan import RUN_STAGES, Layout, RunSpec, expand, shared_hashes
from pae_lab.progress import PROGRESS_FILE, ProgressWriter
from pae_lab.stages.cache import is_done, run_cached
from pae_lab.stages.reference import reference_stage, teacher_stage
from pae_lab.stages.shared import data_stage, prior_stage, refine_stage
from pae_lab.tracking import RunLogger, StudyTracker, default_uri, flatten
from pae_lab.training import STOP_FILE

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


def code_version() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


@dataclass
class StudyOutcome:
    runs: list[RunSpec]
    launched: int
    failed: list[str]
    summary: dict[str, Any]


class Driver:
    def __init__(self, study: StudyConfig, console: Console | None = None):
        self.study = study
        self.console = console or Console()
        self.layout = Layout(study.study_dir())
        self.uri = study.tracking.uri or default_uri(self.layout.root)
        self.runs = expand(study)

    # -- preparation -------------------------------------------------------------------------
    def prepare(self, force: bool = False) -> tuple[StudyTracker, str]:
        root = self.layout.root
        if force:
            for path in (root / "shared", root / "runs"):
                shutil.rmtree(path, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
        resolved = self.study.model_dump(mode="json")
        atomic_write(root / "study.yaml", lambda p: p.write_text(yaml.safe_dump(resolved, sort_keys=False)))
        tracker = StudyTracker(self.uri, self.study.tracking.experiment or self.study.name, artifact_root=root)
        parent = tracker.ensure_run(f"study:{self.study.name}", self.study.name,
                                    {"pae.kind": "study", "pae.code_version": code_version()})
        tracker.log_params(parent, flatten(resolved))
        tracker.log_artifact(parent, root / "study.yaml")
        return tracker, parent

    def register_runs(self, tracker: StudyTracker, parent: str, runs: list[RunSpec] | None = None) -> None:
        for spec in runs or self.runs:
            spec.tracking_uri = self.uri
            spec.mlflow_run_id = tracker.ensure_run(
                spec.key, f"{spec.variant}/seed{spec.seed}",
                {"variant": spec.variant, "seed": spec.seed, "config_hash": spec.hashes["tokenizer"],
                 "pae.kind": "run", "study": spec.study}, parent_id=parent)
            tracker.log_params(spec.mlflow_run_id, {"variant": spec.variant, "seed": spec.seed,
                                                    **flatten(spec.regularizers, "regularizers.")})
            write_json(Path(spec.run_dir) / "run.json", spec.model_dump(mode="json"))

    def shared_stages(self, parent_logger: RunLogger) -> dict[str, Any]:
        study, layout = self.study, self.layout
        hashes = shared_hashes(study)
        dirs = {stage: layout.shared(stage, digest) for stage, digest in hashes.items()}
        progress = ProgressWriter(layout.root / "shared")
        steps = {
            "data": lambda d: data_stage(study, d),
            "prior": lambda d: prior_stage(study, dirs["data"], d),
            "refine": lambda d: refine_stage(study, dirs["prior"], d, parent_logger, progress),
            "reference": lambda d: reference_stage(study, dirs["data"], d),
            "teacher": lambda d: teacher_stage(study, dirs["data"], dirs["prior"], dirs["refine"], d),
        }
        out = {}
        for stage, fn in steps.items():
            with self.console.status(f"shared stage [bold]{stage}[/] ..."):
                res = run_cached(dirs[stage], hashes[stage], fn)
            verb = "cached" if res.skipped else f"done in {res.seconds:.1f}s"
            self.console.log(f"shared stage {stage}: {verb}")
            out[stage] = res.summary
        return out

    # -- execution ---------------------------------------------------------------------------
    def pending(self) -> list[RunSpec]:
        return [r for r in self.runs
                if not all(is_done(Path(r.run_dir) / s, r.hashes[s]) for s in RUN_STAGES)
                or run_status(Path(r.run_dir)) != "done"]

    def launch(self, runs: list[RunSpec]) -> dict[Path, dict[str, Any]]:
        for spec in runs:  # a fresh attempt: forget the last attempt's progress and stop request
            (Path(spec.run_dir) / PROGRESS_FILE).unlink(missing_ok=True)
            (Path(spec.run_dir) / STOP_FILE).unlink(missing_ok=True)
        launcher = build_launcher(self.study.launcher, self.layout.submitit)
        jobs = [Path(r.run_dir) / "run.json" for r in runs]
        monitor_runs = {f"{r.variant}/seed{r.seed}": Path(r.run_dir) for r in runs}
        with RunMonitor(monitor_runs, self.console) as monitor:
            return launcher.launch(jobs, monitor.poll)

    def write_study_json(self, summary: dict[str, Any], kind: str = "study") -> None:
        protocols: dict[str, Any] = {}
        for spec in self.runs:
            metrics = read_json(Path(spec.run_dir) / "manifold" / "metrics.json")
            conv = read_json(Path(spec.run_dir) / "generation" / "convergence.json")
            if metrics:
                protocols.update(metrics.get("protocols", {}))
            if conv:
                protocols[summary["target"]] = conv.get("protocol", {})
            if metrics and conv:
                break
        write_json(self.layout.root / "study.json", {
            "name": self.study.name, "kind": kind, "target": summary["target"], "kid": summary["kid"],
            "baseline": summary["baseline"], "config": self.study.model_dump(mode="json"),
            "protocols": protocols, "versions": library_versions(), "code_version": code_version(),
            "tracking_uri": self.uri,
        })

    def run(self, force: bool = False) -> StudyOutcome:
        tracker, parent = self.prepare(force)
        parent_logger = RunLogger(self.layout.root / "shared", self.uri, parent)
        self.shared_stages(parent_logger)
        self.register_runs(tracker, parent)
        pending = self.pending()
        finished = len(self.runs) - len(pending)
        if not pending:
            self.console.log(f"all {len(self.runs)} runs already finished: nothing to retrain")
        else:
            if finished:
                self.console.log(f"{finished} of {len(self.runs)} runs already finished (reused); running {len(pending)}")
            self.launch(pending)
        summary = aggregate(self.study, self.runs, self.layout.root)
        self.write_study_json(summary)
        for name in ("results.csv", "columns.csv", "correlations.csv", "correlations_strata.csv", "effects.csv",
                     "convergence.csv", "speedups.csv", "study.json"):
            tracker.log_artifact(parent, self.layout.root / name)
        results = summary["results"]
        numeric = results.drop(columns=["seed"]).groupby("variant").mean(numeric_only=True)
        for variant, row in numeric.iterrows():
            tracker.log_metrics(parent, {f"{variant}/{k}": v for k, v in row.items() if v == v})
        failed = [f"{r.variant}/seed{r.seed}" for r in self.runs if run_status(Path(r.run_dir)) == "failed"]
        tracker.finish(parent, "FAILED" if failed else "FINISHED")
        return StudyOutcome(self.runs, len(pending), failed, summary)
