"""Sample and reference files in the ADM evaluator's `.npz` formats, so a study's samples can be
scored by the evaluator papers quote, and a peer's samples by pae-lab.

Images: `arr_0` uint8 [N, H, W, 3] (channels last), labels, when known, in `arr_1`.
Statistics: `mu` [D] and `sigma` [D, D] of the extractor's features. ADM's reference batches hold
both: the images (for precision / recall) and the statistics of the whole data set (for FID), and
`mu_s` / `sigma_s` for sFID. pae-lab's own statistics files add `extractor`, so a file made with
another network is refused; a file without it is assumed to match, and the scorer says so.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

IMAGES, LABELS = "arr_0", "arr_1"
MU, SIGMA, EXTRACTOR = "mu", "sigma", "extractor"
SPATIAL = ("mu_s", "sigma_s")  # ADM's sFID statistics (Inception's mixed_6/conv features)


def _write(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    with open(path, "wb") as handle:  # np.savez(path) would append .npz to a path without it
        np.savez(handle, **arrays)
    return Path(path)


def save_images(path: str | os.PathLike, images: torch.Tensor | np.ndarray, labels=None) -> Path:
    """uint8 images [N, 3, H, W] (pae-lab's layout) written channels-last as ADM reads them."""
    array = np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1] != 3:
        raise ValueError(f"{path}: images must be uint8 [N, 3, H, W], got {array.dtype} {array.shape}")
    arrays = {IMAGES: np.ascontiguousarray(array.transpose(0, 2, 3, 1))}
    if labels is not None:
        arrays[LABELS] = np.asarray(labels, dtype=np.int64)
        if arrays[LABELS].shape != (len(array),):
            raise ValueError(f"{path}: {len(arrays[LABELS])} labels for {len(array)} images")
    return _write(path, arrays)


def contents(path: str | os.PathLike) -> set[str]:
    """The arrays a file holds: IMAGES, MU and SIGMA, SPATIAL, ..."""
    with _open(path) as data:
        return set(data.files)


def load_images(path: str | os.PathLike) -> tuple[torch.Tensor, np.ndarray | None]:
    """(uint8 images [N, 3, H, W], labels or None) from an ADM image file."""
    with _open(path) as data:
        if IMAGES not in data:
            raise ValueError(f"{path}: no {IMAGES!r} array (ADM's images, uint8 [N, H, W, 3]); it holds {sorted(data.files)}")
        images = data[IMAGES]
        labels = data[LABELS] if LABELS in data else None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{path}: {IMAGES} must be uint8 [N, H, W, 3] (ADM's sample format), got {images.dtype} {images.shape}")
    if labels is not None and labels.shape != (len(images),):
        raise ValueError(f"{path}: {LABELS} holds {labels.shape} labels for {len(images)} images")
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))), labels


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of the file's images from the array's header alone: a reference batch's 10 000 images need
    not be read to check their resolution."""
    with zipfile.ZipFile(path) as archive, archive.open(f"{IMAGES}.npy") as raw:
        major, _ = np.lib.format.read_magic(raw)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape = read(raw)[0]
    if len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"{path}: {IMAGES} must be [N, H, W, 3] (ADM's sample format), got shape {shape}")
    return shape[1], shape[2]


def holds_statistics(path: str | os.PathLike) -> bool:
    """Whether the file holds feature statistics (mu and sigma), with or without images."""
    held = contents(path)
    if (MU in held) != (SIGMA in held):
        raise ValueError(f"{path}: holds {MU if MU in held else SIGMA} without {SIGMA if MU in held else MU}")
    return MU in held


def _moments(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    feats = np.asarray(features, dtype=np.float64)
    return feats.mean(0), np.cov(feats, rowvar=False)


def save_statistics(path: str | os.PathLike, features: torch.Tensor, extractor: str,
                    spatial: torch.Tensor | None = None) -> Path:
    """mu and sigma (the sample covariance, as torch-fidelity and ADM compute it) of features [N, D], and
    mu_s / sigma_s of sFID's `spatial` features when given (Inception's)."""
    arrays = dict(zip((MU, SIGMA), _moments(features)))
    if spatial is not None:
        arrays |= dict(zip(SPATIAL, _moments(spatial)))
    return _write(path, {**arrays, EXTRACTOR: np.array(extractor)})


def load_statistics(path: str | os.PathLike, extractor: str, feature_dim: int,
                    keys: tuple[str, str] = (MU, SIGMA)) -> tuple[torch.Tensor, torch.Tensor, str | None]:
    """(mu, sigma as float64 tensors, the network the file names or None), refused in one line when made
    with another extractor or for features of another size; `keys=SPATIAL`: sFID's mu_s / sigma_s."""
    with _open(path) as data:
        mu, sigma = np.asarray(data[keys[0]], np.float64), np.asarray(data[keys[1]], np.float64)
        made_with = str(data[EXTRACTOR]) if EXTRACTOR in data else None
    if made_with is not None and made_with != extractor:
        raise ValueError(f"{path}: statistics made with the {made_with} extractor, not {extractor}: pass --extractor {made_with}")
    if mu.shape != (feature_dim,) or sigma.shape != (feature_dim, feature_dim):
        hint = " (ADM's files: --extractor inception --inception-weights FILE)" if mu.shape == (2048,) else ""
        raise ValueError(f"{path}: {keys[0]} {mu.shape} and {keys[1]} {sigma.shape}, but the {extractor} extractor gives "
                         f"{feature_dim}-d features: compare with statistics made by the same network{hint}")
    return torch.from_numpy(mu), torch.from_numpy(sigma), made_with


def _open(path: str | os.PathLike):
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable .npz ({exc})") from None
