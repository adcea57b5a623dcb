"""The report's tables and sentences: numbers for people, ★ for the best, ✓ / ✗ from the tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.metric_info import headline_columns
from pae_lab.results.plots import metric_label

if TYPE_CHECKING:
    from pae_lab.results.study_data import StudyData


def _fmt(value: float) -> str:
    """Numbers for people: 8,208 not 8.21e+03; three significant digits below 1000."""
    if not np.isfinite(value):
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def main_metrics(study: "StudyData") -> list[str]:
    """The main results table's columns: the headline metrics, the target (a frontier distance is no
    headline metric), KD and speed-up; metrics only."""
    found = headline_columns(study.metrics, study.generation)
    return found + [c for c in (study.target, study.kid, "speedup") if c and c in study.metrics and c not in found]


def variants_table(
    results: pd.DataFrame,
    metrics: Sequence[str],
    directions: Mapping[str, str],
    *,
    unit: str = "variant",
) -> pd.DataFrame:
    """Mean ± std over seeds per variant; the best variant of each column is marked with ★.

    Column headers carry ↑ (higher is better) or ↓ (lower); a column with no known direction gets
    no mark, since "best" means nothing there.
    """
    grouped = results.groupby(unit, sort=False)[list(metrics)]
    means, stds = grouped.mean(), grouped.std()
    table = pd.DataFrame(index=means.index)
    table["seeds"] = results.groupby(unit, sort=False).size()
    for metric in metrics:
        direction = directions.get(metric)
        column = means[metric]
        best = column.max() if direction == "higher" else column.min() if direction == "lower" else np.nan
        cells = []
        for variant in means.index:
            mean, std = column[variant], stds.at[variant, metric]
            cell = _fmt(mean) if not np.isfinite(std) else f"{_fmt(mean)} ± {_fmt(std)}"
            cells.append(cell + (" ★" if np.isfinite(mean) and mean == best else ""))
        arrow = {"higher": " ↑", "lower": " ↓"}.get(direction or "", "")
        table[f"{metric}{arrow}"] = cells
    return table


def _is_primary(row: pd.Series) -> bool:
    """Whether an effects.csv row is in the declared primary family (an older file without the column: none is)."""
    return str(row.get("primary", "")).lower() in ("true", "1")


def _effect_text(row: pd.Series) -> str:
    """ "-0.3 [-0.5, -0.1]", or on log scale the ratio "×0.74 [0.61, 0.9]" (an FD / KD effect)."""
    log = str(row.get("scale", "")) == "log"
    show = (lambda v: f"{np.exp(v):.3g}") if log else _fmt
    text = ("×" if log else "") + (show(float(row["estimate"])) if log else f"{float(row['estimate']):+.3g}")
    if np.isfinite(row.get("lo", np.nan)):
        text += f" [{show(float(row['lo']))}, {show(float(row['hi']))}]"
    return text


def _verdict(row: pd.Series) -> str:
    """What the report may claim from one effect: a verdict only for a primary, Holm-adjusted test."""
    if not _is_primary(row):
        return "exploratory"
    agrees = str(row.get("agrees_with_paper", ""))
    holm = f"Holm p = {float(row['p_holm']):.2g}" if np.isfinite(row.get("p_holm", np.nan)) else "no Holm p"
    words = {"yes": "agrees with the paper", "no": "opposite to the paper", "unclear": "no conclusion"}
    return f"primary: {words.get(agrees, 'not in the paper')}, {holm}"


def effects_table(effects: pd.DataFrame, max_order: int = 2) -> pd.DataFrame:
    """effects.csv as response x effect cells "estimate [lo, hi]" (FD / KD as ratios ×); ✓ / ✗ only on
    primary tests whose Holm-adjusted p agrees / disagrees with the paper's sign; unmarked cells are
    exploratory. Main effects and two-way interactions by default."""
    rows = effects[effects["order"] <= max_order]
    mark = {"yes": " ✓", "no": " ✗"}

    def cell(r: pd.Series) -> str:
        if not np.isfinite(r["estimate"]):
            return "-"
        return _effect_text(r) + (mark.get(str(r.get("agrees_with_paper")), "") if _is_primary(r) else "")

    table = rows.assign(cell=rows.apply(cell, axis=1)).pivot(index="response", columns="effect", values="cell")
    order = list(dict.fromkeys(rows["effect"]))
    return table.reindex(index=list(dict.fromkeys(rows["response"])), columns=order)


def effects_summary(effects: pd.DataFrame | None, target: str | None, own_metric: Mapping[str, str]) -> str:
    """One sentence per regularizer, read from effects.csv: its main effect on its own metric and on the
    generation score, each with its interval and what may be claimed: a verdict against the paper only
    for a primary test after Holm, "exploratory" for the rest."""
    if effects is None or effects.empty:
        return ""
    main = effects[effects["order"] == 1].set_index(["effect", "response"])
    lines = []
    for factor in dict.fromkeys(main.index.get_level_values("effect")):
        parts = []
        for response in (own_metric.get(factor), target):
            if response is None or (factor, response) not in main.index:
                continue
            r = main.loc[(factor, response)]
            text = f"{metric_label(response)} {_effect_text(r)}"
            if not np.isfinite(r.get("lo", np.nan)):
                text += " (one seed per variant: no interval)"
            else:
                adjusted = f", at equal {r['adjusted_for']}" if str(r.get("adjusted_for", "") or "") not in ("", "nan") else ""
                text += f" ({_verdict(r)}{adjusted})"
            parts.append(text)
        if parts:
            lines.append(f"Switching **{factor}** on changes " + "; ".join(parts) + ".")
    return "\n\n".join(lines)


def controls_summary(study: "StudyData") -> str:
    """The report's first sentence: which generation score the study reads and whether it passed the
    controls that a score rewarding information loss would fail (columns.csv's verdicts)."""
    declared, target = study.info.get("declared_target"), study.info.get("target")
    declared_passed, declared_failed = study.verdict(declared)
    target_passed, target_failed = study.verdict(target)
    if declared_passed is False and target != declared:
        return (f"**The declared generation score `{declared}` fails its controls** ({declared_failed}): it rewards "
                f"information loss, so the study reads `{target}` instead, which passed.")
    if target_passed is False:
        return (f"**The generation score `{target}` fails its controls** ({target_failed}), and the study kept it: nothing "
                f"this report says about `{target}` is evidence for or against the paper.")
    why = study.info.get("target_controls")
    return f"The study reads generation quality as `{target}`: {why}." if why else ""


def controls_table(column_notes: pd.DataFrame) -> pd.DataFrame:
    """The verdicts in columns.csv: each generation score, passed / failed / not measured, and what it failed."""
    rows = column_notes[column_notes["passes_controls"].notna() | (column_notes["failed_controls"].astype(str) != "nan")]
    rows = rows[rows["column"] != "kind"]
    verdict = rows["passes_controls"].map(lambda p: "not measured" if p != p else ("passed" if str(p) == "True" else "FAILED"))
    return pd.DataFrame({"controls": verdict.values, "failed": rows["failed_controls"].fillna("").values,
                         "target": rows["correlation_target"].values}, index=rows["column"].values)


def _spearman_text(row: pd.Series, confidence: float) -> str:
    """ "Spearman 0.71, 95% CI [0.12, 0.95], n=8" from one correlations.csv row."""
    rho, lo, hi, n = (float(row.get(k, np.nan)) for k in ("spearman", "spearman_lo", "spearman_hi", "n"))
    n_text = f", n={int(n)}" if np.isfinite(n) else ""
    if np.isfinite(lo) and np.isfinite(hi):
        return f"Spearman {rho:.2f}, {confidence:.0%} CI [{lo:.2f}, {hi:.2f}]{n_text}"
    return f"Spearman {rho:.2f}, no CI{n_text}"


def summarize(
    results: pd.DataFrame,
    correlations: pd.DataFrame | None,
    target: str | None,
    *,
    contrast: str | None = None,
    directions: Mapping[str, str] | None = None,
    candidates: Sequence[str] | None = None,
    confidence: float = 0.95,
    unit: str = "variant",
) -> str:
    """A few sentences (Markdown) on what the study found, each number with the interval that qualifies it.

    Which metric has the strongest rank correlation with the target (and whether its CI excludes 0),
    how the rFID-like `contrast` fares, and which variant has the best target value, with its seed
    spread and whether the runner-up's spread overlaps it. `candidates` limits which metrics may be
    named the best predictor (default: every row of `correlations`). The target is taken as
    lower-is-better unless `directions` says otherwise.
    """
    directions = dict(directions or {})
    target_label = f"generation score `{target}`" if target else "generation score"
    n_runs, n_units = len(results), results[unit].nunique()
    lines = [f"The study holds {n_runs} runs over {n_units} {unit}s."]
    if "status" in results:
        bad = results["status"].astype(str).str.lower()
        bad = bad[~bad.isin(["done", "finished", "complete", "completed", "ok", "success"])]
        if len(bad):
            counts = ", ".join(f"{k}: {v}" for k, v in bad.value_counts().items())
            lines.append(f"{len(bad)} of {n_runs} runs did not finish ({counts}); their metrics are missing.")

    if n_units < 3:
        lines.append(f"With {n_units} {unit}(s) the study is too small for rank correlations (at least 3 are needed).")
    elif correlations is None or not len(correlations):
        lines.append(f"No rank correlations with {target_label} are available (correlations.csv is missing or empty).")
    else:
        usable = correlations[correlations["spearman"].notna() & (correlations["metric"] != target)]
        if candidates is not None:
            usable = usable[usable["metric"].isin(list(candidates))]
        if not len(usable):
            lines.append(f"No metric has a defined rank correlation with {target_label}.")
        else:
            best = usable.loc[usable["spearman"].abs().idxmax()]
            sentence = (f"**{metric_label(best['metric'])}** has the strongest rank correlation with {target_label} "
                        f"({_spearman_text(best, confidence)})")
            lo, hi = float(best.get("spearman_lo", np.nan)), float(best.get("spearman_hi", np.nan))
            if np.isfinite(lo) and np.isfinite(hi) and lo <= 0 <= hi:
                sentence += "; its interval includes 0, so the data do not rule out no association"
            if "agrees" in best and str(best["agrees"]).lower() in ("false", "0"):
                sentence += (f"; the sign is opposite to what its direction of better "
                             f"({best.get('direction', 'unknown')}) predicts")
            loo = float(best.get("loo_rank_acc", np.nan))
            if np.isfinite(loo):
                sentence += f"; leave-one-variant-out rank accuracy {loo:.2f}"
            lines.append(sentence + ".")
            if contrast and contrast != best["metric"]:
                rows = correlations[correlations["metric"] == contrast]
                if len(rows) and np.isfinite(rows["spearman"].iloc[0]):
                    row = rows.iloc[0]
                    lines.append(f"For contrast, {metric_label(contrast)} (reconstruction): "
                                 f"{_spearman_text(row, confidence)}.")
            elif contrast == best["metric"]:
                lines.append(f"Note that the strongest predictor is the reconstruction metric {metric_label(contrast)} itself.")

    if target is None or target not in results or results[target].isna().all():
        lines.append(f"No {target_label} values are available, so no variant can be named the winner.")
    else:
        stats = results.groupby(unit, sort=False)[target].agg(["mean", "std", "count"]).dropna(subset=["mean"])
        ascending = directions.get(target, "lower") != "higher"
        stats = stats.sort_values("mean", ascending=ascending)
        winner, first = stats.index[0], stats.iloc[0]
        spread = f" ± {_fmt(first['std'])}" if np.isfinite(first["std"]) else ""
        over = (f"mean ± std over {int(first['count'])} seeds" if spread else "one seed, so no spread")
        sentence = f"Variant **{winner}** has the best {target_label}: {_fmt(first['mean'])}{spread} ({over})"
        if len(stats) > 1:
            runner, second = stats.index[1], stats.iloc[1]
            sentence += f"; runner-up **{runner}** {_fmt(second['mean'])}"
            if np.isfinite(first["std"]) and np.isfinite(second["std"]):
                sentence += f" ± {_fmt(second['std'])}"
                overlap = abs(first["mean"] - second["mean"]) <= first["std"] + second["std"]
                sentence += ("; their seed spreads overlap, so the order of the two is not settled"
                             if overlap else "; their seed spreads do not overlap")
        lines.append(sentence + ".")
    return "\n\n".join(lines)


def best_trials(trials: pd.DataFrame, directions: Sequence[str], *, k: int = 5) -> pd.DataFrame:
    """The k best completed trials of a single-objective study (by `value`, in its direction)."""
    complete = trials[trials["state"].astype(str).str.upper() == "COMPLETE"]
    column = "value" if "value" in complete else "values_0"
    return complete.sort_values(column, ascending=directions[0] == "minimize").head(k)

