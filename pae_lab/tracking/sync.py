"""`pae-lab sync`: replay the JSON-lines metric mirrors into the tracking store.

A job on a node that cannot reach the tracking server keeps training and writes every metric to
its run folder's mirror (see tracking.RunLogger). Sync makes the store hold what the folders hold:
it finds or creates the runs of every run folder (a study's variants, a search's trials; by their
`pae.key` tag, as `pae-lab run` does), logs only the points the store lacks, and sets each run's
status from its folder. A second sync adds nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from pae_lab.config.schema import StudyConfig
from pae_lab.plan.layout import METRIC_LOG
from pae_lab.tracking.store import MIRROR_PREFIX, iter_jsonl

BATCH = 1000  # MLflow's most metrics per log_batch
Point = tuple  # (key, step, value, timestamp_ms)


def mirror_points(run_dir: Path) -> list[Point]:
    """Every metric point a run folder's stage mirrors hold, under the key MLflow gives it."""
    points = []
    for path in sorted(Path(run_dir).glob(f"*/{METRIC_LOG}")):
        stage = path.parent.name
        for record in iter_jsonl(path):
            if "step" not in record:
                continue
            prefix = record.get(MIRROR_PREFIX, f"{stage}/")
            stamp = int(float(record.get("time", 0)) * 1000)
            for key, value in record.items():
                if key not in ("step", "time") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    points.append((f"{prefix}{key}", int(record["step"]), float(value), stamp))
    return points


def identity(point: Point) -> tuple:
    """A point is the same point if key, step and value agree (NaN equals NaN here)."""
    key, step, value, _ = point
    return key, step, "nan" if math.isnan(value) else value


def missing_points(mlflow_client, run_id: str, points: list[Point]) -> list[Point]:
    """The points of `points` the run does not hold yet."""
    held = set()
    for key in sorted({p[0] for p in points}):
        held.update(identity((key, m.step, m.value, m.timestamp)) for m in mlflow_client.get_metric_history(run_id, key))
    missing, seen = [], set()
    for point in points:
        ident = identity(point)
        if ident not in held and ident not in seen:
            seen.add(ident)
            missing.append(point)
    return missing


def replay(mlflow_client, run_id: str, run_dir: Path) -> tuple[int, int]:
    """(points added, points already there) for one run folder."""
    from mlflow.entities import Metric

    points = mirror_points(run_dir)
    missing = missing_points(mlflow_client, run_id, points)
    batch = [Metric(key, value, stamp, step) for key, step, value, stamp in missing]
    for i in range(0, len(batch), BATCH):
        mlflow_client.log_batch(run_id, metrics=batch[i : i + BATCH])
    return len(missing), len(points) - len(missing)


@dataclass
class SyncOutcome:
    runs: int
    added: int
    present: int


def sync_study(study: StudyConfig, console: Console | None = None) -> SyncOutcome:
    from pae_lab.plan.layout import StudyLayout
    from pae_lab.plan.runs import RunSpec, expand
    from pae_lab.tracking.study_runs import StudyRuns

    console = console or Console()
    layout = StudyLayout(study.study_dir())
    mlflow = StudyRuns(study, expand(study))
    specs = [RunSpec.load(r.run_json) for r in layout.runs_on_disk()]
    tracker = mlflow.tracker()
    parent = mlflow.ensure_parent(tracker, status="FINISHED")
    if specs:
        mlflow.register(tracker, parent, specs)
    folders = {parent: layout.shared_root, **{s.mlflow_run_id: s.run_dir for s in specs}}
    added = present = 0
    for run_id, folder in folders.items():
        new, old = replay(tracker.client, run_id, folder)
        added, present = added + new, present + old
        if new:
            console.log(f"{folder.relative_to(layout.root)}: {new} point(s) added ({old} already there)")
    mlflow.settle(tracker, specs)
    return SyncOutcome(len(folders), added, present)
