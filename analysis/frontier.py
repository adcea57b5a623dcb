"""The reconstruction-generation frontier: how well a variant generates compared with an
unregularized baseline of equal reconstruction.

A regularizer that costs reconstruction can lower gFD by blurring alone. The paper answers this by
design (its ablation rows share one rFID; its pilot widens the bottleneck), VA-VAE by drawing the
frontier over latent widths. Here the frontier is a straight line of log gFD against PSNR fitted
over every run of the unregularized baselines (all widths, all seeds); a run's distance is its log
gFD minus the line at its own PSNR (negative: generates better than a baseline of equal
reconstruction). A variant's mean distance gets a t interval whose variance adds the line's own
prediction variance to the variant's seed variance (Welch-Satterthwaite df), so it stays valid at
3 seeds; a baseline's runs are in the fit, so its interval is the exact one of a mean residual.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pandas as pd
from scipy import stats

RECONSTRUCTION = "psnr"  # the panel metric the frontier holds fixed
FRONTIER_COLUMNS = ["variant", "baseline", "n_runs", "psnr", "gfd", "distance", "lo", "hi", "se", "df",
                    "extrapolated", "note"]


class FrontierError(ValueError):
    """The baselines cannot draw a frontier; the message says why, in one line."""


@dataclass(frozen=True)
class Frontier:
    """log gFD = intercept + slope * PSNR over the baseline runs, with what its prediction variance needs."""

    intercept: float
    slope: float
    residual_var: float  # s^2 of the fit, on df = n - 2
    n: int
    x_mean: float
    sxx: float
    x_range: tuple[float, float]
    baselines: tuple[str, ...]

    @property
    def df(self) -> int:
        return self.n - 2

    def predict(self, x: np.ndarray | float) -> np.ndarray:
        return self.intercept + self.slope * np.asarray(x, float)

    def leverage(self, x: float) -> float:
        """Var(line at x) / s^2: 1/n + (x - mean)^2 / Sxx."""
        return 1.0 / self.n + (x - self.x_mean) ** 2 / self.sxx

    def as_dict(self) -> dict[str, object]:
        """What study.json records of the fit."""
        return {"intercept": self.intercept, "slope_per_db": self.slope, "residual_sd": math.sqrt(self.residual_var),
                "n_runs": self.n, "df": self.df, "psnr_range": list(self.x_range), "baselines": list(self.baselines)}


def _finite(table: pd.DataFrame, y: str, x: str) -> pd.DataFrame:
    """Runs with a finite PSNR and a positive gFD (the log needs it)."""
    if x not in table or y not in table:
        return table.iloc[0:0]
    xs, ys = pd.to_numeric(table[x], errors="coerce"), pd.to_numeric(table[y], errors="coerce")
    return table[np.isfinite(xs) & np.isfinite(ys) & (ys > 0)]


def fit_frontier(table: pd.DataFrame, baselines: Iterable[str], y: str, x: str = RECONSTRUCTION) -> Frontier:
    """The frontier over the runs of the `baselines` (unregularized variants, one per latent width);
    raises FrontierError when fewer than 2 of them, or fewer than 3 runs, have values."""
    names = tuple(baselines)
    runs = _finite(table[table["variant"].isin(names)], y, x)
    levels = sorted(set(runs["variant"]))
    if len(levels) < 2:
        raise FrontierError(f"no reconstruction-generation frontier: {len(levels)} unregularized baseline width(s) with {x} and {y} values "
                            f"({', '.join(levels) or 'none'}); a frontier needs at least 2")
    xs, ys = runs[x].to_numpy(float), np.log(runs[y].to_numpy(float))
    sxx = float(((xs - xs.mean()) ** 2).sum())
    if len(xs) < 3 or sxx <= 0:
        raise FrontierError(f"no reconstruction-generation frontier: the baseline runs give {len(xs)} point(s) over {sxx:.3g} dB^2 of {x}: no line to fit")
    fit = stats.linregress(xs, ys)
    residuals = ys - (fit.intercept + fit.slope * xs)
    return Frontier(float(fit.intercept), float(fit.slope), float((residuals ** 2).sum() / (len(xs) - 2)), len(xs),
                    float(xs.mean()), sxx, (float(xs.min()), float(xs.max())), tuple(levels))


def run_distances(table: pd.DataFrame, frontier: Frontier, y: str, x: str = RECONSTRUCTION) -> pd.Series:
    """Each run's log gFD minus the frontier at its own PSNR (NaN where either is missing)."""
    xs, ys = pd.to_numeric(table[x], errors="coerce"), pd.to_numeric(table[y], errors="coerce")
    return pd.Series(np.log(ys.where(ys > 0)) - frontier.predict(xs), index=table.index, dtype=float)


def _interval(frontier: Frontier, distances: np.ndarray, x_mean: float, in_fit: bool) -> tuple[float, float, str]:
    """(variance, df, note) of a variant's mean distance. In the fit: the mean residual, s^2 (1/n_v - leverage)
    on the fit's df. Outside it: the seeds' variance / n_v plus the line's s^2 * leverage, Welch df; one
    seed borrows the fit's residual variance for its own."""
    n, line = len(distances), frontier.residual_var * frontier.leverage(x_mean)
    if in_fit:
        return frontier.residual_var * max(1.0 / n - frontier.leverage(x_mean), 0.0), float(frontier.df), ""
    if n < 2:
        return frontier.residual_var / n + line, float(frontier.df), "one run: its scatter taken as the baselines'"
    own = float(np.var(distances, ddof=1)) / n
    parts = [(own, n - 1), (line, frontier.df)]
    denominator = sum(v ** 2 / d for v, d in parts if v > 0)
    return own + line, (own + line) ** 2 / denominator if denominator else math.inf, ""


def variant_distances(table: pd.DataFrame, frontier: Frontier, y: str, x: str = RECONSTRUCTION, *,
                      confidence: float = 0.95) -> pd.DataFrame:
    """One row per variant: mean PSNR and gFD, mean distance from the frontier with its t interval, and
    whether its PSNR lies outside the baselines' range (the frontier is then extrapolated)."""
    rows = []
    runs = _finite(table, y, x).assign(_distance=lambda t: run_distances(t, frontier, y, x))
    for variant, part in runs.groupby("variant", sort=False):
        d, x_mean = part["_distance"].to_numpy(float), float(part[x].mean())
        var, df, note = _interval(frontier, d, x_mean, variant in frontier.baselines)
        se = math.sqrt(var)
        half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se if df > 0 else math.nan
        outside = not frontier.x_range[0] <= x_mean <= frontier.x_range[1]
        rows.append({"variant": variant, "baseline": variant in frontier.baselines, "n_runs": len(d), "psnr": x_mean,
                     "gfd": float(part[y].mean()), "distance": float(d.mean()), "lo": float(d.mean()) - half,
                     "hi": float(d.mean()) + half, "se": se, "df": df, "extrapolated": outside,
                     "note": "; ".join(filter(None, [note, "PSNR outside the baselines' range: the frontier is "
                                                          "extrapolated" if outside else ""]))})
    out = pd.DataFrame(rows).reindex(columns=FRONTIER_COLUMNS)
    out.attrs = {"confidence": confidence, **frontier.as_dict()}
    return out
