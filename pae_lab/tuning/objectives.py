"""What a trial is told: objective values from its results, intermediate values while it trains.

Objective values are read from the same per-run summaries results.csv is built from (mean over the
study's seeds), so every column the pipeline produces can be an objective. Intermediate values
come from the JSON-lines metric mirrors the jobs write (runs/<trial>/seed<s>/<stage>/metrics.jsonl),
so pruning works the same under every launcher, without network or tracking server.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from pae_lab.results.aggregate import target_columns
from pae_lab.config.schema import StudyConfig
from pae_lab.tracking.store import iter_jsonl, mirror_path
from pae_lab.config.search import ConstraintSpec, ObjectiveSpec

INTERMEDIATE_STAGES = ("tokenizer", "generator", "generation")


class MissingMetric(LookupError):
    """An objective names a column the pipeline did not produce: a study error, not a trial's."""


def aliases(study: StudyConfig) -> dict[str, str]:
    """gfid / kid / rfid -> the study's actual column names (they depend on the FID extractor)."""
    target, kid = target_columns(study)
    return {"gfid": target, "kid": kid, "rfid": f"r{target}"}


def column_mean(metric: str, rows: pd.DataFrame, study: StudyConfig, used_by: str) -> float:
    """The mean over the trial's runs (seeds) of a column or alias; `used_by` names who asked, for the error."""
    names = aliases(study)
    column = names.get(metric, metric)
    if column not in rows:
        available = sorted(c for c in rows.columns if pd.api.types.is_numeric_dtype(rows[c]) and c != "seed")
        raise MissingMetric(f"{used_by}: no column {column!r} in the trial's results; "
                            f"available: {', '.join(available)} (aliases: {', '.join(names)})")
    return float(pd.to_numeric(rows[column], errors="coerce").mean())


def objective_value(objective: ObjectiveSpec, rows: pd.DataFrame, study: StudyConfig) -> float:
    """Weighted sum over the objective's columns of their mean over the trial's runs (seeds)."""
    return sum(weight * column_mean(metric, rows, study, f"objective {objective.label!r}")
               for metric, weight in objective.weights.items())


def objective_values(objectives: Iterable[ObjectiveSpec], rows: pd.DataFrame, study: StudyConfig) -> list[float]:
    return [objective_value(o, rows, study) for o in objectives]


CONSTRAINTS_ATTR = "violations"  # the trial's user attribute the driver sets and constraints_func reads


def constraint_violations(constraints: Iterable[ConstraintSpec], rows: pd.DataFrame, study: StudyConfig) -> list[float]:
    """Per constraint, by how much the trial misses it (Optuna's convention: <= 0 is feasible); a value
    the trial did not produce (NaN) misses it by infinity, which Optuna takes and NaN it would not."""
    misses = [c.violation(column_mean(c.metric, rows, study, f"constraint {c.label!r}")) for c in constraints]
    return [m if math.isfinite(m) else float("inf") for m in misses]


def stored_violations(n: int) -> Callable[[Any], list[float]]:
    """Optuna's constraints_func for `n` constraints: what the driver stored before telling; a trial
    stopped before it had values (pruned) counts as infeasible."""
    return lambda trial: trial.user_attrs.get(CONSTRAINTS_ATTR) or [float("inf")] * n


def intermediate_source(source: str, study: StudyConfig) -> tuple[str, str]:
    """A pruner source -> (stage, metric key): 'gfid' is the generation stage's FD column, a leading
    stage name picks that stage, anything else is a tokenizer metric key (loss/total, loss/l1, ...)."""
    if source == "gfid":
        return "generation", aliases(study)["gfid"]
    stage, _, key = source.partition("/")
    return (stage, key) if stage in INTERMEDIATE_STAGES and key else ("tokenizer", source)


def read_intermediate(run_dirs: Iterable[Path], stage: str, key: str) -> dict[int, float]:
    """{step: value averaged over runs}, for the steps every run has logged so far (finite values only)."""
    per_run: list[dict[int, float]] = []
    for run_dir in run_dirs:
        values: dict[int, Any] = {}
        for record in iter_jsonl(mirror_path(run_dir, stage)):
            if key in record and "step" in record:
                values[int(record["step"])] = record[key]  # a resumed run re-logs a step: the last one counts
        per_run.append({s: float(v) for s, v in values.items() if isinstance(v, (int, float)) and math.isfinite(v)})
    if not per_run:
        return {}
    steps = set.intersection(*(set(v) for v in per_run))
    return {s: sum(v[s] for v in per_run) / len(per_run) for s in sorted(steps)}
