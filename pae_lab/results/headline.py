"""The headline metrics: what a researcher compares first, in MLflow's runs table and the report.

The generation score keeps the name of its results.csv column everywhere (`fd_effnet_lite0` with
the embedded extractor, `fid` with Inception weights); the learnability score (lFD) and rFD are
named from it by analysis.fidelity_names.FidelityColumns.
"""
from __future__ import annotations

from typing import Iterable

from analysis.fidelity_names import FidelityColumns

PANEL_HEADLINE = ("psnr", "ssc", "lpc", "gsq")


def headline_metrics(columns: Iterable[str], generation: str | None) -> list[str]:
    """Generation score (gFD), learnability score (lFD), PSNR, SSC, LPC, GSQ, rFD: those in `columns`.
    `generation` is the gFD column's name."""
    cols = list(columns)
    named = FidelityColumns.from_keys(generation, "") if generation else None
    wanted = [generation, named and named.lfd, *PANEL_HEADLINE, named and named.rfd]
    return [c for c in wanted if c and c in cols]
