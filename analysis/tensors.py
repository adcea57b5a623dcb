"""Small tensor helpers shared by the metrics: pooling, batched calls, seeded random directions."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def to_uint8(x01: Tensor) -> Tensor:
    """Float images in [0, 1] -> uint8 in [0, 255] (rounded): the one rounding rule of every image the
    fidelity metrics read and the pipeline saves."""
    return (x01.detach().clamp(0, 1) * 255).round().to(torch.uint8)


def pool(x: Tensor) -> Tensor:
    """[N, C, h, w] latents -> [N, C] by global average pooling; 2-D input passes through."""
    if x.dim() == 4:
        return x.mean(dim=(2, 3))
    if x.dim() == 2:
        return x
    raise ValueError(f"expected [N, C, h, w] latents or [N, C] pooled features, got shape {tuple(x.shape)}")


def map_batches(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int) -> Tensor:
    """`fn` over `x` in chunks of `batch_size` along dim 0, concatenated."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return torch.cat([fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def per_sample_norm(x: Tensor) -> Tensor:
    """L2 norm of each sample over all its non-batch dims -> [N]."""
    return x.flatten(1).norm(dim=1)


def unit_directions(like: Tensor, n_directions: int, seed: int) -> Tensor:
    """[n_directions, *like.shape] Gaussian directions, each sample's slice of unit L2 norm.

    Drawn on the CPU from one seeded generator before any batching, so the directions (and hence
    the metric) do not depend on batch size or device.
    """
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn((n_directions, *like.shape), generator=gen, dtype=torch.float64)
    u = u / u.flatten(2).norm(dim=2).clamp_min(1e-12)[(...,) + (None,) * (like.dim() - 1)]
    return u.to(device=like.device, dtype=like.dtype)
