"""The teacher's ceiling: the structure and semantics metrics of what the regularizers align the latent to.

SSR and SCR pull the latent toward the refined target; when that target scores lower than the
baseline latent (on SSC, GSQ, probes, coherence), the regularizers can only make those metrics
worse. So every study measures, on the same held-out images and with the same metric settings:
- the raw prior features on the latent grid,
- the refined target Z_T,
- pooled pixels (the images average-pooled to the latent grid: what colour alone gives away).
These become reference rows of results.csv (`kind` = teacher / reference), next to the variants.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from analysis.panel import compute_panel
from analysis.panel_config import PanelConfig
from analysis.result import MetricResult

CEILING_METRICS = ("ssc", "coherence", "gsq", "linprobe", "knn")
TEACHER_ROWS = {"raw_prior": "teacher", "refined": "teacher", "pooled_pixels": "reference"}  # name -> kind


def row_name(name: str) -> str:
    """The `variant` label of a ceiling row, e.g. "teacher:raw_prior", "reference:pooled_pixels"."""
    return f"{TEACHER_ROWS.get(name, 'reference')}:{name}"


def pooled_pixels(images_u8: np.ndarray, grid: int) -> Tensor:
    """uint8 images [N, 3, H, W] -> [N, 3, grid, grid] average-pooled colours in [0, 1]."""
    return F.adaptive_avg_pool2d(torch.from_numpy(images_u8).float() / 255, grid)


def feature_metrics(val: Tensor, train: Tensor, labels: np.ndarray, train_labels: np.ndarray,
                    segments: np.ndarray | None, config: PanelConfig) -> dict[str, MetricResult]:
    """SSC, coherence, GSQ, linear and kNN probes of a fixed feature map [N, C, g, g] (no encoder:
    the panel sees the features as the latents), with the study's own panel settings."""
    names = [m for m in CEILING_METRICS if segments is not None or m != "ssc"]
    cfg = config.model_copy(update={"names": names})
    identity = lambda t: t  # noqa: E731
    return compute_panel(identity, identity, val.float(), torch.from_numpy(labels),
                         None if segments is None else torch.from_numpy(segments), distance=None, config=cfg,
                         train_images=train.float(), train_labels=torch.from_numpy(train_labels), split="val")


def teacher_ceiling(sources: Mapping[str, tuple[Tensor, Tensor]], labels: np.ndarray, train_labels: np.ndarray,
                    segments: np.ndarray | None, config: PanelConfig) -> dict[str, dict[str, float]]:
    """{source: {metric: value}} for each (val, train) feature pair in `sources`."""
    out = {}
    for name, (val, train) in sources.items():
        results = feature_metrics(val, train, labels, train_labels, segments, config)
        out[name] = {k: float(v) for name_, res in results.items() for k, v in res.flat(name_).items()}
    return out
