"""Sample and reference files in the ADM evaluator's `.npz` formats, so a study's samples can be
scored by the evaluator papers quote, and a peer's samples by pae-lab.

Images: `arr_0` uint8 [N, H, W, 3] (channels last), labels, when known, in `arr_1`.
Statistics: `mu` [D] and `sigma` [D, D] of the extractor's features (ADM's reference batches hold
them beside the images); pae-lab adds `extractor`, so a file made with another network is refused.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

IMAGES, LABELS = "arr_0", "arr_1"
MU, SIGMA, EXTRACTOR = "mu", "sigma", "extractor"


def save_images(path: str | os.PathLike, images: torch.Tensor | np.ndarray, labels=None) -> Path:
    """uint8 images [N, 3, H, W] (pae-lab's layout) written channels-last as ADM reads them."""
    array = np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1] != 3:
        raise ValueError(f"{path}: images must be uint8 [N, 3, H, W], got {array.dtype} {array.shape}")
    arrays = {IMAGES: np.ascontiguousarray(array.transpose(0, 2, 3, 1))}
    if labels is not None:
        arrays[LABELS] = np.asarray(labels, dtype=np.int64)
    np.savez(path, **arrays)
    return Path(path)


def load_images(path: str | os.PathLike) -> tuple[torch.Tensor, np.ndarray | None]:
    """(uint8 images [N, 3, H, W], labels or None) from an ADM image file."""
    with _open(path) as data:
        if IMAGES not in data:
            raise ValueError(f"{path}: no {IMAGES!r} array (ADM's images, uint8 [N, H, W, 3]); it holds {sorted(data.files)}")
        images = data[IMAGES]
        labels = data[LABELS] if LABELS in data else None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{path}: {IMAGES} must be uint8 [N, H, W, 3] (ADM's sample format), got {images.dtype} {images.shape}")
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))), labels


def holds_statistics(path: str | os.PathLike) -> bool:
    """Whether the file holds feature statistics (mu, sigma) rather than images."""
    with _open(path) as data:
        return MU in data and SIGMA in data and IMAGES not in data


def save_statistics(path: str | os.PathLike, features: torch.Tensor, extractor: str) -> Path:
    """mu and sigma (the sample covariance, as torch-fidelity and ADM compute it) of features [N, D]."""
    feats = np.asarray(features, dtype=np.float64)
    np.savez(path, **{MU: feats.mean(0), SIGMA: np.cov(feats, rowvar=False), EXTRACTOR: np.array(extractor)})
    return Path(path)


def load_statistics(path: str | os.PathLike, extractor: str, feature_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, sigma) as float64 tensors, refused in one line when made with another extractor."""
    with _open(path) as data:
        mu, sigma = data[MU].astype(np.float64), data[SIGMA].astype(np.float64)
        made_with = str(data[EXTRACTOR]) if EXTRACTOR in data else None
    if mu.shape != (feature_dim,) or sigma.shape != (feature_dim, feature_dim):
        raise ValueError(f"{path}: statistics of {mu.shape[0]}-d features, but the {extractor} extractor gives "
                         f"{feature_dim}-d ones: compare with statistics made by the same network")
    if made_with is not None and made_with != extractor:
        raise ValueError(f"{path}: statistics made with the {made_with} extractor, not {extractor}: pass --extractor {made_with}")
    return torch.from_numpy(mu), torch.from_numpy(sigma)


def _open(path: str | os.PathLike):
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable .npz ({exc})") from None
