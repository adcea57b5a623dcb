"""What a panel metric reads: `PanelContext`.

A user adds a metric the way the built-ins are added (see analysis.metric):

    @panel_metric("my_metric", needs=("labels",), direction="higher", label="my metric")
    def my_metric(ctx: PanelContext) -> MetricResult: ...

The context computes latents, reconstructions and probe features lazily and once, so a metric
only pays for what it reads.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from analysis.panel_config import PanelConfig
from analysis.probes import split_indices
from analysis.tensors import map_batches, pool


@dataclass
class PanelContext:
    """Everything a panel metric may read: the callables, the held-out data and the config."""

    encode: Callable[[Tensor], Tensor]
    decode: Callable[[Tensor], Tensor]
    images: Tensor
    config: PanelConfig
    labels: Tensor | None = None
    segments: Tensor | None = None
    distance: Callable[[Tensor, Tensor], Tensor] | None = None
    distance_name: str | None = None
    train_images: Tensor | None = None
    train_labels: Tensor | None = None
    device: torch.device | str | None = None

    @functools.cached_property
    def latents(self) -> Tensor:
        """Held-out latents, encoded once in batches without autograd."""
        with torch.no_grad():
            return map_batches(self.encode, self.images, self.config.batch_size)

    @functools.cached_property
    def reconstructions(self) -> Tensor:
        """D(E(x)) clamped to [0, 1], the range images are stored in."""
        with torch.no_grad():
            return map_batches(self.decode, self.latents, self.config.batch_size).clamp(0, 1)

    @functools.cached_property
    def probe_data(self) -> tuple[Tensor, np.ndarray, Tensor, np.ndarray, str]:
        """(train features, train labels, test features, test labels, protocol note) for the probes.

        With train images: those encode the probe-train set and the held-out set is the test set.
        Without: the held-out set is split (stratified, seeded) by `probe_test_fraction`.
        """
        y = _numpy(self.labels)
        test_x = pool(self.latents).cpu()
        if self.train_images is not None:
            with torch.no_grad():
                encode = lambda b: pool(self.encode(b.to(self.device) if self.device is not None else b)).cpu()  # noqa: E731
                train_x = map_batches(encode, self.train_images, self.config.batch_size)
            return train_x, _numpy(self.train_labels), test_x, y, "train-images"
        tr, te = split_indices(y, self.config.probe_test_fraction, self.config.seed)
        return test_x[tr], y[tr], test_x[te], y[te], f"held-out split, test fraction {self.config.probe_test_fraction}"


def _numpy(y: Tensor | np.ndarray | None) -> np.ndarray:
    if y is None:
        raise ValueError("labels are required here; pass labels= (and train_labels= with train_images=)")
    return np.asarray(y.cpu() if isinstance(y, Tensor) else y)
