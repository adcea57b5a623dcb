"""Factorial analysis of a designed study: when the variants switch regularizers on and off in a
full 2^k design, read it as a design (main effects and interactions with intervals over seeds),
not as a regression sample in which an on/off indicator "correlates" with everything it causes.

Effects use the usual +-1 coding over the 2^k cells: effect(S) = 2 / 2^k * sum_cells
prod_{f in S} s_f * mean(cell), so a main effect is mean(on) - mean(off) and a two-way
interaction is half the difference between one factor's effect at the other's two levels.
Intervals: percentile bootstrap that resamples the seeds of every cell independently; p-values:
t on the pooled within-cell variance (df = runs - cells). With one seed per cell there is no
within-cell variance, so intervals and p-values are NaN (the note says so).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

from analysis.correlation import correlate
from analysis.metric_info import direction_of
from analysis.multiplicity import adjust

EFFECT_COLUMNS = ["response", "effect", "order", "estimate", "lo", "hi", "se", "df", "p", "p_holm", "p_bh",
                  "n_runs", "direction", "improves", "paper", "agrees_with_paper", "note"]


@dataclass(frozen=True)
class Design:
    """A full two-level factorial: `factors` (sorted) and each variant's 0/1 code over them."""

    factors: tuple[str, ...]
    codes: dict[str, tuple[int, ...]]

    @property
    def effects(self) -> list[tuple[str, ...]]:
        """Every non-empty subset of the factors, main effects first."""
        return [s for r in range(1, len(self.factors) + 1) for s in itertools.combinations(self.factors, r)]

    def signs(self, effect: tuple[str, ...]) -> dict[str, int]:
        """+1 / -1 contrast coefficient of each variant for `effect`."""
        idx = [self.factors.index(f) for f in effect]
        return {v: int(np.prod([1 if code[i] else -1 for i in idx])) for v, code in self.codes.items()}


def _switched_on(variants: Mapping[str, Iterable[str]], arm: Iterable[str]) -> dict[str, frozenset[str]]:
    """Each variant's set of factors switched on, less the `arm` (variants outside the design)."""
    outside = set(arm)
    return {v: frozenset(fs) for v, fs in variants.items() if v not in outside}


def _factors(on: Mapping[str, frozenset[str]]) -> tuple[str, ...]:
    return tuple(sorted(set().union(*on.values()))) if on else ()


def design_gap(variants: Mapping[str, Iterable[str]], arm: Iterable[str] = ()) -> str:
    """Why `variants` (name -> factors switched on) form no full two-level factorial, in one line for
    the study's log; "" when they do. The `arm` (e.g. unregularized baselines at other latent widths)
    is left out first: it answers another question and would repeat the all-off cell."""
    on = _switched_on(variants, arm)
    factors = _factors(on)
    if not factors:
        return "no on/off design: no variant switches a regularizer on, so effects.csv stays empty"
    cells: dict[frozenset[str], list[str]] = {}
    for v, fs in on.items():
        cells.setdefault(fs, []).append(v)
    repeated = [" = ".join(vs) for vs in cells.values() if len(vs) > 1]
    if repeated:
        return (f"no on/off design: variants {'; '.join(repeated)} switch on the same regularizers "
                f"(give each its own tokenizer or drop one), so effects.csv stays empty")
    if len(cells) != 2 ** len(factors):
        return (f"no on/off design: the variants cover {len(cells)} of the {2 ** len(factors)} on/off combinations "
                f"of {', '.join(factors)}, so effects.csv stays empty")
    return ""


def find_design(variants: Mapping[str, Iterable[str]], arm: Iterable[str] = ()) -> Design | None:
    """The full factorial formed by `variants` (name -> factors switched on) less the `arm`, or None when
    they do not form one (every on/off combination exactly once; `design_gap` says why not)."""
    arm = tuple(arm)
    if design_gap(variants, arm):
        return None
    on = _switched_on(variants, arm)
    factors = _factors(on)
    return Design(factors, {v: tuple(int(f in fs) for f in factors) for v, fs in on.items()})


def effect_name(effect: tuple[str, ...]) -> str:
    return ":".join(effect)


def _estimates(design: Design, cell_means: Mapping[str, np.ndarray]) -> dict[tuple[str, ...], np.ndarray]:
    """Effect estimates from per-variant means (arrays: one value per bootstrap replicate)."""
    scale = 2.0 / len(design.codes)
    out = {}
    for effect in design.effects:
        signs = design.signs(effect)
        out[effect] = scale * sum(signs[v] * np.asarray(cell_means[v], float) for v in design.codes)
    return out


def _cells(table: pd.DataFrame, response: str, variants: Iterable[str]) -> dict[str, np.ndarray]:
    return {v: table.loc[table["variant"] == v, response].dropna().to_numpy(float) for v in variants}


