"""`MetricResult`: a metric value that carries the protocol needed to reproduce it.

The field's recurring complaint is numbers nobody can reproduce (sample count, split, scales,
seed). Every metric in `analysis/` therefore returns the value together with its protocol.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


# the column suffixes of a metric's per-run spreads (summarize's, and the standard errors over images
# SSC and GSQ add): columns that describe a metric, never metrics to report or correlate themselves
SPREAD_SUFFIXES = ("_std", "_se", "_p95", "_median", "_max")


@dataclass(frozen=True)
class MetricResult:
    """One metric value, how it was measured (`protocol`), its spread (`extra`) and, where a metric keeps
    them, the per-image scores behind a value (`items`: aligned image by image across feature sets scored
    on the same images, for paired comparisons; in no table)."""

    value: float
    protocol: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)
    items: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def flat(self, name: str, sep: str = "_") -> dict[str, float]:
        """`{name: value, name_std: ..., ...}`, the shape of a results-table row or `log_metrics`.

        Extras already named after the metric keep their name ("lpc_rho0.1", not "lpc_lpc_rho0.1").
        """
        prefix = f"{name}{sep}"
        return {name: self.value, **{k if k.startswith(prefix) else prefix + k: v for k, v in self.extra.items()}}

    def flat_items(self, name: str, sep: str = "_") -> dict[str, np.ndarray]:
        """`items` under the names `flat` gives their values ("ami" of "ssc" -> "ssc_ami")."""
        prefix = f"{name}{sep}"
        return {k if k.startswith(prefix) else prefix + k: v for k, v in self.items.items()}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (value, protocol, extra)."""
        return {"value": self.value, "protocol": dict(self.protocol), "extra": dict(self.extra)}


def summarize(values: Any, protocol: dict[str, Any], **extra: float) -> MetricResult:
    """Mean of per-item scores as the value; std, median and p95 as extras.

    Non-finite items (e.g. the PSNR of identical images) are kept: the mean is then inf, which is
    the honest answer, and the spread is computed over the finite items only.
    """
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        return MetricResult(math.nan, protocol, dict(extra))
    finite = arr[np.isfinite(arr)]
    spread = {
        "std": float(finite.std()) if finite.size else math.nan,
        "median": float(np.median(arr)),
        "p95": float(np.percentile(arr, 95, method="higher")),  # no inf - inf interpolation
    }
    return MetricResult(float(arr.mean()), protocol, {**spread, **extra})
