"""The teacher's ceiling: the structure and semantics metrics of what the regularizers align the latent to.

SSR and SCR pull the latent toward the refined target; when that target scores lower than the
baseline latent (on SSC, GSQ, probes, coherence), the regularizers can only make those metrics
worse. So every study measures, on the same held-out images and with the same metric settings:
- the raw prior features on the latent grid,
- the refined target Z_T,
- pooled pixels (the images average-pooled to the latent grid: what colour alone gives away),
- pixel patches (each latent cell's own raw pixel values, unpooled: a code that keeps every pixel and
  learns nothing. No ceiling: SSC and GSQ reward invariance, not information, and on colour-coded
  scenes pooled pixels score above it),
- gradient energy (mean absolute grey-level differences along 4 directions per cell: what a fixed,
  untrained filter bank gives; on texture data the bar a pretrained network has to clear),
- position (each token's place on the grid, the same for every image: it knows nothing about the
  image, so whatever it scores is the data's layout, e.g. SSC from objects sitting near the centre).
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
TEACHER_ROWS = {"raw_prior": "teacher", "refined": "teacher", "pooled_pixels": "reference", "pixel_patches": "reference",
                "gradient_energy": "reference", "position": "reference"}  # name -> kind
# the rows that use no network, and what each one's score stands for: the bars the teacher must clear
CONTROL_ROWS = {"pooled_pixels": "colour alone", "pixel_patches": "the raw pixel patch",
                "gradient_energy": "a fixed filter bank", "position": "the layout alone"}


def row_kind(name: str) -> str:
    """teacher / reference: a part's row ("refined:ssr", one regularizer's own teacher) is its source's kind."""
    return TEACHER_ROWS.get(name.partition(":")[0], "reference")


def row_name(name: str) -> str:
    """The `variant` label of a ceiling row, e.g. "teacher:raw_prior", "teacher:refined:ssr", "reference:pooled_pixels"."""
    return f"{row_kind(name)}:{name}"


def pooled_pixels(images_u8: np.ndarray, grid: int) -> Tensor:
    """uint8 images [N, 3, H, W] -> [N, 3, grid, grid] average-pooled colours in [0, 1]."""
    return F.adaptive_avg_pool2d(torch.from_numpy(images_u8).float() / 255, grid)


def pixel_patches(images_u8: np.ndarray, grid: int) -> Tensor:
    """uint8 images [N, 3, H, W] -> [N, 3 f^2, grid, grid]: each cell's f x f pixels in [0, 1] as its
    channels (f = min(H, W) // grid; an image that is not grid * f square is area-resized to it first)."""
    x = torch.from_numpy(images_u8).float() / 255
    f = max(1, min(x.shape[-2:]) // grid)
    if x.shape[-2:] != (grid * f, grid * f):
        x = F.interpolate(x, size=(grid * f, grid * f), mode="area")
    return F.pixel_unshuffle(x, f)


def gradient_energy(images_u8: np.ndarray, grid: int) -> Tensor:
    """uint8 images [N, 3, H, W] -> [N, 4, grid, grid]: mean |difference| of the grey image to the
    right, below and along both diagonals, average-pooled to the grid."""
    grey = torch.from_numpy(images_u8).float().mean(dim=1, keepdim=True) / 255
    steps = [grey[..., :, 1:] - grey[..., :, :-1], grey[..., 1:, :] - grey[..., :-1, :],
             grey[..., 1:, 1:] - grey[..., :-1, :-1], grey[..., 1:, :-1] - grey[..., :-1, 1:]]
    return torch.cat([F.adaptive_avg_pool2d(d.abs(), grid) for d in steps], dim=1)


def position(n: int, grid: int) -> Tensor:
    """[n, 3, grid, grid]: each token's x, y in [-1, 1] and distance from the centre, for every image."""
    axis = torch.linspace(-1, 1, grid)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x, y, torch.hypot(x, y)]).expand(n, -1, -1, -1).contiguous()


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


def teacher_results(sources: Mapping[str, tuple[Tensor, Tensor]], labels: np.ndarray, train_labels: np.ndarray,
                    segments: np.ndarray | None, config: PanelConfig) -> dict[str, dict[str, MetricResult]]:
    """{source: {metric: result}} for each (val, train) feature pair in `sources`, all on the same images."""
    return {name: feature_metrics(val, train, labels, train_labels, segments, config) for name, (val, train) in sources.items()}


def flat_rows(results: Mapping[str, Mapping[str, MetricResult]]) -> dict[str, dict[str, float]]:
    """{source: {column: value}}: each source's results as a results-table row."""
    return {name: {k: float(v) for metric, res in found.items() for k, v in res.flat(metric).items()}
            for name, found in results.items()}


def item_rows(results: Mapping[str, Mapping[str, MetricResult]]) -> dict[str, dict[str, np.ndarray]]:
    """{source: {column: per-image scores}} where a metric keeps them (SSC's AMI): for paired comparisons."""
    return {name: {k: v for metric, res in found.items() for k, v in res.flat_items(metric).items()}
            for name, found in results.items()}
