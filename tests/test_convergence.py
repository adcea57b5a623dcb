"""Speed-ups read on log-spaced checkpoints: per seed, with a t interval, and censoring in words."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.convergence import ABOVE, BELOW, speedups, steps_to_reach
from pae_lab.config.schema import GeneratorConfig

STEPS = np.array([12, 25, 50, 100, 200, 400])


def _curves(rates: dict[str, list[float]]) -> pd.DataFrame:
    """Score = -log(rate * step), linear in log(step): a variant with k times the rate reaches any level k
    times sooner."""
    rows = [{"variant": v, "seed": seed, "step": int(s), "score": -np.log(rate * s)}
            for v, per_seed in rates.items() for seed, rate in enumerate(per_seed) for s in STEPS]
    return pd.DataFrame(rows)


def test_log_spaced_eval_steps_end_at_the_last_step():
    assert GeneratorConfig(steps=400, eval_points=6).eval_schedule() == [12, 25, 50, 100, 200, 400]
    cfg = GeneratorConfig(steps=400, eval_points=8, eval_at=[300])
    assert len(cfg.eval_schedule()) == 9 and cfg.eval_schedule()[-1] == 400 and 300 in cfg.eval_schedule()
    assert GeneratorConfig(steps=400).eval_schedule() == [400]  # off by default


def test_steps_to_reach_interpolates_in_log_step_and_says_when_censored():
    steps, values = np.array([100.0, 400.0]), np.array([2.0, 1.0])
    assert steps_to_reach(steps, values, 1.5) == (pytest.approx(200.0), "")  # halfway in log(step)
    assert steps_to_reach(steps, values, 0.5)[1] == ABOVE and math.isnan(steps_to_reach(steps, values, 0.5)[0])
    assert steps_to_reach(steps, values, 3.0) == (100.0, BELOW)


def test_speedups_read_more_than_two_with_an_interval_over_seeds():
    table = speedups(_curves({"baseline": [1.0, 1.0, 1.0], "fast": [7.0, 8.0, 9.0]}), "score", "baseline")
    fast = table.set_index("variant").loc["fast"]
    assert fast["speedup"] == pytest.approx(np.exp(np.mean(np.log([7, 8, 9]))), rel=1e-6)  # geometric mean
    assert fast["speedup_lo"] < fast["speedup"] < fast["speedup_hi"] and fast["censored"] == ""
    assert table.set_index("variant").loc["baseline", "speedup"] == pytest.approx(1.0)


def test_speedups_are_paired_by_seed():
    """Each seed is read against the baseline run of the same seed: a seed effect common to both cancels."""
    table = speedups(_curves({"baseline": [1.0, 2.0, 4.0], "fast": [4.0, 8.0, 16.0]}), "score", "baseline")
    fast = table.set_index("variant").loc["fast"]
    assert fast["speedup"] == pytest.approx(4.0) and fast["speedup_hi"] - fast["speedup_lo"] < 1e-6


def test_censored_variants_get_words_not_numbers():
    table = speedups(_curves({"baseline": [1.0, 1.0, 1.0], "slow": [0.5, 0.5, 2.0], "instant": [100.0, 100.0, 100.0]}),
                     "score", "baseline").set_index("variant")
    assert math.isnan(table.loc["slow", "speedup"]) and table.loc["slow", "censored"] == f"{ABOVE} (2 of 3 seeds)"
    assert math.isnan(table.loc["instant", "speedup"]) and table.loc["instant", "censored"] == f"{BELOW} (3 of 3 seeds)"


def test_a_variant_identical_to_the_baseline_reads_one() -> None:
    """The baseline's steps are read with the variant's rule (first crossing of its own final score), so a
    noisy plateau that dips below the final score early does not turn an identical variant into a speed-up."""
    steps = [12, 25, 50, 100, 200, 400]
    rows = []
    for seed, curve in enumerate(([9, 5, 3.0, 2.9, 3.05, 3.0], [8, 4, 2.8, 3.1, 2.9, 3.0], [9, 6, 3.2, 2.95, 3.1, 3.0])):
        for variant in ("baseline", "twin"):
            rows += [{"variant": variant, "seed": seed, "step": s, "gfd": v} for s, v in zip(steps, curve)]
    found = speedups(pd.DataFrame(rows), "gfd", "baseline").set_index("variant")
    assert found.loc["twin", "speedup"] == pytest.approx(1.0) and found.loc["baseline", "speedup"] == pytest.approx(1.0)
