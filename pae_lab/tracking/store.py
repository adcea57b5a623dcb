"""Tracking: the driver owns the MLflow store, jobs only log into runs the driver created.

The driver creates the store, the experiment, the study's parent run and one child run per
(variant, seed) before any job starts (a fresh SQLite store opened by many processes at once
races on its schema). Every record a job logs also goes to a JSON-lines mirror in its run folder,
so a job on a node without network loses nothing.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Iterable

from pae_lab.fsutil import append_jsonl
from pae_lab.plan.layout import METRIC_LOG, StudyLayout

os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

PROBE_TIMEOUT_S = 5  # a job asks a tracking server once whether it is there before it logs to it
MIRROR_PREFIX = "mlflow_prefix"  # a mirror record's MLflow key prefix, where it is not "<stage>/"


def default_uri(study_dir: Path) -> str:
    return f"sqlite:///{StudyLayout(Path(study_dir).resolve()).mlflow_db}"


def is_server(uri: str | None) -> bool:
    return bool(uri) and uri.startswith(("http://", "https://"))


def answers(uri: str, timeout_s: float = 2.0) -> bool:
    """Whether a tracking server answers its /health endpoint now."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def client(uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


class StudyTracker:
    """Driver side: experiment, parent run and child runs, identified by the study's run keys."""

    def __init__(self, uri: str, experiment: str, artifact_root: Path | None = None):
        self.uri = uri
        location = (artifact_root / "mlartifacts").resolve().as_uri() if artifact_root and uri.startswith("sqlite") else None
        if location:
            reroot_artifacts(uri, location)
        self.client = client(uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
        else:
            self.experiment_id = exp.experiment_id

    def find(self, key: str) -> str | None:
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.`pae.key` = '{key}'", max_results=1)
        return runs[0].info.run_id if runs else None

    def ensure_run(self, key: str, name: str, tags: dict[str, Any], parent_id: str | None = None,
                   status: str = "RUNNING") -> str:
        """The run of `key`, created once with `status`; an existing run keeps the status it has, so a
        rerun never makes a finished run look as if it were running again."""
        run_id = self.find(key)
        if run_id is None:
            all_tags = {"pae.key": key, **{k: str(v) for k, v in tags.items()}}
            if parent_id:
                all_tags["mlflow.parentRunId"] = parent_id
            run_id = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags).info.run_id
            if status != "RUNNING":
                self.client.update_run(run_id, status=status)
        return run_id

    def status(self, run_id: str) -> str:
        return self.client.get_run(run_id).info.status

    def set_status(self, run_id: str, status: str) -> None:
        """Terminal statuses through set_terminated (end time), the others through update_run."""
        if status in ("FINISHED", "FAILED", "KILLED"):
            self.client.set_terminated(run_id, status=status)
        else:
            self.client.update_run(run_id, status=status)

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        log_params(self.client, run_id, params)

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        log_metrics(self.client, run_id, metrics, step)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)


def reroot_artifacts(uri: str, location: str) -> None:
    """A copied or moved study folder: point its own SQLite store's artifact paths at the folder
    they now live in, so nothing is ever written into the folder the study came from."""
    import sqlite3

    db = Path(uri.removeprefix("sqlite:///"))
    if not db.is_file():
        return
    moved = False
    with contextlib.closing(sqlite3.connect(db)) as con, con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"experiments", "runs"} <= tables:
            return
        for (old,) in con.execute("SELECT DISTINCT artifact_location FROM experiments").fetchall():
            if old and old != location and old.endswith("/mlartifacts"):
                moved = True
                con.execute("UPDATE experiments SET artifact_location = ? WHERE artifact_location = ?", (location, old))
                con.execute("UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) WHERE artifact_uri LIKE ?",
                            (location, len(old) + 1, old + "/%"))
    if moved:  # MLflow caches each run's artifact repository per process, by run id
        from mlflow.tracking._tracking_service import utils

        utils._artifact_repos_cache.clear()


