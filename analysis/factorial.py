"""Factorial analysis of a designed study: when the variants switch regularizers on and off in a
full 2^k design, read it as a design (main effects and interactions with intervals over seeds),
not as a regression sample in which an on/off indicator "correlates" with everything it causes.

Effects use the usual +-1 coding over the 2^k cells: effect(S) = 2 / 2^k * sum_cells
prod_{f in S} s_f * cell(f), so a main effect is mean(on) - mean(off) and a two-way interaction is
half the difference between one factor's effect at the other's two levels. The cells come from one
least-squares model (`analysis.ancova`): blocked on seed (runs with one seed share an
initialisation), adjusted for a covariate where asked (PSNR for generation scores: the question at
equal reconstruction), FD / KD on log scale (an effect is then a log ratio). Intervals: t, the
wider of pooled and Welch-type. Holm adjusts only a declared primary family of at most
`MAX_PRIMARY` tests, and only those carry a verdict against the paper; every other row is
exploratory. With one seed per cell there is no residual variance: no interval (the note says so).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from analysis.ancova import contrast, fit
from analysis.correlation import correlate
from analysis.fidelity_names import is_distance
from analysis.metric_info import direction_of
from analysis.multiplicity import adjust
from analysis.primary import MAX_PRIMARY, parse_test  # noqa: F401  (re-exported)

EFFECT_COLUMNS = ["response", "effect", "order", "estimate", "lo", "hi", "se", "df", "p", "p_holm", "p_bh",
                  "n_runs", "scale", "adjusted_for", "blocked_on", "method", "primary", "direction", "improves",
                  "paper", "agrees_with_paper", "note"]
SEED_COLUMN = "seed"


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


def default_primary(design: Design, own_metric: Mapping[str, str], generation: str) -> list[tuple[str, str]]:
    """Each factor on its own metric, then each on the generation score; at most MAX_PRIMARY tests."""
    tests = [(own_metric[f], f) for f in design.factors if f in own_metric] + [(generation, f) for f in design.factors]
    return tests[:MAX_PRIMARY]


def _response_values(rows: pd.DataFrame, response: str) -> tuple[np.ndarray, str, str]:
    """(values, scale, note): FD / KD on log scale (a ratio), raw when a value is not positive."""
    y = rows[response].to_numpy(float)
    if not is_distance(response):
        return y, "raw", ""
    if (y > 0).all():
        return np.log(y), "log", ""
    return y, "raw", "non-positive values: raw scale"


def _effect_rows(table: pd.DataFrame, design: Design, response: str, covariate: str | None, block: str | None,
                 confidence: float) -> list[dict[str, Any]]:
    """Every effect of one response from one model: cells, seed blocks and the covariate."""
    needed = [response, *([covariate] if covariate else [])]
    rows = table[table["variant"].isin(list(design.codes))].dropna(subset=needed)
    missing = [v for v in design.codes if v not in set(rows["variant"])]
    if missing:
        return [{"response": response, "effect": effect_name(e), "order": len(e),
                 "note": f"no value of {response!r} for variant(s) {', '.join(missing)}"} for e in design.effects]
    y, scale, note = _response_values(rows, response)
    blocks = rows[block].tolist() if block and block in rows else None
    model = fit(y, rows["variant"].tolist(), blocks=blocks, block_name=block or "",
                covariate=rows[covariate].to_numpy(float) if covariate else None, covariate_name=covariate or "")
    notes = [n for n in (note, model.note) if n]
    if model.df < 1:
        notes.append("one run per variant: no within-variant variance, no interval")
    scale_factor = 2.0 / len(design.codes)
    out = []
    for effect in design.effects:
        weights = {v: scale_factor * s for v, s in design.signs(effect).items()}
        out.append({"response": response, "effect": effect_name(effect), "order": len(effect),
                    **contrast(model, weights, confidence), "n_runs": len(rows), "scale": scale,
                    "adjusted_for": covariate if covariate in model.terms else "",
                    "blocked_on": block if block in model.terms else "", "note": "; ".join(notes)})
    return out


def factorial_effects(table: pd.DataFrame, design: Design, responses: list[str], *, confidence: float = 0.95,
                      directions: Mapping[str, str] | None = None,
                      paper: Mapping[str, Mapping[str, float]] | None = None,
                      covariates: Mapping[str, str] | None = None, block: str | None = SEED_COLUMN,
                      primary: Iterable[tuple[str, str]] = ()) -> pd.DataFrame:
    """One row per (response, effect): estimate, t interval, p, and for the `primary` (response, effect)
    tests (at most MAX_PRIMARY) the Holm-adjusted p and -- where `paper` gives the paper's effect --
    `agrees_with_paper`: "yes" / "no" (Holm p below 1 - confidence, on the paper's / the other side)
    or "unclear". Every other row is exploratory: its interval, BH over the whole table, no verdict.
    `covariates`: response -> the column it is adjusted for; `block`: the column whose levels share
    an initialisation (seed)."""
    primary = set(primary)
    if len(primary) > MAX_PRIMARY:
        raise ValueError(f"primary family of {len(primary)} tests {sorted(primary)}: at most {MAX_PRIMARY}")
    rows: list[dict[str, Any]] = []
    for response in responses:
        covariate = (covariates or {}).get(response)
        covariate = covariate if covariate in table and covariate != response else None
        rows += _effect_rows(table, design, response, covariate, block, confidence)
    out = pd.DataFrame(rows).reindex(columns=EFFECT_COLUMNS)
    out["primary"] = [(r, e) in primary for r, e in zip(out["response"], out["effect"])]
    out["direction"] = [direction_of(r, directions) for r in out["response"]]
    out["improves"] = [pd.NA if d is None or not np.isfinite(e) or e == 0 else bool((e > 0) == (d == "higher"))
                       for d, e in zip(out["direction"], out["estimate"].astype(float))]
    out["paper"] = [(paper or {}).get(r, {}).get(e, math.nan) for r, e in zip(out["response"], out["effect"])]
    p = out["p"].to_numpy(float)
    out["p_holm"] = adjust(np.where(out["primary"], p, np.nan), "holm")
    out["p_bh"] = adjust(p, "bh")
    alpha = 1 - confidence
    out["agrees_with_paper"] = [_agreement(est, ph, pv, alpha) if prim else ""
                                for est, ph, pv, prim in zip(out["estimate"].astype(float), out["p_holm"],
                                                             out["paper"].astype(float), out["primary"])]
    out["note"] = out["note"].fillna("")
    out.attrs = {"factors": list(design.factors), "confidence": confidence, "primary": sorted(primary)}
    return out


def _agreement(estimate: float, p_holm: float, paper_value: float, alpha: float) -> str:
    """The verdict of one primary test against the paper's sign: only from its Holm-adjusted p."""
    if not math.isfinite(paper_value):
        return ""
    if not math.isfinite(p_holm) or p_holm >= alpha or paper_value == 0 or estimate == 0:
        return "unclear"
    return "yes" if (estimate > 0) == (paper_value > 0) else "no"


def paper_effects(table: pd.DataFrame, design: Design, responses: list[str]) -> dict[str, dict[str, float]]:
    """{response: {effect: estimate}} of a one-row-per-variant table (the paper's published ablation)."""
    out = {}
    for response in responses:
        means = {v: float(table.loc[table["variant"] == v, response].mean()) for v in design.codes}
        out[response] = {effect_name(e): float(x) for e, x in _estimates(design, means).items()}
    return out


def stratified_correlations(table: pd.DataFrame, design: Design, target: str, metrics: list[str], *,
                            unit: str | None = "variant", **kw: Any) -> pd.DataFrame:
    """`correlate` within each level of each factor (e.g. among the MCR-off variants, then the MCR-on
    ones), so a factor that moves both metric and target cannot make the correlation by itself.
    Units are the variants (seeds averaged first): seeds of one variant are not independent units.
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
