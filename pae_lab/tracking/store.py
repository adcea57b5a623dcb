"""Tracking: the driver owns the MLflow store, jobs only log into runs the driver created.

The driver creates the store, the experiment, the study's parent run and one child run per
(variant, seed) before any job starts (a fresh SQLite store opened by many processes at once
races on its schema). Every record a job logs also goes to a JSON-lines mirror in its run folder
first (tracking.mirror), so a job on a node without network loses nothing, and a job whose server
went away sends the store what it lacks once it answers again (RunLogger, tracking.resume).
"""
from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from pae_lab.fsutil import append_jsonl
from pae_lab.plan import layout
from pae_lab.plan.layout import StudyLayout
from pae_lab.tracking.held import call, hold, log_params, refused, send, send_held
from pae_lab.tracking.mirror import MIRROR_PREFIX, replay
from pae_lab.tracking.mirror import iter_jsonl as iter_jsonl, mirror_path as mirror_path  # readers import them from here
from pae_lab.tracking.resume import Backoff, Reconnect

os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
# A tracking call fails within seconds, not after MLflow's own 7 retries (about 4 minutes): an outage
# is pae-lab's to ride out (RunLogger's back-off, the driver's reconcile), and a job must not wait on it.
for _name, _value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                      ("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")):
    os.environ.setdefault(_name, _value)

PROBE_TIMEOUT_S = 5  # a job asks a tracking server once whether it is there before it logs to it


def default_uri(study_dir: Path) -> str:
    return f"sqlite:///{StudyLayout(Path(study_dir).resolve()).mlflow_db}"


def tracking_uri(configured: str | None, study_dir: Path | str) -> str:
    """The study's `tracking.uri`, else the SQLite store in its own folder."""
    return configured or default_uri(Path(study_dir))


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

    if uri.startswith("sqlite:///"):
        seed_sqlite_store(Path(uri.removeprefix("sqlite:///")))
    return mlflow.MlflowClient(tracking_uri=uri)


def empty_store_template() -> Path:
    """An empty SQLite store MLflow created and migrated itself, kept once per MLflow version in the
    user's cache ($XDG_CACHE_HOME/pae-lab): each new study copies it instead of running MLflow's ~30
    schema migrations again (about 3 s a study)."""
    import tempfile

    import mlflow

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pae-lab"
    template = cache / layout.empty_mlflow_store(mlflow.__version__)
    if not template.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            made = Path(tmp) / template.name
            mlflow.MlflowClient(tracking_uri=f"sqlite:///{made}").search_experiments()  # creates and migrates
            os.replace(made, template)  # whole or absent, whoever writes it last
    return template


def seed_sqlite_store(db: Path) -> None:
    """A store that does not exist yet starts as a copy of the empty template (never over a store that
    does: the copy is linked into place, which fails if another process got there first). Its Default
    experiment's artifacts point into the study's folder, not where the template was made."""
    import shutil
    import sqlite3

    if db.exists():
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    staged = db.with_name(f".{db.name}.{os.getpid()}")
    shutil.copyfile(empty_store_template(), staged)
    with contextlib.closing(sqlite3.connect(staged)) as con, con:
        con.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                    (str(StudyLayout(db.parent.resolve()).artifacts / "0"),))
    try:
        os.link(staged, db)
    except FileExistsError:
        pass
    finally:
        staged.unlink()