def log_params(mlflow_client, run_id: str, params: dict[str, Any]) -> None:
    """Params are immutable in MLflow: log only the keys the run does not have yet."""
    from mlflow.entities import Param

    existing = mlflow_client.get_run(run_id).data.params
    fresh = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in existing]
    for i in range(0, len(fresh), 100):
        mlflow_client.log_batch(run_id, params=fresh[i : i + 100])


def log_metrics(mlflow_client, run_id: str, metrics: dict[str, float], step: int, when: float | None = None) -> None:
    """`when` (seconds): the time the JSON-lines mirror holds, so MLflow and the mirror agree."""
    from mlflow.entities import Metric

    stamp = int((time.time() if when is None else when) * 1000)
    batch = [Metric(k, float(v), stamp, int(step)) for k, v in metrics.items()]
    for i in range(0, len(batch), 500):
        mlflow_client.log_batch(run_id, metrics=batch[i : i + 500])


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: MLflow params are flat."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return out


class RunLogger:
    """Job side: metrics, images and files of one run, to MLflow and to the JSON-lines mirror."""

    def __init__(self, run_dir: Path, uri: str | None, run_id: str | None, mirror: bool = True):
        """`mirror=False` (with no uri): a logger that writes nothing, for ranks > 0 of a multi-process job."""
        self.run_dir = Path(run_dir)
        self.mirror = mirror
        self.run_id = run_id
        self._client = None
        self._warned = False
        if uri and run_id:
            if is_server(uri) and not answers(uri, PROBE_TIMEOUT_S):  # an offline node: no retries per call
                self._warn(RuntimeError(f"{uri} does not answer"))
                return
            try:
                self._client = client(uri)
            except Exception as exc:  # tracking must never kill training
                self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        if not self._warned:
            warnings.warn(f"MLflow logging failed ({exc}); the JSON-lines mirror in {self.run_dir} keeps everything "
                          "(`pae-lab sync` replays it)")
            self._warned = True
        self._client = None

    def _safe(self, call) -> None:
        """Run one MLflow call if tracking is up; a failure warns once and turns tracking off."""
        if self._client is None:
            return
        try:
            call()
        except Exception as exc:  # tracking must never kill training
            self._warn(exc)

    def metrics(self, stage: str, values: dict[str, float], step: int, prefixed: bool = True) -> None:
        """`prefixed=False`: MLflow keys are the results.csv names (a headline value logged as its curve).
        The mirror records the MLflow key prefix, so `pae-lab sync` replays the same names."""
        if not self.mirror:
            return
        now = time.time()
        record = {"step": int(step), "time": now, **values}
        if not prefixed:
            record[MIRROR_PREFIX] = ""
        append_jsonl(mirror_path(self.run_dir, stage), record)
        named = {f"{stage}/{k}" if prefixed else k: v for k, v in values.items()}
        self._safe(lambda: log_metrics(self._client, self.run_id, named, step, now))

    def artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._safe(lambda: self._client.log_artifact(self.run_id, str(path), artifact_path))

    def params(self, params: dict[str, Any]) -> None:
        self._safe(lambda: log_params(self._client, self.run_id, params))

    def tags(self, tags: dict[str, Any]) -> None:
        self._safe(lambda: [self._client.set_tag(self.run_id, k, str(v)) for k, v in tags.items()])

    def started(self) -> None:
        """The job is running now (the driver created the run as SCHEDULED)."""
        self._safe(lambda: self._client.update_run(self.run_id, status="RUNNING"))

    def finish(self, status: str) -> None:
        self._safe(lambda: self._client.set_terminated(self.run_id, status=status))


def mirror_path(run_dir: Path, stage: str) -> Path:
    return Path(run_dir) / stage / METRIC_LOG


def iter_jsonl(path: Path) -> Iterable[dict[str, Any]]:
    if not Path(path).is_file():
        return
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if line:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:  # a torn last line from a killed job
                    continue
