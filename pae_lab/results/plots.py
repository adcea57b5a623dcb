"""Figures of a study: plain functions from DataFrames to matplotlib Figures.

The report notebook calls these, and so can anyone holding the same CSVs: no function here knows
about the study directory, MLflow or the notebook. Figures are built with `matplotlib.figure.Figure`
(not pyplot), so a library caller never leaks open figures and no GUI backend is needed.
Variants keep one colour across every figure (`variant_palette`), so a reader can follow one
variant from the scatter plots to the convergence and training curves.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Callable, Mapping, ParamSpec, Sequence

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.metric_info import label_of as metric_label  # the declared label; FD / KD columns keep their name
from pae_lab.fsutil import atomic_write

P = ParamSpec("P")

CONTRAST_COLOR = "#c0392b"


def save_figure(fig: Figure, path: Path | str, *, dpi: int = 110) -> Path:
    """Write `fig` as an image (format from the suffix) atomically; returns the path."""
    path = Path(path)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix[1:] or "png"))


def variant_palette(variants: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """One colour per variant, in the given order (tab10 up to 10 variants, husl beyond)."""
    colors = sns.color_palette("tab10" if len(variants) <= 10 else "husl", len(variants))
    return dict(zip(variants, colors))


def _styled(fn: Callable[P, Figure]) -> Callable[P, Figure]:
    """Build the figure under the seaborn whitegrid style without touching global rcParams."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Figure:
        with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9):
            return fn(*args, **kwargs)

    return wrapper


