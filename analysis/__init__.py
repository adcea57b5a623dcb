"""Latent-quality metrics (SSC, LPC, GSQ, probes, Lipschitz, eRank, PSNR/SSIM) and metric-vs-gFID correlation.

Pure functions on tensors and callables; nothing here knows about runs or trackers. Names are
imported lazily so that `import analysis.<module>` stays cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MetricResult": "analysis.result",
    "ssc": "analysis.spatial",
    "spatial_coherence": "analysis.spatial",
    "lpc": "analysis.continuity",
    "lipschitz": "analysis.lipschitz",
    "lipschitz_jvp": "analysis.lipschitz",
    "lipschitz_power": "analysis.lipschitz",
    "gsq": "analysis.semantics",
    "linear_probe": "analysis.probes",
    "knn_probe": "analysis.probes",
    "erank": "analysis.spectrum",
    "psnr": "analysis.reconstruction",
    "ssim": "analysis.reconstruction",
    "PanelConfig": "analysis.panel_config",
    "PanelContext": "analysis.panel_context",
    "METRICS": "analysis.panel",  # via panel, so the built-ins are registered
    "register_metric": "analysis.panel",
    "panel_metric": "analysis.panel",
    "compute_panel": "analysis.panel",
    "correlate": "analysis.correlation",
    "correlate_file": "analysis.correlation",
    "metric_metric_matrix": "analysis.correlation",
    "direction_of": "analysis.metric_info",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
