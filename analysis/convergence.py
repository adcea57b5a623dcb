"""How fast each variant's generator gets there: steps to reach the baseline's final score.

Read per seed, paired with the baseline run of the same seed (runs with one seed share an
initialisation), on log-spaced checkpoints and interpolated in log(step). A seed that never gets
there is censored ("> last step"), one already there at its first checkpoint too ("< first step"):
neither is a number, so a variant with a censored seed gets no speed-up, only the words. The
interval is a t interval over seeds on log(steps), back-transformed: valid at 3 seeds.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from analysis.metric import declare_column

if TYPE_CHECKING:
    import pandas as pd

# Derived from the target's curves, not a score of its own: no direction, so the report marks no best.
declare_column("speedup", label="speed-up", unit="x",
               meaning="baseline's generator steps / this variant's steps to reach the baseline's final score "
                       "(geometric mean over seeds)")

ABOVE, BELOW = "> last step", "< first step"  # the two ways a reading is censored
SPEEDUP_COLUMNS = ["variant", "speedup", "steps_to_baseline", "speedup_lo", "speedup_hi", "seeds", "censored"]


def steps_to_reach(steps: np.ndarray, values: np.ndarray, level: float) -> tuple[float, str]:
    """(first step at which the curve reaches `level`, lower is better, interpolated in log(step);
    censoring): (nan, ABOVE) when it never does, (first step, BELOW) when it already has."""
    for i, (s, v) in enumerate(zip(steps, values)):
        if v <= level:
            if i == 0:
                return float(s), BELOW
            s0, v0 = steps[i - 1], values[i - 1]
            frac = (v0 - level) / (v0 - v) if v0 != v else 1.0
            return float(np.exp(np.log(s0) + frac * (np.log(s) - np.log(s0)))), ""
    return float("nan"), ABOVE


def log_t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """(geometric mean, lo, hi) of positive `values`: a t interval on their logs (nan below 2 values)."""
    from scipy import stats

    logs = np.log(np.asarray(values, float))
    mean = float(logs.mean())
    if len(logs) < 2:
        return float(np.exp(mean)), float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, len(logs) - 1) * logs.std(ddof=1) / np.sqrt(len(logs)))
    return float(np.exp(mean)), float(np.exp(mean - half)), float(np.exp(mean + half))


def censoring(flags: list[str]) -> str:
    """"> last step (2 of 3 seeds)"; "" when every seed was read."""
    return "; ".join(f"{flag} ({flags.count(flag)} of {len(flags)} seeds)" for flag in (ABOVE, BELOW) if flag in flags)


def baseline_levels(curves: pd.DataFrame, target: str, baseline: str) -> tuple[dict, float, dict]:
    """({seed: the baseline's final score at that seed}, its mean over seeds, {seed: the step at which
    the baseline's own curve first reaches that score}: the same first-crossing rule as the variants',
    so a variant identical to the baseline reads 1, not the last step over a noisy early crossing)."""
    base = curves[curves["variant"] == baseline]
    last = float(base["step"].max())
    finals = base[base["step"] == last].groupby("seed")[target].mean()
    own = {}
    for seed, run in base.groupby("seed"):
        run = run.sort_values("step")
        own[seed] = steps_to_reach(run["step"].to_numpy(float), run[target].to_numpy(float), finals[seed])[0]
    return finals.to_dict(), float(finals.mean()), own


def variant_speedup(curve: pd.DataFrame, target: str, levels: dict, mean_level: float, base_steps: dict) -> dict:
    """One speedups.csv row from a variant's per-seed curves: each seed against the baseline's same seed,
    speed-up = the baseline's steps to its final score / the variant's steps to it, per seed; geometric
    mean and a t interval over the seeds' log ratios."""
    needed, ratios, flags = [], [], []
    fallback = float(np.exp(np.mean(np.log(list(base_steps.values()))))) if base_steps else float("nan")
    for seed, run in curve.groupby("seed"):
        run = run.sort_values("step")
        steps, flag = steps_to_reach(run["step"].to_numpy(float), run[target].to_numpy(float),
                                     levels.get(seed, mean_level))
        needed.append(steps)
        ratios.append(base_steps.get(seed, fallback) / steps)
        flags.append(flag)
    row = {"speedup": float("nan"), "steps_to_baseline": float("nan"), "speedup_lo": float("nan"),
           "speedup_hi": float("nan"), "seeds": len(needed), "censored": censoring(flags)}
    if not row["censored"]:
        speedup, lo, hi = log_t_interval(np.array(ratios))
        row |= {"speedup": speedup, "steps_to_baseline": log_t_interval(np.array(needed))[0],
                "speedup_lo": lo, "speedup_hi": hi}
    return row


def speedups(convergence: pd.DataFrame, target: str, baseline: str) -> pd.DataFrame:
    """How many times fewer generator steps a variant needs to reach the baseline's final `target`
    score, with a 95% interval over seeds and its censoring."""
    import pandas as pd  # here, so declaring the speed-up column needs no pandas

    if convergence.empty or target not in convergence or baseline not in set(convergence["variant"]):
        return pd.DataFrame(columns=SPEEDUP_COLUMNS)
    curves = convergence.dropna(subset=[target])
    levels, mean_level, base_steps = baseline_levels(curves, target, baseline)
    rows = [{"variant": variant, **variant_speedup(curve, target, levels, mean_level, base_steps)}
            for variant, curve in curves.groupby("variant", sort=False)]
    return pd.DataFrame(rows, columns=SPEEDUP_COLUMNS)
