"""The paper's published 2x2x2 ablation of SSR / MCR / SCR (ImageNet 256, 25 tokenizer epochs), under
pae-lab's variant names, so a study's factorial effects can be set beside the paper's."""
from __future__ import annotations

from typing import Any

from analysis.metric import declare_column

# variant -> regularizers switched on (the registered variants of the ablation)
ABLATION_VARIANTS: dict[str, tuple[str, ...]] = {
    "baseline": (), "ssr": ("ssr",), "mcr": ("mcr",), "scr": ("scr",), "ssr_mcr": ("ssr", "mcr"),
    "ssr_scr": ("ssr", "scr"), "mcr_scr": ("mcr", "scr"), "pae": ("ssr", "mcr", "scr"),
}

_ABLATION_TABLE = {
    "variant": list(ABLATION_VARIANTS),
    "ssc": [0.18, 0.29, 0.23, 0.21, 0.33, 0.31, 0.24, 0.35],
    "lpc": [0.320, 0.296, 0.221, 0.286, 0.187, 0.258, 0.176, 0.170],
    "gsq": [0.19, 0.26, 0.24, 0.39, 0.33, 0.46, 0.45, 0.50],
    "gfid": [7.18, 2.74, 2.53, 2.63, 2.02, 2.10, 2.08, 1.86],
}

declare_column("gfid", direction="lower", label="gFID", meaning="the paper's generation FID (ImageNet 256)")

# the regularizer whose own metric each property is ("each regularizer most improves its own metric")
OWN_METRIC: dict[str, str] = {"ssr": "ssc", "mcr": "lpc", "scr": "gsq"}


def __getattr__(name: str) -> Any:
    """`ABLATION`, the table as a DataFrame, built on first use: declaring the paper's columns needs no pandas."""
    if name == "ABLATION":
        import pandas as pd

        return pd.DataFrame(_ABLATION_TABLE)
    raise AttributeError(f"module 'analysis.paper' has no attribute {name!r}")
