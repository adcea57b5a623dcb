"""How far the tracking store is behind the run folders' mirrors, in points.

Asked of the store itself where it answers within a short deadline: the SQLite file is read
directly, a server through its bulk history endpoint (one request per metric key for up to 100
runs). Where it does not answer, counted from what the loggers recorded they could not send
(tracking.resume), and said so: a count is never passed off as the store's own. Stdlib only and
bounded in time, because `pae-lab status` asks it and must stay cheap and never hang.
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from pae_lab.fsutil import read_json
from pae_lab.tracking.mirror import identity, mirror_points
from pae_lab.tracking.resume import unsent_since
from pae_lab.tracking.held import held_calls
from pae_lab.tracking.store import answers, is_server, tracking_uri

STATUS_TIMEOUT_S = 3.0  # the most `pae-lab status` waits on the store, in all
RECONCILE_TIMEOUT_S = 60.0  # the driver's count at the end of a run: a slow server still answers
BULK_PATH = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"  # the server's history of one key, many runs
BULK_RUNS, BULK_POINTS = 100, 25000  # the server's most run ids per request and points per run


@dataclass
class Lag:
    """Points of each folder's mirror the store lacks. `asked`: counted in the store; otherwise the
    store did not answer (`why`) and the counts are what the loggers recorded they could not send."""

    uri: str
    asked: bool
    behind: dict[Path, int]
    points: dict[Path, int] = field(default_factory=dict)  # distinct points each mirror holds
    why: str = ""
    held: dict[Path, int] = field(default_factory=dict)  # calls each folder's loggers held back (files, tags, lineage)

    @property
    def total(self) -> int:
        return sum(self.behind.values())

    @property
    def held_total(self) -> int:
        return sum(self.held.values())

    def lagging(self) -> dict[Path, int]:
        """The folders the store lacks points or held calls of -> the points it lacks."""
        return {folder: n for folder, n in self.behind.items() if n or self.held.get(folder)}


def store_lag(uri: str, folders: dict[Path, str | None], timeout_s: float = STATUS_TIMEOUT_S) -> Lag:
    """`folders`: each logger folder (a run's, shared/) -> its MLflow run id (None: it has no run)."""
    calls = {folder: len(held_calls(folder)) for folder in folders}
    held_by = {folder: {identity(p): p[3] for p in mirror_points(folder)} for folder in folders}
    points = {folder: len(held) for folder, held in held_by.items()}
    keys = {ident[0] for held in held_by.values() for ident in held}
    run_ids = sorted({run_id for run_id in folders.values() if run_id})
    held, why = store_points(uri, run_ids, keys, timeout_s) if run_ids and keys else ({}, "")
    if held is None:
        recorded = {}
        for folder, run_id in folders.items():
            since = unsent_since(folder, run_id) if run_id else 0.0
            cut = None if since is None else int(since * 1000)
            recorded[folder] = 0 if cut is None else sum(stamp >= cut for stamp in held_by[folder].values())
        return Lag(uri, False, recorded, points, why, calls)
    behind = {folder: len(set(held_by[folder]) - held.get(run_id, set())) if run_id else points[folder]
              for folder, run_id in folders.items()}
    return Lag(uri, True, behind, points, held=calls)


def store_points(uri: str, run_ids: list[str], keys: set[str], timeout_s: float) -> tuple[dict | None, str]:
    """({run id: identities of its points}, "") from the store, or (None, why it was not asked)."""
    if uri.startswith("sqlite:///"):
        return sqlite_points(Path(uri.removeprefix("sqlite:///")), run_ids, timeout_s)
    if is_server(uri):
        return server_points(uri, run_ids, sorted(keys), timeout_s)
    return None, f"{uri.split(':', 1)[0]} stores are not asked (only SQLite files and tracking servers)"


def sqlite_points(db: Path, run_ids: list[str], timeout_s: float) -> tuple[dict | None, str]:
    if not db.is_file():
        return {}, ""  # no store yet: it holds nothing
    held: dict[str, set] = {}
    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout_s)) as con:
            for i in range(0, len(run_ids), 500):
                chunk = run_ids[i : i + 500]
                rows = con.execute(f"SELECT run_uuid, key, step, value, is_nan FROM metrics WHERE run_uuid IN "
                                   f"({','.join('?' * len(chunk))})", chunk)
                for run_id, key, step, value, is_nan in rows:
                    held.setdefault(run_id, set()).add(identity((key, int(step), float("nan") if is_nan else float(value), 0)))
    except sqlite3.Error as exc:
        return None, f"{db}: {exc}"
    return held, ""


def server_points(uri: str, run_ids: list[str], keys: list[str], timeout_s: float) -> tuple[dict | None, str]:
    deadline = time.monotonic() + timeout_s
    if not answers(uri, min(timeout_s, 2.0)):
        return None, f"{uri} does not answer"
    held: dict[str, set] = {}
    for key in keys:
        for i in range(0, len(run_ids), BULK_RUNS):
            left = deadline - time.monotonic()
            if left <= 0:
                return None, f"{uri} did not give every run's history within {timeout_s:g} s"
            query = urllib.parse.urlencode([("run_id", r) for r in run_ids[i : i + BULK_RUNS]]
                                           + [("metric_key", key), ("max_results", BULK_POINTS)])
            try:
                with urllib.request.urlopen(f"{uri.rstrip('/')}{BULK_PATH}?{query}", timeout=left) as resp:
                    metrics = json.loads(resp.read()).get("metrics", [])
            except (urllib.error.URLError, OSError, ValueError) as exc:
                return None, f"{uri}{BULK_PATH}: {exc}"
            for m in metrics:
                held.setdefault(m["run_id"], set()).add(identity((m["key"], int(m.get("step", 0)), float(m["value"]), 0)))
    return held, ""


def status_column(study, runs) -> tuple[dict[Path, str], str]:
    """`pae-lab status`'s `store` column for the study's planned runs, asked within STATUS_TIMEOUT_S."""
    folders = {spec.run_dir: (read_json(spec.layout.run_json) or {}).get("mlflow_run_id") for spec in runs}
    return status_cells(store_lag(tracking_uri(study.tracking.uri, study.study_dir()), folders, STATUS_TIMEOUT_S))


def status_cells(lag: Lag) -> tuple[dict[Path, str], str]:
    """The `store` column of `pae-lab status` (resolved folder -> cell) and the table's caption."""
    cells = {}
    for folder, n in lag.behind.items():
        calls = lag.held.get(folder, 0)
        if not lag.points.get(folder) and not calls:
            cell = "-"
        elif lag.asked:
            cell = f"[yellow]{n} behind[/]" if n or calls else "[green]complete[/]"
        else:
            cell = f"[yellow]{n} unsent[/]" if n else "[dim]unknown[/]"
        cells[Path(folder).resolve()] = cell + (f"[yellow], {calls} held[/]" if calls else "")
    caption = "" if lag.asked else (f"store unreachable ({lag.why}): `unsent` counts the points jobs recorded they "
                                    "could not send; `pae-lab sync` adds them once it answers")
    if lag.held_total:
        caption += (" " if caption else "") + ("`held`: files, tags and lineage jobs could not send, kept in their run "
                                               "folders; `pae-lab sync` sends them")
    return cells, caption
