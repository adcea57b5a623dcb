"""Calls a logger could not send while the store was away, kept in its folder until someone sends them.

Metric points have the JSON-lines mirror (tracking.mirror); everything else a job sends (files,
tags, params, dataset inputs, the tokenizer's logged model) is a JSON record here, one line each in
order, in the logger's folder (layout.HELD_CALLS). The job sends them once the store answers again;
if it ends first, the next job in that folder, the driver's reconcile or `pae-lab sync` does. Paths
are kept relative to the folder, so a moved study still sends its files. Appends and removals hold a
lock, so a job and `sync` can add and remove calls in one folder at once; every sender is idempotent,
so a call sent twice (a crash between sending and forgetting it, or a job and `sync` sending the same
one) does no harm, except two tokenizer models if both upload it at the same moment.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
import warnings
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from pae_lab.fsutil import atomic_write
from pae_lab.plan import layout
from pae_lab.tracking.mirror import iter_jsonl

NEVER_CODES = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "RESOURCE_DOES_NOT_EXIST"}  # MLflow's "this call is wrong"
NEVER_HTTP = {400, 404, 413, 422}  # the artifact proxy's plain HTTP answers that mean the same
PATH_ARGS = ("path", "files")  # the arguments that name files, relative to the folder when inside it


def log_params(mlflow_client, run_id: str, params: dict[str, Any]) -> None:
    """Params are immutable in MLflow: log only the keys the run does not have yet."""
    from mlflow.entities import Param

    existing = mlflow_client.get_run(run_id).data.params
    fresh = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in existing]
    for i in range(0, len(fresh), 100):
        mlflow_client.log_batch(run_id, params=fresh[i : i + 100])


def _send_tags(mlflow_client, run_id: str, tags: dict[str, Any]) -> None:
    from mlflow.entities import RunTag

    mlflow_client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def _send_inputs(mlflow_client, run_id: str, datasets: list[dict[str, Any]]) -> None:
    """Once more after a BAD_REQUEST: two jobs that log the same new dataset at once race in MLflow's SQL
    store (it looks the dataset up, then inserts it), and the loser's insert, refused by the unique key,
    comes back as BAD_REQUEST; the second try finds the dataset and links it. A call that is really wrong
    fails again and is dropped as before."""
    from mlflow.exceptions import MlflowException

    from pae_lab.tracking.lineage import dataset_inputs

    try:
        mlflow_client.log_inputs(run_id, datasets=dataset_inputs(datasets))
    except MlflowException as exc:
        if exc.error_code != "BAD_REQUEST":
            raise
        mlflow_client.log_inputs(run_id, datasets=dataset_inputs(datasets))


def _send_model(mlflow_client, run_id: str, name: str, files: list[str], params: dict[str, Any], step: int) -> None:
    from pae_lab.tracking.lineage import log_tokenizer

    missing = [f for f in files if not Path(f).is_file()]
    if missing:  # before the store starts a model it could not finish
        raise FileNotFoundError(f"the tokenizer's files are gone: {', '.join(missing)}")
    log_tokenizer(mlflow_client, run_id, name, [Path(f) for f in files], params, step)


def _send_artifact(mlflow_client, run_id: str, path: str, artifact_path: str | None) -> None:
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} is gone")
    mlflow_client.log_artifact(run_id, path, artifact_path)


# What a logger sends besides metric points, by kind: each call is a JSON record {"kind", "args", "id"}.
SENDERS: dict[str, Callable[..., Any]] = {
    "artifact": _send_artifact,
    "params": log_params,
    "tags": _send_tags,
    "inputs": _send_inputs,
    "model": _send_model,
}


def call(folder: Path, kind: str, **args: Any) -> dict[str, Any]:
    """A call record; paths inside `folder` kept relative to it."""
    def portable(path: str) -> str:
        absolute = os.path.abspath(path)
        with contextlib.suppress(ValueError):
            return Path(absolute).relative_to(os.path.abspath(folder)).as_posix()
        return absolute

    args = {k: ([portable(p) for p in v] if isinstance(v, list) else portable(v)) if k in PATH_ARGS and v is not None else v
            for k, v in args.items()}
    return {"kind": kind, "args": args, "id": uuid.uuid4().hex}


def send(mlflow_client, run_id: str, record: dict[str, Any], folder: Path) -> None:
    """One recorded call to the run, its relative paths read against `folder`."""
    at = lambda p: str(Path(folder) / p)  # noqa: E731  (an absolute p stays itself)
    args = {k: ([at(p) for p in v] if isinstance(v, list) else at(v)) if k in PATH_ARGS and v is not None else v
            for k, v in record["args"].items()}
    SENDERS[record["kind"]](mlflow_client, run_id, **args)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[Path]:
    """The folder's held-calls file, locked against other processes (unlocked where the file system has no locks)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    with open(Path(folder) / layout.HELD_CALLS_LOCK, "a") as lock:
        try:
            fcntl.lockf(lock, fcntl.LOCK_EX)
        except OSError:  # ENOLCK / EOPNOTSUPP: one writer at a time is then the caller's to ensure
            pass
        try:
            yield Path(folder) / layout.HELD_CALLS
        finally:
            with contextlib.suppress(OSError):
                fcntl.lockf(lock, fcntl.LOCK_UN)


