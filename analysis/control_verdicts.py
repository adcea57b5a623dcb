"""Whether a score passed its controls (analysis.controls measures them): which controls each score
must pass, the rows a control leaves and the verdicts read from them. Torch-free, so the driver and
`pae-lab status` read verdicts without loading a network."""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from analysis.frontier import RECONSTRUCTION, Frontier

CONTROLS_BY_ROLE: dict[str, tuple[str, ...]] = {
    "fd": ("blur", "constant", "modes"), "kd": ("blur", "constant", "modes"),
    "precision": ("blur", "constant"), "density": ("blur", "constant"),
    "recall": ("constant", "modes"), "coverage": ("constant", "modes"),
    "frontier": ("blur", "constant", "modes"),
    "isc": ("blur", "constant", "modes"), "sfd": ("blur", "constant", "modes"), "dino_fd": ("blur", "constant", "modes"),
}
INFORMATIVE = ("floor",)  # measured beside the controls, never a verdict


def required_controls(role: str) -> tuple[str, ...]:
    """The controls a column of this FidelityColumns role must pass ("lfd" as "fd"); () for none."""
    return CONTROLS_BY_ROLE.get(role, CONTROLS_BY_ROLE.get(role.removeprefix("l"), ()))


def worse(value: float, compared: float, direction: str) -> bool:
    """Whether a control's value is strictly worse than the value it is compared with."""
    return bool(value > compared) if direction == "lower" else bool(value < compared)


def control_rows(control: str, param: float | str, values: Mapping[str, float], compared: Mapping[str, float],
                 directions: Mapping[str, str], roles: Mapping[str, str]) -> list[dict]:
    """One row per score: the control's value, what it is compared with, whether it came out worse
    (None where the score need not pass this control)."""
    rows = []
    for column, value in values.items():
        if column not in directions:
            continue
        needed = control in required_controls(roles[column])
        rows.append({"control": control, "param": param, "column": column, "value": value,
                     "compared_with": compared.get(column, float("nan")),
                     "worse": worse(value, compared[column], directions[column]) if needed else None})
    return rows


def describe(control: str, param: float | str) -> str:
    return {"blur": f"blur {param} px", "constant": "a constant decoder",
            "modes": f"keeping {param:.0%} of the classes" if isinstance(param, float) else "dropping classes",
            }.get(control, control)


def verdicts(rows: pd.DataFrame, columns: list[str], roles: Mapping[str, str]) -> pd.DataFrame:
    """Per score: passes (True / False / None when not measured) and, in words, the controls it failed
    and in how many of the measured runs; a control must make the score worse in every run."""
    out = []
    for column in columns:
        needed = required_controls(roles.get(column, ""))
        mine = rows[(rows["column"] == column) & rows["control"].isin(needed)] if not rows.empty else rows
        if not needed or mine.empty:
            out.append({"column": column, "passes_controls": None, "failed_controls": "not measured"})
            continue
        failed = []
        for (control, param), group in mine.groupby(["control", "param"], sort=False):
            bad = int((group["worse"] == False).sum())  # noqa: E712  (None stays out)
            if bad:
                failed.append(f"{describe(control, param)} does not make it worse ({bad} of {len(group)} runs)")
        out.append({"column": column, "passes_controls": not failed, "failed_controls": "; ".join(failed)})
    return pd.DataFrame(out)


def frontier_rows(rows: pd.DataFrame, fit: Frontier, fd: str, frontier: str) -> pd.DataFrame:
    """The frontier distance under each control, from each controlled run's gFD and the PSNR that
    control costs its decoder: log gFD - line(PSNR). A blur that lowers PSNR moves the line too, so
    the distance can improve while gFD gets worse: the distance needs controls of its own."""
    out = []
    for (variant, seed), run in rows.groupby(["variant", "seed"], sort=False):
        gfd = run[run["column"] == fd].set_index(["control", "param"])["value"]
        psnr = run[run["column"] == RECONSTRUCTION].set_index(["control", "param"])["value"]
        actual = next((key for key in gfd.index if key[0] == "actual"), None)
        if actual is None or actual not in psnr.index:
            continue
        base = float(np.log(gfd[actual]) - fit.predict(psnr[actual]))
        for key in gfd.index:
            control, param = key
            if control == "modes":  # the same decoder: gFD's comparison, at the same PSNR
                pair = run[(run["column"] == fd) & (run["control"] == "modes")].iloc[0]
                value, compared = (float(np.log(pair[v]) - fit.predict(psnr[actual])) for v in ("value", "compared_with"))
            elif key in psnr.index:
                value, compared = float(np.log(gfd[key]) - fit.predict(psnr[key])), base
            else:
                continue
            judged = control in required_controls("frontier")
            out.append({"variant": variant, "seed": seed, "control": control, "param": param, "column": frontier,
                        "value": value, "compared_with": compared, "worse": worse(value, compared, "lower") if judged else None})
    return pd.DataFrame(out, columns=rows.columns)
