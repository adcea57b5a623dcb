"""Contrasts of cell means from one least-squares model: cells, seed blocks and a covariate.

A designed study's runs share structure that a t-test on cell means ignores: runs with the same
seed share an initialisation (a block), and a score such as FD moves with reconstruction (a
covariate, PSNR). The model y = cell + block + slope * (covariate - mean) + e estimates every
cell at the same covariate value and with block effects removed; an effect is a contrast of the
cell coefficients. Its slope is the pooled within-cell one (classical ANCOVA), so it is fitted on
seed-to-seed variation and a covariate constant within cells adjusts nothing (it is then dropped,
with a note).

Two variances per contrast, both valid with 3 seeds per cell: pooled (residual mean square, df =
runs - parameters) and Welch-type (each cell's own residual variance, Satterthwaite df over each
cell's share of the residual df). `contrast` reports the wider of the two intervals, so neither
equal variances nor a pretest for them is assumed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Fit:
    """A least-squares fit: each run's linear weights onto the coefficients, residuals and cells."""

    cells: tuple[str, ...]  # the cell of every run
    names: tuple[str, ...]  # cell names in coefficient order (the first len(names) coefficients)
    pinv: np.ndarray  # [parameters, runs]: coefficients = pinv @ y
    coef: np.ndarray
    residuals: np.ndarray
    leverage: np.ndarray
    df: int  # residual degrees of freedom
    terms: tuple[str, ...]  # what the model holds beside the cells ("seed", "psnr")
    note: str = ""


def _dummies(labels: Sequence, drop_first: bool) -> np.ndarray:
    levels = list(dict.fromkeys(labels))[int(drop_first):]
    return np.array([[float(x == lv) for lv in levels] for x in labels]).reshape(len(labels), len(levels))


def _add_if_identified(x: np.ndarray, extra: np.ndarray) -> bool:
    """Whether `extra` columns raise the rank of `x` by their own number (the model can estimate them)."""
    if extra.shape[1] == 0:
        return False
    return np.linalg.matrix_rank(np.hstack([x, extra])) == np.linalg.matrix_rank(x) + extra.shape[1]


def fit(y: np.ndarray, cells: Sequence[str], *, blocks: Sequence | None = None, covariate: np.ndarray | None = None,
        covariate_name: str = "covariate", block_name: str = "seed") -> Fit:
    """Least squares of y on cell indicators, block dummies (first block dropped) and the centred
    covariate; a block or covariate term the data cannot identify is left out, with a note."""
    y = np.asarray(y, float)
    x = _dummies(cells, drop_first=False)
    terms, notes = [], []
    if blocks is not None:
        b = _dummies(blocks, drop_first=True)
        if _add_if_identified(x, b):
            x, terms = np.hstack([x, b]), [*terms, block_name]
        elif b.shape[1]:
            notes.append(f"{block_name} blocks not identified: not blocked")
    if covariate is not None:
        c = (np.asarray(covariate, float) - np.mean(covariate))[:, None]
        if _add_if_identified(x, c):
            x, terms = np.hstack([x, c]), [*terms, covariate_name]
        else:
            notes.append(f"{covariate_name} does not vary within cells: not adjusted for it")
    pinv = np.linalg.pinv(x)
    coef = pinv @ y
    residuals = y - x @ coef
    leverage = np.einsum("ij,ji->i", x, pinv)
    return Fit(tuple(cells), tuple(dict.fromkeys(cells)), pinv, coef, residuals, leverage,
               len(y) - np.linalg.matrix_rank(x), tuple(terms), "; ".join(notes))


def _pooled(fit: Fit, w: np.ndarray) -> tuple[float, float]:
    sigma2 = float(fit.residuals @ fit.residuals) / fit.df
    return math.sqrt(sigma2 * float(w @ w)), float(fit.df)


def _welch(fit: Fit, w: np.ndarray) -> tuple[float, float]:
    """Cell-wise variances (residual sum of squares over the cell's share of the residual df,
    sum of 1 - leverage) and the Satterthwaite df; NaN when a cell has no residual df."""
    cells = np.asarray(fit.cells)
    parts, dfs = [], []
    for name in fit.names:
        inside = cells == name
        df_cell = float((1 - fit.leverage[inside]).sum())
        if df_cell <= 1e-9:
            return math.nan, math.nan
        variance = float((fit.residuals[inside] ** 2).sum()) / df_cell
        parts.append(float((w[inside] ** 2).sum()) * variance)
        dfs.append(df_cell)
    total = sum(parts)
    if total <= 0:
        return 0.0, float(fit.df)
    return math.sqrt(total), total ** 2 / sum(p ** 2 / d for p, d in zip(parts, dfs))


def contrast(fit: Fit, weights: Mapping[str, float], confidence: float = 0.95) -> dict[str, float | str]:
    """sum_cells weight * cell coefficient, with se, df, two-sided p and interval: the wider of the
    pooled and the Welch-type interval (`method` says which). NaN without residual df."""
    c = np.zeros(len(fit.coef))
    for i, name in enumerate(fit.names):
        c[i] = weights.get(name, 0.0)
    estimate = float(c @ fit.coef)
    nan = {"estimate": estimate, "se": math.nan, "df": math.nan, "p": math.nan, "lo": math.nan, "hi": math.nan,
           "method": ""}
    if fit.df < 1:
        return nan
    w = c @ fit.pinv  # the estimate as a weighted sum of the runs
    q = (1 + confidence) / 2
    options = [(se, df, method) for (se, df), method in ((_pooled(fit, w), "pooled t"), (_welch(fit, w), "Welch-type t"))
               if math.isfinite(se) and math.isfinite(df) and df > 0]
    se, df, method = max(options, key=lambda o: o[0] * stats.t.ppf(q, o[1]))
    half = se * float(stats.t.ppf(q, df))
    p = float(2 * stats.t.sf(abs(estimate) / se, df)) if se > 0 else (0.0 if estimate else 1.0)
    return {"estimate": estimate, "se": se, "df": df, "p": p, "lo": estimate - half, "hi": estimate + half,
            "method": method}
