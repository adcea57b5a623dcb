"""`Prior`: a frozen vision foundation model seen as a feature map on the latent grid.

Regularizers (SSR, SCR) and the refined-prior stage compare latents [B, C, g, g] with prior
features, so every backend answers one question: `features(x01, grid) -> [B, dim, grid, grid]`.
Backends implement `feature_map` (their native map); the base class resizes it to the grid
(adaptive average pooling when shrinking, bilinear when growing), keeps the module in eval mode
whatever `.train()` is called with, and computes without gradients.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def resize_to_grid(fmap: torch.Tensor, grid: int) -> torch.Tensor:
    """[B,C,h,w] -> [B,C,grid,grid]: average-pool to shrink (no aliasing), bilinear to grow."""
    h, w = fmap.shape[-2:]
    if (h, w) == (grid, grid):
        return fmap
    if h >= grid and w >= grid:
        return F.adaptive_avg_pool2d(fmap, grid)
    return F.interpolate(fmap, size=(grid, grid), mode="bilinear", align_corners=False)


def resize_input(x01: torch.Tensor, resolution: int) -> torch.Tensor:
    """Images [B,3,H,W] -> [B,3,resolution,resolution] (bilinear, anti-aliased when shrinking)."""
    if tuple(x01.shape[-2:]) == (resolution, resolution):
        return x01
    return F.interpolate(x01, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)


class Prior(nn.Module):
    """A frozen feature extractor: `name`, `dim` (channels) and `features(x01, grid)`."""

    def __init__(self, name: str, dim: int):
        super().__init__()
        self.name = name
        self.dim = dim

    def feature_map(self, x01: torch.Tensor) -> torch.Tensor:
        """Native feature map [B, dim, h, w] of images in [0, 1]; backends override this."""
        raise NotImplementedError(f"{type(self).__name__} must implement feature_map(x01) -> [B, dim, h, w]")

    @torch.no_grad()
    def features(self, x01: torch.Tensor, grid: int) -> torch.Tensor:
        """Images [B,3,H,W] in [0,1] -> features [B, dim, grid, grid], no gradient."""
        if x01.ndim != 4 or x01.shape[1] != 3:
            raise ValueError(f"prior {self.name!r}: expected images [B,3,H,W] in [0,1], got shape {tuple(x01.shape)}")
        return resize_to_grid(self.feature_map(x01), grid)

    def freeze(self) -> Prior:
        self.requires_grad_(False)
        return super().train(False)

    def train(self, mode: bool = True) -> Prior:
        """Stays in eval mode: a prior is frozen even inside a module being trained."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters(), torch.empty(0)).device
