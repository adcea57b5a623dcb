"""The JSON-lines mirror: every record a logger sends to MLflow, kept in the logger's folder first.

One file per stage (`<folder>/<stage>/` + layout.METRIC_LOG), one line per record. Read back, the
lines are MLflow points under the keys MLflow gives them, so whatever the store lacks can be sent
again: by a job once the server answers again (tracking.store.RunLogger), by the driver at the end
of a run (tracking.outage) and by `pae-lab sync`. Only points the store lacks are sent, so none
arrives twice. Stdlib only until a point is actually sent.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Iterable

from pae_lab.plan.layout import METRIC_LOG

MIRROR_PREFIX = "mlflow_prefix"  # a mirror record's MLflow key prefix, where it is not "<stage>/"
BATCH = 1000  # MLflow's most metrics per log_batch
Point = tuple  # (key, step, value, timestamp_ms)


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
    """A point is the same point if key, step and value agree (NaN equals NaN here, and an infinite
    value is the largest float of its sign, as MLflow's SQL stores keep it)."""
    key, step, value, _ = point
    if math.isinf(value):
        value = math.copysign(sys.float_info.max, value)
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
