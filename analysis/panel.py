"""`compute_panel`: every configured latent-quality metric over one held-out set."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable

import numpy as np
import torch
from torch import Tensor

import analysis.panel_metrics  # noqa: F401  (registers the built-in metrics)
from analysis.metric import METRICS, panel_metric, register_metric  # noqa: F401  (re-exported)
from analysis.metric_info import panel_names
from analysis.panel_context import PanelContext
from analysis.panel_config import PanelConfig
from analysis.result import MetricResult


def compute_panel(
    encode: Callable[[Tensor], Tensor],
    decode: Callable[[Tensor], Tensor],
    images: Tensor,
    labels: Tensor | np.ndarray | None,
    segments: Tensor | None,
    *,
    distance: Callable[[Tensor, Tensor], Tensor] | None,
    config: PanelConfig | None = None,
    distance_name: str | None = None,
    train_images: Tensor | None = None,
    train_labels: Tensor | np.ndarray | None = None,
    split: str | None = None,
    device: torch.device | str | None = None,
    timings: dict[str, float] | None = None,
) -> dict[str, MetricResult]:
    """Run the configured metrics (default: all whose inputs are given) on the first `n_images` images.

    `images` are [N, 3, H, W] in [0, 1]; `encode`/`decode` are eval-mode callables acting per
    sample; `distance(a, b) -> [B]` is the perceptual distance LPC uses, named in its protocol by
    `distance_name`. `split` is recorded in every protocol. With `device` set, the held-out
    images are moved there (train images batch by batch) before `encode` sees them. If `timings`
    is a dict, it receives seconds per metric (and "encode" for the shared latents).
    """
    config = config or PanelConfig()
    if train_images is not None and train_labels is None:
        raise ValueError("train_images were given without train_labels; pass both or neither")
    n = config.n_images
    ctx = PanelContext(
        encode, decode, images[:n] if device is None else images[:n].to(device), config,
        labels=None if labels is None else labels[:n],
        segments=None if segments is None else segments[:n],
        distance=distance, distance_name=distance_name,
        train_images=train_images, train_labels=train_labels, device=device,
    )
    names = config.names if config.names is not None else panel_names()
    entries = {name: METRICS.get(name) for name in names}  # unknown names fail here, listing the known ones
    if config.names is not None:
        for name, entry in entries.items():
            if missing := entry.missing(ctx):
                raise ValueError(f"metric {name!r} needs {', '.join(missing)}; pass {', '.join(m + '=' for m in missing)} "
                                 f"to compute_panel or drop {name!r} from metrics.names")
    timings = timings if timings is not None else {}
    start = time.perf_counter()
    _ = ctx.latents
    timings["encode"] = time.perf_counter() - start
    results: dict[str, MetricResult] = {}
    for name, entry in entries.items():
        if entry.missing(ctx):
            continue
        start = time.perf_counter()
        result = entry.fn(ctx)
        timings[name] = time.perf_counter() - start
        results[name] = replace(result, protocol={**result.protocol, "split": split}) if split else result
    return results