def _grid(n: int, ncols: int, panel: tuple[float, float]) -> tuple[Figure, list]:
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _variant_stats(results: pd.DataFrame, columns: Sequence[str], unit: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    grouped = results.groupby(unit, sort=False)[list(columns)]
    return grouped.mean(), grouped.std()


def _ci_text(row: pd.Series, prefix: str, confidence: float) -> str:
    rho, lo, hi = (row.get(f"{prefix}{s}", np.nan) for s in ("", "_lo", "_hi"))
    name = prefix.capitalize()
    if not np.isfinite(rho):
        return f"{name} n/a"
    if np.isfinite(lo) and np.isfinite(hi):
        return f"{name} {rho:.2f}, {confidence:.0%} CI [{lo:.2f}, {hi:.2f}]"
    return f"{name} {rho:.2f} (no CI)"


def _plain_spearman(x: pd.Series, y: pd.Series) -> str:
    """Spearman of variant means without an interval; n/a below 3 points or for a constant column."""
    ok = x.notna() & y.notna()
    if ok.sum() < 3 or x[ok].nunique() < 2 or y[ok].nunique() < 2:
        return f"Spearman n/a (n={int(ok.sum())})"
    return f"Spearman {x[ok].corr(y[ok], method='spearman'):.2f} (no CI, n={int(ok.sum())})"


@_styled
def metric_vs_target(
    results: pd.DataFrame,
    metrics: Sequence[str],
    target: str,
    correlations: pd.DataFrame | None = None,
    *,
    unit: str = "variant",
    confidence: float = 0.95,
    palette: Mapping[str, tuple] | None = None,
) -> Figure:
    """One scatter per metric: variant means (bars: std over seeds) against the target.

    The title carries the rank correlation and its CI from `correlations` (one row per metric);
    without a row there, a plain Spearman of the variant means is shown and marked "no CI".
    """
    means, stds = _variant_stats(results, [*metrics, target], unit)
    palette = palette or variant_palette(list(means.index))
    rows = correlations.set_index("metric") if correlations is not None and len(correlations) else None
    fig, axes = _grid(len(metrics), 4, (4.0, 3.4))
    for ax, metric in zip(axes, metrics):
        for variant in means.index:
            ax.errorbar(
                means.at[variant, metric], means.at[variant, target],
                xerr=stds.at[variant, metric], yerr=stds.at[variant, target],
                fmt="o", ms=6, capsize=2, color=palette[variant], label=variant,
            )
        if rows is not None and metric in rows.index:
            subtitle = _ci_text(rows.loc[metric], "spearman", confidence)
        else:
            subtitle = _plain_spearman(means[metric], means[target])
        ax.set_title(f"{metric_label(metric)}\n{subtitle}", fontsize=10)
        ax.set_xlabel(metric_label(metric))
        ax.set_ylabel(metric_label(target))
    _variant_legend(fig, list(means.index), palette)
    fig.suptitle(f"Metrics against {metric_label(target)} (one point per {unit}, mean ± std over seeds)")
    return fig


@_styled
def correlation_forest(
    correlations: pd.DataFrame,
    target: str,
    *,
    contrast: str | None = None,
    confidence: float = 0.95,
) -> Figure:
    """Spearman and Kendall rank correlation of every metric with the target, with CIs.

    The `contrast` row (the rFID-like metric) is drawn in red and labelled, so the reader sees at a
    glance whether the latent-manifold metrics beat reconstruction quality as predictors.
    """
    table = correlations.sort_values("spearman", na_position="first").reset_index(drop=True)
    fig = Figure(figsize=(7.5, 1.2 + 0.42 * len(table)), layout="constrained")
    ax = fig.subplots()
    for kind, offset, marker in (("spearman", 0.12, "o"), ("kendall", -0.12, "D")):
        if kind not in table:
            continue
        est = table[kind].to_numpy(float)
        lo = table.get(f"{kind}_lo", table[kind]).to_numpy(float)
        hi = table.get(f"{kind}_hi", table[kind]).to_numpy(float)
        err = np.clip(np.vstack([est - lo, hi - est]), 0, None)  # a point outside its CI must not crash the plot
        colors = [CONTRAST_COLOR if m == contrast else ("#1f4e79" if kind == "spearman" else "#7f8c8d") for m in table["metric"]]
        for i, (e, c) in enumerate(zip(est, colors)):
            ax.errorbar(e, i + offset, xerr=err[:, i : i + 1], fmt=marker, color=c, ms=6, capsize=3,
                        label=kind.capitalize() if i == 0 else None)
    labels = [f"{metric_label(m)}  (contrast)" if m == contrast else metric_label(m) for m in table["metric"]]
    ax.set_yticks(range(len(table)), labels)
    for tick, metric in zip(ax.get_yticklabels(), table["metric"]):
        if metric == contrast:
            tick.set_color(CONTRAST_COLOR)
            tick.set_fontweight("bold")
    if contrast in set(table["metric"]):
        row = int(table.index[table["metric"] == contrast][0])
        ax.axhspan(row - 0.45, row + 0.45, color=CONTRAST_COLOR, alpha=0.08)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-0.6, len(table) - 0.4)
    ax.set_xlabel(f"rank correlation with {metric_label(target)} ({confidence:.0%} CI)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"Which metric tracks {metric_label(target)}?")
    return fig


@_styled
def effects_forest(effects: pd.DataFrame, responses: Sequence[str] | None = None) -> Figure:
    """Main effect of each regularizer on each response (one panel per response), with its interval
    over seeds: green where the interval excludes zero on the side that improves the response, red
    on the side that worsens it, grey where it spans zero."""
    main = effects[effects["order"] == 1]
    responses = [r for r in (responses or list(dict.fromkeys(main["response"]))) if r in set(main["response"])]
    fig, axes = _grid(len(responses), 3, (3.6, 0.7 + 0.45 * max(1, main["effect"].nunique())))
    for ax, response in zip(axes, responses):
        rows = main[main["response"] == response].reset_index(drop=True)
        est, lo, hi = (rows[c].to_numpy(float) for c in ("estimate", "lo", "hi"))
        for i, row in rows.iterrows():
            clear = np.isfinite(lo[i]) and (lo[i] > 0 or hi[i] < 0)
            color = "#7f8c8d" if not clear or pd.isna(row["improves"]) else ("#2e7d32" if row["improves"] else "#c0392b")
            err = np.clip([[est[i] - lo[i]], [hi[i] - est[i]]], 0, None) if np.isfinite(lo[i]) else None
            ax.errorbar(est[i], i, xerr=err, fmt="o", color=color, ms=6, capsize=3)
        ax.set_yticks(range(len(rows)), rows["effect"])
        ax.axvline(0, color="black", lw=0.8)
        log = "scale" in rows and (rows["scale"] == "log").any()
        ax.set_title(metric_label(response) + (" (log ratio)" if log else ""), fontsize=9)
    fig.suptitle("Main effect of switching each regularizer on (interval over seeds)")
    return fig


@_styled
def metric_heatmap(results: pd.DataFrame, metrics: Sequence[str], *, unit: str = "variant") -> Figure:
    """Spearman correlation between metrics over the variant means (seeds averaged first)."""
    means, _ = _variant_stats(results, metrics, unit)
    corr = means.corr(method="spearman")
    labels = [metric_label(m) for m in corr.columns]
    size = 1.6 + 0.55 * len(metrics)
    fig = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.subplots()
    sns.heatmap(corr, ax=ax, vmin=-1, vmax=1, cmap="vlag", annot=True, fmt=".2f", square=True,
                annot_kws={"fontsize": 8}, xticklabels=labels, yticklabels=labels,
                cbar_kws={"label": "Spearman", "shrink": 0.8})
    ax.set_title(f"Metric–metric rank correlation (n = {len(means)} {unit}s)")
    return fig


@_styled
def controls_heatmap(controls: pd.DataFrame) -> Figure:
    """Share of the controlled runs in which each control made each score worse (1: always, as a
    faithful score must; 0: never, the score rewards what the control did). Blank: not required."""
    judged = controls[controls["worse"].notna() & (controls["control"] != "actual")].copy()
    judged["control"] = judged["control"] + judged["param"].map(lambda p: f" {p}" if str(p) not in ("", "nan") else "")
    judged["worse"] = judged["worse"].astype(str).str.lower().isin(["true", "1", "1.0"])
    share = judged.pivot_table(index="column", columns="control", values="worse", aggfunc="mean", sort=False)
    fig = Figure(figsize=(2.2 + 0.9 * share.shape[1], 1.2 + 0.4 * share.shape[0]), layout="constrained")
    ax = fig.subplots()
    sns.heatmap(share, ax=ax, vmin=0, vmax=1, cmap="RdYlGn", annot=True, fmt=".0%", annot_kws={"fontsize": 8},
                cbar_kws={"label": "runs where the control made it worse", "shrink": 0.8})
    ax.set_xlabel("control")
    ax.set_ylabel("")
    ax.set_title("Controls: does each score get worse when it must?")
    return fig


def _variant_legend(fig: Figure, variants: Sequence[str], palette: Mapping[str, tuple]) -> None:
    """One legend for the whole figure, in study order, whatever each panel happens to hold."""
    handles = [Line2D([], [], color=palette[v], marker="o", ms=4, label=v) for v in variants]
    fig.legend(handles=handles, loc="outside right upper", title="variant", fontsize=8)


def _log_y(ax, values: pd.Series) -> None:
    """Log scale when positive values span a decade or more (loss terms often do), ticks at 1-2-5
    as plain numbers; a narrower range stays linear, where a log axis would show one tick."""
    if not (values > 0).all() or values.max() / values.min() < 10:
        return
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def _mean_band(ax, data: pd.DataFrame, x: str, y: str, color, label: str) -> None:
    stats = data.groupby(x)[y].agg(["mean", "std"]).sort_index()
    ax.plot(stats.index, stats["mean"], marker="o", ms=3, color=color, label=label)
    ax.fill_between(stats.index, stats["mean"] - stats["std"].fillna(0), stats["mean"] + stats["std"].fillna(0),
                    color=color, alpha=0.15, lw=0)


@_styled
def convergence_curves(
    convergence: pd.DataFrame,
    target: str,
    *,
    kid: str | None = None,
    palette: Mapping[str, tuple] | None = None,
) -> Figure:
    """Generation quality against generator training steps, one line per variant (band: std over seeds)."""
    columns = [c for c in (target, kid) if c and c in convergence]
    variants = list(dict.fromkeys(convergence["variant"]))
    palette = palette or variant_palette(variants)
    fig, axes = _grid(len(columns), 2, (5.5, 3.8))
    for ax, column in zip(axes, columns):
        _variant_lines(ax, convergence, "step", column, palette, "generator steps", "during generator training")
    _variant_legend(fig, variants, palette)
    return fig


def _variant_lines(ax, frame: pd.DataFrame, x: str, column: str, palette: Mapping[str, tuple], xlabel: str, when: str) -> None:
    """One mean line per variant (band: std over seeds) of a lower-is-better score against `x`."""
    for variant in dict.fromkeys(frame["variant"]):
        _mean_band(ax, frame[frame["variant"] == variant], x, column, palette[variant], variant)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{metric_label(column)} (lower is better)")
    ax.set_title(f"{metric_label(column)} {when}")


@_styled
def guidance_curves(guidance: pd.DataFrame, column: str, *, palette: Mapping[str, tuple] | None = None) -> Figure:
    """The generation score against the classifier-free guidance scale on the final checkpoint, one line
    per variant (band: std over seeds): where each tokenizer's best scale lies, and how much guidance buys."""
    variants = list(dict.fromkeys(guidance["variant"]))
    palette = palette or variant_palette(variants)
    fig, (ax,) = _grid(1, 1, (6.0, 4.0))
    _variant_lines(ax, guidance, "cfg_scale", column, palette, "guidance scale (1 = none)", "at each guidance scale (the sweep's N)")
    _variant_legend(fig, variants, palette)
    return fig


@_styled
def speedup_bars(speedups: pd.DataFrame, *, palette: Mapping[str, tuple] | None = None) -> Figure:
    """Speed-up of each variant over the baseline; variants that never reach it say so."""
    variants = list(speedups["variant"])
    palette = palette or variant_palette(variants)
    fig = Figure(figsize=(6.5, 1.0 + 0.45 * len(variants)), layout="constrained")
    ax = fig.subplots()
    values = speedups["speedup"].to_numpy(float)
    ax.barh(range(len(variants)), np.nan_to_num(values), color=[palette[v] for v in variants])
    if {"speedup_lo", "speedup_hi"} <= set(speedups):  # the 95% interval over seeds
        lo, hi = speedups["speedup_lo"].to_numpy(float), speedups["speedup_hi"].to_numpy(float)
        ax.errorbar(np.nan_to_num(values), range(len(variants)), xerr=np.nan_to_num([values - lo, hi - values]),
                    fmt="none", ecolor="black", lw=0.8, capsize=2)
    censored = speedups["censored"].fillna("").astype(str) if "censored" in speedups else [""] * len(variants)
    for i, (value, words) in enumerate(zip(values, censored)):
        text = f"{value:.2f}x" if np.isfinite(value) else (words or "never reaches the baseline")
        ax.text(np.nan_to_num(value) + 0.02, i, text, va="center", fontsize=8)
    ax.axvline(1.0, color="black", lw=0.8, ls="--")
    ax.set_yticks(range(len(variants)), variants)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up vs baseline [x]: baseline steps / steps to its final score (95% CI over seeds)")
    ax.set_title("Generator training speed-up")
    return fig


@_styled
def training_curves(
    curves: pd.DataFrame,
    *,
    prefix: str = "loss/",
    palette: Mapping[str, tuple] | None = None,
    ncols: int = 3,
) -> Figure:
    """One panel per logged key under `prefix` (e.g. every loss term), one line per variant.

    `curves` is long: columns variant, seed, step, key, value. Seeds are averaged (band: std);
    panels whose positive values span a decade or more use a log scale.
    """
    data = curves[curves["key"].str.startswith(prefix)]
    keys = sorted(data["key"].unique(), key=lambda k: (k != f"{prefix}total", k))
    present = set(curves["variant"])
    variants = [v for v in palette if v in present] if palette else list(dict.fromkeys(curves["variant"]))
    palette = palette or variant_palette(variants)
    fig, axes = _grid(max(1, len(keys)), ncols, (4.2, 3.2))
    for ax, key in zip(axes, keys):
        rows = data[data["key"] == key]
        for variant in variants:
            sub = rows[rows["variant"] == variant]
            if len(sub):
                _mean_band(ax, sub, "step", "value", palette[variant], variant)
        _log_y(ax, rows["value"])
        ax.set_title(key)
        ax.set_xlabel("tokenizer steps")
        ax.set_ylabel(key.removeprefix(prefix))
    if not keys:
        axes[0].text(0.5, 0.5, f"no '{prefix}*' keys logged", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].set_axis_off()
    else:
        _variant_legend(fig, variants, palette)
    fig.suptitle(f"Tokenizer training: {prefix.rstrip('/')} terms (mean ± std over seeds)")
    return fig


@_styled
def image_grid(
    images: Mapping[str, Mapping[str, Path]],
    kinds: Sequence[str] = ("reconstructions", "samples", "latent_pca"),
    *,
    panel: float = 3.4,
) -> Figure:
    """Rows = variants, columns = picture kinds; a missing picture leaves a labelled blank.

    Row height follows the pictures' aspect ratio (a study's pictures share one size), so wide
    grids of reconstructions are not lost in white space.
    """
    variants = list(images)
    first = next((Path(p) for row in images.values() for p in row.values() if Path(p).exists()), None)
    aspect = 1.0
    if first is not None:
        height, width = mpimg.imread(first).shape[:2]
        aspect = height / width
    fig = Figure(figsize=(panel * len(kinds), (panel * aspect + 0.35) * max(1, len(variants))), layout="constrained")
    axes = fig.subplots(max(1, len(variants)), len(kinds), squeeze=False)
    for r, variant in enumerate(variants):
        for c, kind in enumerate(kinds):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            path = images[variant].get(kind)
            if path is not None and Path(path).exists():
                ax.imshow(mpimg.imread(path), interpolation="nearest")
            else:
                ax.text(0.5, 0.5, "not available", ha="center", va="center", transform=ax.transAxes, color="grey")
            if r == 0:
                ax.set_title(kind.replace("_", " "))
            if c == 0:
                ax.set_ylabel(variant, fontsize=11)
    return fig


def objective_columns(trials: pd.DataFrame) -> list[str]:
    """The objective columns of an Optuna trials table: `value`, or `values_0`, `values_1`, ..."""
    multi = sorted((c for c in trials if c.startswith("values_")), key=lambda c: int(c.split("_")[1]))
    return multi or [c for c in ("value",) if c in trials]


@_styled
def trial_history(
    trials: pd.DataFrame,
    *,
    directions: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
) -> Figure:
    """Objective per trial (completed trials) with the best-so-far line, one panel per objective."""
    columns = objective_columns(trials)
    directions = list(directions or ["minimize"] * len(columns))
    names = list(names or ([metric_label(c) for c in columns] if len(columns) > 1 else ["objective"]))
    complete = trials[trials["state"].astype(str).str.upper() == "COMPLETE"].sort_values("number")
    n_other = len(trials) - len(complete)
    fig, axes = _grid(max(1, len(columns)), 2, (5.5, 3.6))
    for ax, column, direction, name in zip(axes, columns, directions, names):
        values = complete[column].astype(float)
        best = values.cummin() if direction == "minimize" else values.cummax()
        ax.scatter(complete["number"], values, s=18, color="#1f4e79", label="trial")
        ax.step(complete["number"], best, where="post", color=CONTRAST_COLOR, label="best so far")
        ax.set_xlabel("trial number")
        ax.set_ylabel(f"{name} ({direction})")
        ax.set_title(f"{name}: {len(complete)} complete, {n_other} failed/pruned/other")
        ax.legend(fontsize=8)
    return fig


@_styled
def pareto_front(
    trials: pd.DataFrame,
    pareto: pd.DataFrame,
    *,
    names: Sequence[str] | None = None,
) -> Figure:
    """The first two objectives of every completed trial, with the Pareto-optimal trials highlighted."""
    x, y = objective_columns(trials)[:2]
    names = list(names or [metric_label(x), metric_label(y)])
    complete = trials[trials["state"].astype(str).str.upper() == "COMPLETE"]
    front = pareto.sort_values(x)
    fig = Figure(figsize=(6.0, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.scatter(complete[x], complete[y], s=18, color="#95a5a6", label="trial")
    ax.plot(front[x], front[y], "o-", color=CONTRAST_COLOR, ms=6, label="Pareto front")
    for _, row in front.iterrows():
        ax.annotate(f"#{int(row['number'])}", (row[x], row[y]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title(f"Pareto front ({len(front)} of {len(complete)} completed trials)")
    ax.legend(fontsize=8)
    return fig


@_styled
def param_importances(importances: pd.DataFrame) -> Figure:
    """Hyper-parameter importances (as Optuna reports them: fractions summing to about 1)."""
    table = importances.sort_values("importance")
    fig = Figure(figsize=(6.0, 1.0 + 0.4 * len(table)), layout="constrained")
    ax = fig.subplots()
    ax.barh(table["param"], table["importance"], color="#1f4e79")
    ax.set_xlabel("importance (fraction of objective variance explained)")
    ax.set_title("Hyper-parameter importances")
    return fig
