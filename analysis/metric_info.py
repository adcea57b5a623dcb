"""What a results column is: which way is better, its label, whether it is a headline metric.

Read from the declarations (analysis.metric), with the built-in panel metrics, the FD / KD
columns (analysis.fidelity_names) and the paper's columns registered first. Imports no torch.
"""
from __future__ import annotations

import fnmatch
from typing import Iterable, Mapping

import analysis.convergence  # noqa: F401  (declares the speed-up)
import analysis.paper  # noqa: F401  (declares the published columns)
import analysis.panel_metrics  # noqa: F401  (declares the built-in metrics)
from analysis.fidelity_names import FidelityColumns, fidelity_column, fidelity_label
from analysis.metric import METRICS, Direction, Metric


def panel_names() -> list[str]:
    """The metrics the panel computes (those with a function), sorted."""
    return [n for n in METRICS.names() if METRICS.get(n).fn is not None]


def headline_names() -> list[str]:
    """The panel's headline metrics in declaration order (PSNR, SSC, LPC, GSQ for the built-ins)."""
    return [n for n in METRICS.order() if METRICS.get(n).headline]


def headline_columns(columns: Iterable[str], generation: str | None) -> list[str]:
    """What a researcher compares first, in MLflow's runs table and the report: the generation score
    (gFD, `generation` is its column), the learnability score (lFD), the headline panel metrics and
    rFD; those among `columns`."""
    cols = list(columns)
    named = FidelityColumns.from_keys(generation, "") if generation else None
    wanted = [generation, named and named.lfd, *headline_names(), named and named.rfd]
    return [c for c in wanted if c and c in cols]


def find(column: str) -> tuple[Metric | None, str]:
    """(declaration, extra suffix) for a results column: the metric itself ("lpc", ""), an FD / KD
    column, or a metric's extra ("lpc_rho0.1" -> lpc, "rho0.1"); (None, "") when nothing declares it."""
    if column in METRICS:
        return METRICS.get(column), ""
    if (found := fidelity_column(column)) is not None:
        meaning, direction = found
        return Metric(column, direction=direction, label=fidelity_label(column), meaning=meaning), ""
    owner = max((n for n in METRICS.names() if column.startswith(f"{n}_")), key=len, default=None)
    return (METRICS.get(owner), column[len(owner) + 1:]) if owner else (None, "")


def direction_of(column: str, overrides: Mapping[str, str] | None = None) -> Direction | None:
    """Which way `column` is better: the caller's statement, else its declaration. An MLflow key
    ("eval/LPC") is read by its last part."""
    key = column.rsplit("/", 1)[-1]
    for name in (column, key, key.lower()):
        if overrides and name in overrides:
            return overrides[name]  # type: ignore[return-value]
    metric, suffix = find(key.lower())
    if metric is None:
        return None
    if not suffix:
        return metric.direction
    return next((d for pattern, d in metric.extras.items() if fnmatch.fnmatch(suffix, pattern)), None)


def label_of(column: str) -> str:
    """A column's label in figures: its declared title, a declared metric's extra as "LPC rho0.1",
    and any other column (FD / KD) under its results.csv name, one name everywhere."""
    metric, suffix = find(column)
    if metric is None or not (metric.label or metric.unit):
        return column
    return f"{metric.label or metric.name} {suffix}" if suffix else metric.title
