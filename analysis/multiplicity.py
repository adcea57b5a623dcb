"""Multiple-testing corrections for a family of p-values (every metric of one correlations table,
every effect of one effects table): Holm (family-wise error) and Benjamini-Hochberg (false
discovery rate). NaN p-values (degenerate rows) stay NaN and do not enlarge the family."""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.stats import false_discovery_control


def holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values: sorted p_(i) * (m - i), running maximum, capped at 1."""
    p = np.asarray(p, float)
    m = len(p)
    order = np.argsort(p)
    adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (scipy's false_discovery_control)."""
    p = np.asarray(p, float)
    return false_discovery_control(p, method="bh") if len(p) else p


ADJUSTMENTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"holm": holm, "bh": bh}


def adjust(p: np.ndarray, method: str) -> np.ndarray:
    """Adjusted p-values by `method` ("holm" or "bh") over the finite entries; NaN stays NaN."""
    if method not in ADJUSTMENTS:
        raise ValueError(f"unknown p-value adjustment {method!r}; known: {', '.join(ADJUSTMENTS)}")
    p = np.asarray(p, float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    out[ok] = ADJUSTMENTS[method](p[ok])
    return out
