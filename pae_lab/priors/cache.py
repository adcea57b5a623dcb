"""Frozen prior features of a whole image set, computed once and kept as one float16 .npy file.

The path is the cache key (the orchestrator derives it from the prior's config and the dataset
digest): an existing file of the expected shape is loaded instead of recomputed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from pae_lab.fsutil import save_npy
from pae_lab.priors.base import Prior

Progress = Callable[[int, int], None]


def compute_features(prior: Prior, images_uint8: np.ndarray, grid: int, batch_size: int = 64,
                     progress: Progress | None = None) -> np.ndarray:
    """uint8 [N,3,H,W] -> float16 [N, dim, grid, grid]; `progress(done, total)` after each batch."""
    n = len(images_uint8)
    out = np.empty((n, prior.dim, grid, grid), np.float16)
    device = prior.device
    for start in range(0, n, batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images_uint8[start:start + batch_size])).to(device)
        feats = prior.features(batch.float() / 255.0, grid)
        out[start:start + len(batch)] = feats.float().cpu().numpy().astype(np.float16)
        if progress is not None:
            progress(min(start + batch_size, n), n)
    return out


def cache_features(prior: Prior, images_uint8: np.ndarray, grid: int, batch_size: int, path: str | Path,
                   progress: Progress | None = None, overwrite: bool = False) -> np.ndarray:
    """Features of every image at `path` (float16 .npy, written atomically); reuse the file if present."""
    path = Path(path)
    expected = (len(images_uint8), prior.dim, grid, grid)
    if path.is_file() and not overwrite:
        cached = np.load(path)
        if cached.shape == expected and cached.dtype == np.float16:
            return cached
    feats = compute_features(prior, images_uint8, grid, batch_size, progress)
    save_npy(path, feats)
    return feats
