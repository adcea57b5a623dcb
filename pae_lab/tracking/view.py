"""What a researcher sees in MLflow: the experiment's view, each run's params and summary metrics.

tracking.py moves records into the store; this module decides which records there are:
- the experiment opens on its runs (MLflow 3 shows GenAI traces unless told the experiment kind);
- a child run carries its training hyper-parameters and one `weight.<regularizer>` per regularizer
  of the study, 0 where the variant leaves it off, so comparison plots place the baseline right;
- a child's headline metrics are logged once, under their results.csv names (the columns);
- the parent's metrics are study-level results (best and baseline generation score, correlations).
"""
from __future__ import annotations

from typing import Any, Iterable

import pandas as pd

from analysis.metric_info import headline_columns
from pae_lab.tracking.store import flatten, log_metrics

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"  # MLflow's "model training" view: the runs table


def setup_experiment(client, experiment_id: str, description: str = "") -> None:
    """Tag the experiment so the UI opens on its runs; the study's description is its note."""
    tags = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
    if description:
        tags["mlflow.note.content"] = description
    current = client.get_experiment(experiment_id).tags
    for key, value in tags.items():
        if current.get(key) != value:
            client.set_experiment_tag(experiment_id, key, value)


def study_regularizers(runs: Iterable[Any]) -> list[str]:
    """Every regularizer any variant of the study uses, in first-seen order."""
    return list(dict.fromkeys(name for spec in runs for name in spec.regularizers))


def run_params(spec: Any, training: dict[str, Any], regularizers: list[str]) -> dict[str, Any]:
    """A child run's params: variant, seed, the training hyper-parameters that can change a result
    (`training` as the graph's identity_dump gives it), each regularizer's weight once."""
    params: dict[str, Any] = {"variant": spec.variant, "seed": spec.seed}
    params.update({f"training.{k}": v for k, v in flatten(training).items()})
    for name in regularizers:
        params[f"weight.{name}"] = float((spec.regularizers.get(name) or {}).get("weight", 0.0))
    for name, settings in spec.regularizers.items():
        params.update({f"{name}.{k}": v for k, v in flatten(settings).items() if k != "weight"})
    return params


def log_changed(client, run_id: str, metrics: dict[str, float]) -> None:
    """Log only values the run does not already hold: a rerun adds no duplicate points."""
    held = client.get_run(run_id).data.metrics
    fresh = {k: float(v) for k, v in metrics.items() if v == v and held.get(k) != float(v)}
    if fresh:
        log_metrics(client, run_id, fresh, 0)


def child_summary(row: pd.Series, target: str, curves: Iterable[str] = ()) -> dict[str, float]:
    """The headline values of one results.csv row, minus those the job already logged as curves."""
    skip = set(curves)
    return {m: row[m] for m in headline_columns(row.index, target)
            if m not in skip and pd.api.types.is_number(row[m]) and row[m] == row[m]}


def study_metrics(results: pd.DataFrame, correlations: pd.DataFrame, target: str,
                  baseline: str) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics, tags) of the parent run: what the study found, not a copy of its children."""
    metrics: dict[str, float] = {"runs_done": float((results["status"] == "done").sum()),
                                 "runs_failed": float((results["status"] == "failed").sum())}
    tags: dict[str, str] = {}
    done = results[results["status"] == "done"]
    if target in done and done[target].notna().any():
        means = done.groupby("variant")[target].mean().dropna()
        best = means.idxmin()  # FD/FID: lower is better
        tags["best_variant"] = str(best)
        metrics[f"best.{target}"] = float(means[best])
        if baseline in means:
            metrics[f"baseline.{target}"] = float(means[baseline])
    if "speedup" in done and done["speedup"].notna().any():
        metrics["best.speedup"] = float(done.groupby("variant")["speedup"].mean().max())
    if len(correlations) and {"metric", "spearman"} <= set(correlations.columns):
        for metric, rho in zip(correlations["metric"], correlations["spearman"]):
            if rho == rho:
                metrics[f"spearman.{metric}"] = float(rho)
    return metrics, tags


VIEW_KEY = "pae-lab"  # `pae-lab ui` opens ...?viewStateShareKey=pae-lab: the view below
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"


def share_view(client, experiment_id: str, metrics: list[str], regularizers: list[str]) -> None:
    """A saved runs-table view: MLflow 3 shows no metric columns by default, this one shows the headline.

    Children nest under the parent because the view sorts by start time (MLflow nests only then, or
    unsorted). MLflow 3.17 drops `runsExpanded` from a shared view and auto-expands only parents of
    `mlflow.runType=evaluation` runs, which ours are not: the parent row opens with one click."""
    import json

    columns = ["attributes.`Run Name`", "attributes.`Created`", "attributes.`Duration`",
               *(f"metrics.`{m}`" for m in metrics), *(f"params.`weight.{r}`" for r in regularizers)]
    state = json.dumps({"selectedColumns": columns,
                        "orderByKey": "attributes.start_time", "orderByAsc": False})
    if client.get_experiment(experiment_id).tags.get(VIEW_TAG) != state:
        client.set_experiment_tag(experiment_id, VIEW_TAG, state)
