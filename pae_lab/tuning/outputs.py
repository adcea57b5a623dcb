"""The search's tables in the study folder: trials.csv, pareto.csv, importances.csv, best.json.

Built from the stored trials (not from this session's memory), so a resumed search writes the
whole study. Column names are the ones the report reads: `value` (one objective) or `values_0`,
`values_1`, ... (several; completed trials only), `params_<name>`, `state`, `number`, `duration` (seconds),
plus `variant` (the trial's run folder name) and `error` (why a trial failed).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.table import Table

from pae_lab.results.aggregate import write_csv
from pae_lab.fsutil import write_json
from pae_lab.plan.layout import StudyLayout
from pae_lab.config.search import SearchConfig
from pae_lab.tuning.objectives import CONSTRAINTS_ATTR

MIN_IMPORTANCE_TRIALS = 3  # fANOVA on fewer completed trials says nothing (and Optuna refuses one)


@dataclass
class SearchSummary:
    trials: pd.DataFrame
    pareto: pd.DataFrame
    importances: pd.DataFrame
    best: list[dict[str, Any]]
    importance_note: str = ""


def value_columns(n_objectives: int) -> list[str]:
    return ["value"] if n_objectives == 1 else [f"values_{i}" for i in range(n_objectives)]


def trials_frame(trials: list, search: SearchConfig) -> pd.DataFrame:
    """One row per stored trial: number, state, value(s), params_<name>, duration, variant, error."""
    columns = value_columns(len(search.objectives))
    labels = list(search.by_label())
    rows = []
    for t in trials:
        # Only completed trials have objective values (Optuna gives a pruned one its last intermediate value,
        # e.g. a training loss: not comparable, so left out here; the dashboard still shows it).
        values = list(t.values) if t.state.name == "COMPLETE" else [None] * len(columns)
        row: dict[str, Any] = {"number": t.number, "state": t.state.name, **dict(zip(columns, values))}
        row.update({f"params_{name}": t.params.get(name) for name in labels})
        extra = sorted(set(t.params) - set(labels))  # params of an earlier search block
        row.update({f"params_{name}": t.params[name] for name in extra})
        violations = t.user_attrs.get(CONSTRAINTS_ATTR) or [None] * len(search.constraints)
        row.update({f"violation_{c.label}": v for c, v in zip(search.constraints, violations)})
        if search.constraints:
            row["feasible"] = all(v is not None and v <= 0 for v in violations)
        row["duration"] = t.duration.total_seconds() if t.duration is not None else None
        row["variant"] = t.user_attrs.get("variant", "")
        row["error"] = t.user_attrs.get("error", "")
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["number", "state", *columns, "duration", "variant", "error"])


def pareto_numbers(study) -> list[int]:
    """Trial numbers of the Pareto front (the best trial for one objective); none while nothing completed."""
    try:
        return sorted(t.number for t in study.best_trials)
    except ValueError:
        return []


def importances_frame(study, search: SearchConfig) -> tuple[pd.DataFrame, str]:
    """Optuna's fANOVA importances (fractions summing to 1) per objective; empty with a note when too few
    trials completed. Column `importance` is the first objective's, `importance_<name>` each one's."""
    import optuna

    empty = pd.DataFrame(columns=["param", "importance"])
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < MIN_IMPORTANCE_TRIALS:
        return empty, f"importances need {MIN_IMPORTANCE_TRIALS} completed trials, the study has {len(complete)}"
    table: dict[str, dict[str, float]] = {}
    for i, name in enumerate(search.objective_names):
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=search.sampler.seed)
        try:
            found = optuna.importance.get_param_importances(
                study, evaluator=evaluator, target=(lambda t, i=i: t.values[i]) if len(search.objectives) > 1 else None)
        except (ValueError, RuntimeError) as exc:  # e.g. every completed trial has the same values
            return empty, f"importances not computable: {exc}"
        for param, value in found.items():
            table.setdefault(param, {})[f"importance_{name}"] = float(value)
    frame = pd.DataFrame([{"param": p, **v} for p, v in table.items()])
    frame.insert(1, "importance", frame[f"importance_{search.objective_names[0]}"])
    return frame.sort_values("importance", ascending=False, ignore_index=True), ""


def best_records(trials: pd.DataFrame, numbers: list[int], search: SearchConfig) -> list[dict[str, Any]]:
    columns = value_columns(len(search.objectives))
    records = []
    for _, row in trials[trials["number"].isin(numbers)].iterrows():
        records.append({
            "number": int(row["number"]), "variant": row["variant"],
            "values": {name: float(row[c]) for name, c in zip(search.objective_names, columns)},
            "params": {c.removeprefix("params_"): row[c] for c in trials.columns if c.startswith("params_") and pd.notna(row[c])},
        })
    return records


def write_search_outputs(study, search: SearchConfig, root: Path) -> SearchSummary:
    """Write the four files into `root` and return what they hold."""
    trials = trials_frame(study.get_trials(deepcopy=False), search)
    numbers = pareto_numbers(study)
    pareto = trials[trials["number"].isin(numbers)] if len(trials) else trials
    importances, note = importances_frame(study, search)
    best = best_records(trials, numbers, search)
    files = StudyLayout(root)
    write_csv(trials, files.trials)
    write_csv(pareto, files.pareto)
    write_csv(importances, files.importances)
    states = trials["state"].value_counts().to_dict() if len(trials) else {}
    write_json(files.best, {"objectives": search.objective_names, "directions": search.directions,
                            "constraints": [c.label for c in search.constraints],
                            "best": best, "states": states, "importance_note": note})
    return SearchSummary(trials, pareto, importances, best, note)


def trials_table(summary: SearchSummary, title: str, where: object) -> Table:
    """Every trial, its parameters and values; the best (Pareto-optimal) ones in bold green."""
    frame = summary.trials
    table = Table(title=f"{title}: {len(frame)} trials ({where})")
    shown = [c for c in frame.columns if c not in ("variant", "error")]
    for col in shown:
        table.add_column(col.removeprefix("params_"))
    best = {b["number"] for b in summary.best}
    for _, row in frame.iterrows():
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row[shown]]
        table.add_row(*cells, style="bold green" if row["number"] in best else None)
    return table