def factorial_effects(table: pd.DataFrame, design: Design, responses: list[str], *, n_boot: int = 2000,
                      confidence: float = 0.95, seed: int = 0, directions: Mapping[str, str] | None = None,
                      paper: Mapping[str, Mapping[str, float]] | None = None) -> pd.DataFrame:
    """One row per (response, effect): estimate, bootstrap interval over seeds, t-test p-value, Holm /
    BH adjusted p-values over the whole table, and -- where `paper` gives the paper's effect for that
    response -- `agrees_with_paper`: "yes" (interval excludes 0 on the paper's side), "no" (excludes 0
    on the other side) or "unclear" (the interval spans 0, or cannot be computed)."""
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(seed)
    alpha = (1 - confidence) / 2
    for response in responses:
        cells = _cells(table, response, design.codes)
        counts = {v: len(x) for v, x in cells.items()}
        if min(counts.values()) == 0:
            missing = ", ".join(v for v, n in counts.items() if n == 0)
            rows += [{"response": response, "effect": effect_name(e), "order": len(e),
                      "note": f"no value of {response!r} for variant(s) {missing}"} for e in design.effects]
            continue
        point = _estimates(design, {v: x.mean() for v, x in cells.items()})
        boot = _estimates(design, {v: x[rng.integers(0, len(x), (n_boot, len(x)))].mean(axis=1)
                                   for v, x in cells.items()})
        df = sum(n - 1 for n in counts.values())
        pooled = sum(((x - x.mean()) ** 2).sum() for x in cells.values()) / df if df else math.nan
        se = 2.0 / len(design.codes) * math.sqrt(pooled * sum(1 / n for n in counts.values())) if df else math.nan
        direction = direction_of(response, directions)
        for effect in design.effects:
            est = float(point[effect])
            lo, hi = (np.quantile(boot[effect], [alpha, 1 - alpha]) if df else (math.nan, math.nan))
            p = float(2 * stats.t.sf(abs(est) / se, df)) if df and se > 0 else math.nan
            paper_value = (paper or {}).get(response, {}).get(effect_name(effect), math.nan)
            rows.append({
                "response": response, "effect": effect_name(effect), "order": len(effect), "estimate": est,
                "lo": float(lo), "hi": float(hi), "se": se, "df": df, "p": p, "n_runs": int(sum(counts.values())),
                "direction": direction,
                "improves": pd.NA if direction is None or est == 0 else bool((est > 0) == (direction == "higher")),
                "paper": paper_value, "agrees_with_paper": _agreement(float(lo), float(hi), paper_value),
                "note": "" if df else "one run per variant: no within-variant variance, no interval",
            })
    out = pd.DataFrame(rows).reindex(columns=EFFECT_COLUMNS)
    out["p_holm"], out["p_bh"] = adjust(out["p"].to_numpy(float), "holm"), adjust(out["p"].to_numpy(float), "bh")
    out["note"] = out["note"].fillna("")
    out.attrs = {"factors": list(design.factors), "confidence": confidence, "n_boot": n_boot, "seed": seed}
    return out


def _agreement(lo: float, hi: float, paper_value: float) -> str:
    if not math.isfinite(paper_value):
        return ""
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0 <= hi or paper_value == 0:
        return "unclear"
    return "yes" if (lo > 0) == (paper_value > 0) else "no"


def paper_effects(table: pd.DataFrame, design: Design, responses: list[str]) -> dict[str, dict[str, float]]:
    """{response: {effect: estimate}} of a one-row-per-variant table (the paper's published ablation)."""
    out = {}
    for response in responses:
        means = {v: float(table.loc[table["variant"] == v, response].mean()) for v in design.codes}
        out[response] = {effect_name(e): float(x) for e, x in _estimates(design, means).items()}
    return out


def stratified_correlations(table: pd.DataFrame, design: Design, target: str, metrics: list[str], *,
                            unit: str | None = None, **kw: Any) -> pd.DataFrame:
    """`correlate` within each level of each factor (e.g. among the MCR-off variants, then the MCR-on
    ones), so a factor that moves both metric and target cannot make the correlation by itself.
    Units default to runs (several seeds per variant give a stratum more than 2^(k-1) points).
    Holm / BH adjusted p-values are over the whole stratified table."""
    parts = []
    for i, factor in enumerate(design.factors):
        for level, name in ((0, "off"), (1, "on")):
            keep = [v for v, code in design.codes.items() if code[i] == level]
            sub = table[table["variant"].isin(keep)]
            if sub.empty:
                continue
            corr = correlate(sub, target, metrics, unit=unit, **kw)
            corr.insert(0, "stratum", f"{factor}={name}")
            parts.append(corr)
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True)
    for col in [c for c in out.columns if c.endswith("_p") and not c.endswith(("_p_holm", "_p_bh"))]:
        out[f"{col}_holm"], out[f"{col}_bh"] = adjust(out[col].to_numpy(float), "holm"), adjust(out[col].to_numpy(float), "bh")
    return out