def held_calls(folder: Path) -> list[dict[str, Any]]:
    """The calls a logger of this folder held back and no one has sent yet, in order."""
    return list(iter_jsonl(Path(folder) / layout.HELD_CALLS))


def hold(folder: Path, record: dict[str, Any]) -> None:
    """Add a call after those the folder holds."""
    with _locked(folder) as path, open(path, "a") as fh:
        fh.write(json.dumps(record, default=str) + "\n")  # one write: readers never see half a line


def forget(folder: Path, record: dict[str, Any]) -> None:
    """Remove one call (sent, or dropped); the file goes with the last one."""
    with _locked(folder) as path:
        left = [r for r in iter_jsonl(path) if r != record]
        if left:
            atomic_write(path, lambda tmp: tmp.write_text("".join(json.dumps(r, default=str) + "\n" for r in left)))
        else:
            path.unlink(missing_ok=True)


def refused(exc: Exception) -> bool:
    """Whether the store will never take this call: MLflow calls it wrong (NEVER_CODES), the artifact
    proxy answers 400 / 404 / 413 / 422, or the call's file is gone. Anything else (down, a 5xx, 401 / 403,
    429, time-outs, a locked SQLite file) may pass later."""
    import requests
    from mlflow.exceptions import MlflowException, RestException

    if isinstance(exc, FileNotFoundError):
        return True
    if isinstance(exc, RestException) or type(exc) is MlflowException:
        return exc.error_code in NEVER_CODES
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return exc.response.status_code in NEVER_HTTP
    return False


@dataclass
class Sent:
    sent: int = 0
    dropped: int = 0  # refused for good (`refused`), with a warning
    left: int = 0  # kept: the first failed for another reason, and every call after it waits


def send_held(mlflow_client, run_id: str, folder: Path) -> Sent:
    """Send a folder's held calls in order, each forgotten once sent. A call the store refuses for good
    is dropped with a warning; at any other error the calls from there on are kept (warned, not raised:
    the caller's own next call, the reconcile or `sync` tries again), so one stuck call never stops a job."""
    out, calls = Sent(), held_calls(folder)
    for i, record in enumerate(calls):
        try:
            send(mlflow_client, run_id, record, folder)
            out.sent += 1
        except Exception as exc:
            where = f"{Path(folder) / layout.HELD_CALLS}: a held {record.get('kind')} call"
            if not refused(exc):
                out.left = len(calls) - i
                warnings.warn(f"{where} failed ({type(exc).__name__}: {exc}); it and the {out.left - 1} after it are kept")
                return out
            out.dropped += 1
            warnings.warn(f"{where} can never be sent ({type(exc).__name__}: {exc}); dropped")
        forget(folder, record)
    return out