class StudyTracker:
    """Driver side: experiment, parent run and child runs, identified by the study's run keys."""

    def __init__(self, uri: str, experiment: str, artifact_root: Path | None = None):
        self.uri = uri
        location = StudyLayout(artifact_root).artifacts.resolve().as_uri() if artifact_root and uri.startswith("sqlite") else None
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
    """Job side: metrics, images and files of one run, to MLflow and to the JSON-lines mirror.

    Tracking never stops training, and a job never waits on the store. When a call fails, the
    logger keeps writing the mirror and skips the store; on a later call, once the back-off allows
    (tracking.resume), it asks the server again, and when it answers sends first what the store
    lacks from the mirror (only missing points), then the tags, statuses and files it held back."""

    def __init__(self, run_dir: Path, uri: str | None, run_id: str | None, mirror: bool = True,
                 backoff: Backoff | None = None):
        """`mirror=False` (with no uri): a logger that writes nothing, for ranks > 0 of a multi-process job."""
        self.run_dir = Path(run_dir)
        self.mirror = mirror
        self.uri, self.run_id = uri, run_id
        self._client = None
        self._held: list[Callable[[], Any]] = []  # statuses held back, for when the store answers (other calls: HELD_CALLS)
        self._gave_up_said = False
        self._link = Reconnect(self.run_dir, uri, run_id, backoff) if uri and run_id and mirror else None
        if self._link is None or self._link.down:  # an earlier job left points unsent: the first call tries
            return
        if is_server(uri) and not answers(uri, PROBE_TIMEOUT_S):  # an offline node: no MLflow retries per call
            self._lost(RuntimeError(f"{uri} does not answer"), time.time())
            return
        try:
            self._client = client(uri)
        except Exception as exc:  # tracking must never kill training
            self._lost(exc, time.time())

    def _lost(self, exc: Exception, since: float) -> None:
        if self._link.lost(f"{type(exc).__name__}: {exc}", since):
            warnings.warn(f"MLflow logging failed ({exc}); the JSON-lines mirror in {self.run_dir} keeps everything: "
                          f"training goes on, and the store gets what it lacks once {self.uri} answers again (from "
                          "this job, else from the driver at the end, or `pae-lab sync`)")

    def _recover(self, force: bool = False) -> bool:
        """One attempt, if due: the server answers -> the store gets what the mirror holds and it lacks,
        then the calls held back. True when the store is up to date again."""
        link = self._link
        if not link.due(force):
            if link.gave_up and not self._gave_up_said:
                self._gave_up_said = True
                r = link.record
                warnings.warn(f"MLflow logging: gave up on {self.uri} after {r['attempts']} attempt(s) "
                              f"({r['attempt_seconds']:.1f} s); the driver's reconcile or `pae-lab sync` sends the rest")
            return False
        start = time.monotonic()
        try:
            if is_server(self.uri) and not answers(self.uri, link.policy.probe_s):
                raise ConnectionError(f"{self.uri} does not answer")
            self._client = self._client or client(self.uri)
            added, _ = replay(self._client, self.run_id, self.run_dir)
            send_held(self._client, self.run_id, self.run_dir)  # before the statuses: a FINISHED run gets its files first
            self._send_held()
        except Exception as exc:  # still down: the next attempt waits longer
            link.attempted(time.monotonic() - start, None, f"{type(exc).__name__}: {exc}")
            return False
        link.attempted(time.monotonic() - start, added)
        try:
            from mlflow.entities import RunTag

            self._client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in link.tags().items()])
        except Exception:  # the record in the run folder keeps the same numbers
            pass
        return True

    def _send_held(self) -> None:
        """The statuses held back during the outage, in order; one the store refuses while it answers is dropped."""
        while self._held:
            try:
                self._held[0]()
            except Exception as exc:
                if is_server(self.uri) and not answers(self.uri, self._link.policy.probe_s):
                    raise  # gone again: kept for the next attempt
                warnings.warn(f"MLflow call held back during an outage failed once the store answered ({exc}); dropped")
            self._held.pop(0)

    def _safe(self, call: Callable[[], Any], hold: bool = False, since: float | None = None,
              mirrored: bool = False) -> None:
        """Run one MLflow call if the store is up; a failure starts an outage, never an exception.
        `hold`: a call the mirror does not keep (tags, statuses, files), sent when the store answers
        again; `mirrored`: a record of the mirror, which a catch-up just now has already sent."""
        if self._link is None:
            return
        if self._link.down:
            if not self._recover():
                if hold:
                    self._held.append(call)
                return
            if mirrored:
                return
        try:
            call()
        except Exception as exc:  # tracking must never kill training
            if hold:
                self._held.append(call)
            self._lost(exc, time.time() if since is None else since)

    def metrics(self, stage: str, values: dict[str, float], step: int, prefixed: bool = True) -> None:
        """`prefixed=False`: MLflow keys are the results.csv names (a headline value logged as its curve).
        The mirror records the MLflow key prefix, so a replay sends the same names."""
        if not self.mirror:
            return
        now = time.time()
        record = {"step": int(step), "time": now, **values}
        if not prefixed:
            record[MIRROR_PREFIX] = ""
        append_jsonl(mirror_path(self.run_dir, stage), record)
        named = {f"{stage}/{k}" if prefixed else k: v for k, v in values.items()}
        self._safe(lambda: log_metrics(self._client, self.run_id, named, step, now), since=now, mirrored=True)

    def _call(self, kind: str, **args: Any) -> None:
        """A call the metric mirror does not keep (tracking.held): sent now, after any the folder holds
        from before, if the store is up; else held in the folder, in order, for whoever reaches the
        store next. A logger whose run has no id yet (the driver could not create it) holds them all."""
        if not (self.mirror and self.uri):
            return
        record = call(self.run_dir, kind, **args)
        if self._link is None or (self._link.down and not self._recover()):
            self._hold(record)
            return
        try:
            send_held(self._client, self.run_id, self.run_dir)  # an earlier job's first (one stuck stays for sync)
            send(self._client, self.run_id, record, self.run_dir)
        except Exception as exc:  # tracking must never kill training
            if refused(exc):
                warnings.warn(f"MLflow refused a {kind} call ({type(exc).__name__}: {exc}); not sent")
                return
            self._hold(record)
            self._lost(exc, time.time())

    def _hold(self, record: dict[str, Any]) -> None:
        try:
            hold(self.run_dir, record)
        except Exception as exc:  # a full disk must not kill training either
            warnings.warn(f"could not keep a held {record['kind']} call in {self.run_dir} ({exc}); it is lost")

    def artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._call("artifact", path=str(path), artifact_path=artifact_path)

    @property
    def connected(self) -> bool:
        """Whether the store answered and no outage is under way."""
        return self._client is not None and self._link is not None and not self._link.down

    def inputs(self, datasets: list[dict[str, Any]]) -> None:
        """Dataset inputs of the run (tracking.lineage.run_datasets)."""
        self._call("inputs", datasets=datasets)

    def model(self, name: str, files: list[Path], params: dict[str, Any], step: int) -> None:
        """Files as a logged model of the run (tracking.lineage.log_tokenizer)."""
        self._call("model", name=name, files=[str(f) for f in files], params=params, step=step)

    def params(self, params: dict[str, Any]) -> None:
        self._call("params", params=params)

    def tags(self, tags: dict[str, Any]) -> None:
        self._call("tags", tags={k: str(v) for k, v in tags.items()})

    def started(self) -> None:
        """The job is running now (the driver created the run as SCHEDULED)."""
        self._safe(lambda: self._client.update_run(self.run_id, status="RUNNING"), hold=True)

    def finish(self, status: str) -> None:
        """The run's end; during an outage, one last attempt here, whatever the back-off says."""
        if self._link is not None and self._link.down:
            self._recover(force=True)
        self._safe(lambda: self._client.set_terminated(self.run_id, status=status), hold=True)
