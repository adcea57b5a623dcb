""""digits": scikit-learn's bundled 8x8 handwritten digits (1797 real images), upsampled.

A second embedded dataset of *real* images that needs no download: labels 0-9, segments =
foreground (ink) vs background by a threshold on the upsampled intensity.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pae_lab.data.imageset import ImageSet
from pae_lab.data.registry import register_dataset

VAL_FRACTION = 0.2


@register_dataset("digits")
def digits(resolution: int = 32, size: int | None = None, split: str = "train", seed: int = 0,
           threshold: float = 0.25) -> ImageSet:
    """Grey digits on black; `split` takes a seeded 80/20 train/val partition; `size` None = all of it."""
    from sklearn.datasets import load_digits

    if split not in ("train", "val"):
        raise ValueError(f"digits: split must be 'train' or 'val', got {split!r}")
    bunch = load_digits()
    order = np.random.default_rng(seed).permutation(len(bunch.target))
    n_val = int(round(VAL_FRACTION * len(order)))
    index = order[n_val:] if split == "train" else order[:n_val]
    if size is not None:
        if not 1 <= size <= len(index):
            raise ValueError(f"digits: the {split} split has {len(index)} images; size must be in [1, {len(index)}], got {size}")
        index = index[:size]
    small = torch.from_numpy(bunch.images[index].astype(np.float32) / 16.0)[:, None]
    big = F.interpolate(small, size=(resolution, resolution), mode="bilinear", align_corners=False).clamp(0, 1)
    images = (big * 255.0 + 0.5).to(torch.uint8).expand(-1, 3, -1, -1).numpy().copy()
    segments = (big[:, 0] > threshold).numpy().astype(np.int64)
    return ImageSet(images, bunch.target[index].astype(np.int64), [str(d) for d in range(10)], segments)
