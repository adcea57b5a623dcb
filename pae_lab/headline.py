"""The headline metrics: what a researcher compares first, in MLflow's runs table and the report.

The generation score keeps the name of its results.csv column everywhere (`fd_effnet_lite0` with
the embedded extractor, `fid` with Inception weights); rFD is the same name with an `r` prefix.
"""
from __future__ import annotations

from typing import Iterable

PANEL_HEADLINE = ("psnr", "ssc", "lpc", "gsq")
LEARNABILITY_PREFIXES = ("learnability", "lfd_", "lfid")  # issue 11's learnability score, where a study has it


def headline_metrics(columns: Iterable[str], target: str | None) -> list[str]:
    """Generation score, learnability score (if present), PSNR, SSC, LPC, GSQ, rFD: those in `columns`."""
    cols = list(columns)
    learn = [c for c in cols if c.startswith(LEARNABILITY_PREFIXES) and not c.endswith("_std")][:1]
    wanted = [target, *learn, *PANEL_HEADLINE, f"r{target}" if target else None]
    return [c for c in wanted if c and c in cols]
