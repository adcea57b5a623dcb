"""Frozen prior features of a whole image set, computed once and kept as one float16 .npy file.

The path is the cache key (the orchestrator derives it from the prior's config and the dataset
digest): an existing file of the expected shape is loaded instead of recomputed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from pae_lab.data.diskarray import NpyWriter
from pae_lab.priors.base import Prior

Progress = Callable[[int, int], None]


def compute_features(prior: Prior, images_uint8: np.ndarray, grid: int, batch_size: int = 64,
                     progress: Progress | None = None) -> np.ndarray:
    """uint8 [N,3,H,W] -> float16 [N, dim, grid, grid]; `progress(done, total)` after each batch."""
    return np.concatenate(list(feature_batches(prior, images_uint8, grid, batch_size, progress)))


def feature_batches(prior: Prior, images_uint8, grid: int, batch_size: int,
                    progress: Progress | None = None) -> Iterator[np.ndarray]:
    """float16 features batch by batch (images may be an on-disk array): memory stays at one batch."""
    n = len(images_uint8)
    for start in range(0, n, batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images_uint8[start:start + batch_size])).to(prior.device)
        yield prior.features(batch.float() / 255.0, grid).float().cpu().numpy().astype(np.float16)
        if progress is not None:
            progress(min(start + batch_size, n), n)


def cache_features(prior: Prior, images_uint8: np.ndarray, grid: int, batch_size: int, path: str | Path,
                   progress: Progress | None = None, overwrite: bool = False) -> np.ndarray:
    """Features of every image at `path` (float16 .npy, streamed to disk, renamed into place); reuse the file if
    present. Returns the file memory-mapped read-only."""
    path = Path(path)
    expected = (len(images_uint8), prior.dim, grid, grid)
    if path.is_file() and not overwrite:
        cached = np.load(path, mmap_mode="r")
        if cached.shape == expected and cached.dtype == np.float16:
            return cached
    with NpyWriter(path, expected, np.float16) as out:
        for feats in feature_batches(prior, images_uint8, grid, batch_size, progress):
            out.write(feats)
    return np.load(path, mmap_mode="r")
