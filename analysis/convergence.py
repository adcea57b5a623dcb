"""How fast each variant's generator gets there: steps to reach the baseline's final score."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from analysis.metric import declare_column

if TYPE_CHECKING:
    import pandas as pd

# Derived from the target's curves, not a score of its own: no direction, so the report marks no best.
declare_column("speedup", label="speed-up", unit="x",
               meaning="baseline's generator steps / this variant's steps to reach the baseline's final score")


def steps_to_reach(steps: np.ndarray, values: np.ndarray, level: float) -> float:
    """First step at which the curve reaches `level` (lower is better), linearly interpolated."""
    for i, (s, v) in enumerate(zip(steps, values)):
        if v <= level:
            if i == 0:
                return float(s)
            s0, v0 = steps[i - 1], values[i - 1]
            return float(s0 + (v0 - level) / (v0 - v) * (s - s0)) if v0 != v else float(s)
    return float("nan")


def speedups(convergence: pd.DataFrame, target: str, baseline: str) -> pd.DataFrame:
    """How many times fewer generator steps a variant needs to reach the baseline's final gFID."""
    import pandas as pd  # here, so declaring the speed-up column needs no pandas

    if convergence.empty or target not in convergence or baseline not in set(convergence["variant"]):
        return pd.DataFrame(columns=["variant", "speedup", "steps_to_baseline"])
    curves = convergence.groupby(["variant", "step"])[target].mean().reset_index()
    base = curves[curves["variant"] == baseline].sort_values("step")
    level, base_steps = float(base[target].iloc[-1]), float(base["step"].iloc[-1])
    rows = []
    for variant, curve in curves.groupby("variant"):
        curve = curve.sort_values("step")
        needed = steps_to_reach(curve["step"].to_numpy(), curve[target].to_numpy(), level)
        rows.append({"variant": variant, "steps_to_baseline": needed,
                     "speedup": base_steps / needed if needed == needed and needed > 0 else float("nan")})
    return pd.DataFrame(rows)
