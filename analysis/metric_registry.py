"""The metric registry: name -> function(PanelContext) -> MetricResult.

A user adds a metric the way the built-ins are added:

    @panel_metric("my_metric", needs=("labels",))
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
from analysis.result import MetricResult
from analysis.tensors import map_batches, pool
from pae_lab.catalog import METRICS
from pae_lab.registry import RegistryError

# Optional panel inputs a metric may need; the panel skips (or, if asked by name, refuses) a
# metric whose needs were not given.
OPTIONAL_INPUTS = ("labels", "segments", "distance")


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


@dataclass(frozen=True)
class PanelMetric:
    """A registered metric: its function and the optional inputs it cannot run without."""

    fn: Callable[[PanelContext], MetricResult]
    needs: tuple[str, ...] = ()

    def missing(self, ctx: PanelContext) -> list[str]:
        return [n for n in self.needs if getattr(ctx, n) is None]


def register_metric(name: str, fn: Callable[[PanelContext], MetricResult], needs: tuple[str, ...] = (),
                    *, overwrite: bool = False) -> PanelMetric:
    """Register `fn(ctx) -> MetricResult` under `name`; `needs` lists optional inputs it requires."""
    if not callable(fn):
        raise RegistryError(f"metric {name!r} must be a callable taking a PanelContext, got {fn!r}")
    unknown = [n for n in needs if n not in OPTIONAL_INPUTS]
    if unknown:
        raise RegistryError(f"metric {name!r} needs unknown inputs {unknown}; choose from {list(OPTIONAL_INPUTS)}")
    return METRICS.register(name, PanelMetric(fn, tuple(needs)), overwrite=overwrite)


def panel_metric(name: str, needs: tuple[str, ...] = (), *, overwrite: bool = False) -> Callable[[Callable], Callable]:
    """Decorator form of `register_metric`; returns the function unchanged."""

    def wrap(fn: Callable[[PanelContext], MetricResult]) -> Callable[[PanelContext], MetricResult]:
        register_metric(name, fn, needs, overwrite=overwrite)
        return fn

    return wrap
