"""Spearman and Kendall tau-b vectorised over leading axes, for fast bootstrap and permutation tests.

scipy's `spearmanr`/`kendalltau` take one pair at a time; `bootstrap` and `permutation_test`
call a vectorised statistic once per batch of thousands of resamples instead. Degenerate
resamples (a constant side) give NaN, as scipy does.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def spearman(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman's rho along `axis`: Pearson correlation of average ranks."""
    rx = rankdata(np.moveaxis(x, axis, -1), axis=-1)
    ry = rankdata(np.moveaxis(y, axis, -1), axis=-1)
    rx = rx - rx.mean(-1, keepdims=True)
    ry = ry - ry.mean(-1, keepdims=True)
    den = np.sqrt((rx * rx).sum(-1) * (ry * ry).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(-1) / np.where(den > 0, den, 1.0), np.nan)


def partial_spearman(x: np.ndarray, y: np.ndarray, z: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman's rho of x and y with z held fixed: Pearson correlation of the ranks of x and y after
    each is regressed linearly on the ranks of z (partial rank correlation). NaN where z's ranks or a
    residual are constant."""
    rx, ry, rz = (rankdata(np.moveaxis(v, axis, -1), axis=-1) for v in (x, y, z))
    rz = rz - rz.mean(-1, keepdims=True)
    vz = (rz * rz).sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        ex = rx - rx.mean(-1, keepdims=True) - rz * (rx * rz).sum(-1, keepdims=True) / vz
        ey = ry - ry.mean(-1, keepdims=True) - rz * (ry * rz).sum(-1, keepdims=True) / vz
        den = np.sqrt((ex * ex).sum(-1) * (ey * ey).sum(-1))
        return np.where(den > 1e-12, (ex * ey).sum(-1) / np.where(den > 1e-12, den, 1.0), np.nan)


def kendall(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Kendall's tau-b along `axis` (tie-corrected, scipy's default variant)."""
    x, y = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
    n = x.shape[-1]
    iu = np.triu_indices(n, k=1)
    sx = np.sign(x[..., :, None] - x[..., None, :])[..., iu[0], iu[1]]
    sy = np.sign(y[..., :, None] - y[..., None, :])[..., iu[0], iu[1]]
    den = np.sqrt(np.count_nonzero(sx, axis=-1).astype(float) * np.count_nonzero(sy, axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (sx * sy).sum(-1) / np.where(den > 0, den, 1.0), np.nan)


def loo_rank_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    """Leave-one-unit-out pairwise ranking accuracy of a metric as a predictor of the target.

    For each held-out unit i: learn the direction of the metric-target relation from the other
    n - 1 units only (the sign of their Spearman correlation; this is the monotone map), then
    check every pair (i, j) with y_i != y_j: correct when that direction applied to
    x_i - x_j orders i and j the way their targets do. Ties in x, or no learnable direction,
    score 1/2. Returns the mean over all such pairs: 1 = every unseen unit ranked correctly
    against all others, 0.5 = chance, below 0.5 = the direction learned without a unit is
    wrong for it (an unstable metric).

    Ranking against the other units' *predicted* positions rather than their raw targets keeps
    a useless metric at 0.5: a regression that predicts the mean would otherwise look right for
    every pair straddling the mean.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    scores: list[float] = []
    for i in range(len(x)):
        others = np.arange(len(x)) != i
        rho = spearman(x[others], y[others])
        direction = np.sign(rho) if np.isfinite(rho) else 0.0
        true_side = np.sign(y[i] - y[others])
        pred_side = direction * np.sign(x[i] - x[others])
        counted = true_side != 0
        scores.extend(np.where(pred_side[counted] == 0, 0.5, (pred_side[counted] == true_side[counted]).astype(float)))
    return float(np.mean(scores)) if scores else float("nan")
