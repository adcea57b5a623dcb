"""GSQ, global semantic quality: do pooled latents put same-class images next to each other?"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from analysis.result import MetricResult
from analysis.tensors import pool


def nn_purity(features: Tensor, labels: np.ndarray) -> float:
    """Fraction of rows whose nearest other row (cosine, after centring by the set mean) shares its label."""
    f = features.double()
    f = torch.nn.functional.normalize(f - f.mean(0, keepdim=True), dim=1)
    sim = f @ f.T
    sim.fill_diagonal_(-torch.inf)
    nearest = sim.argmax(1).numpy()
    return float((labels[nearest] == labels).mean())


def gsq(
    latents_or_pooled: Tensor,
    labels: Tensor | np.ndarray,
    classes_per_repeat: int | None = None,
    repeats: int = 5,
    seed: int = 0,
) -> MetricResult:
    """Global semantic quality (higher is better): 1-NN label purity of centred, l2-normalised pooled latents.

    With `classes_per_repeat` set, each of `repeats` rounds draws that many classes at random and
    scores only their images (centred by that subset's mean), the paper's "100 random classes,
    5 repeats"; value = mean, extra std. Without it the whole set is scored once.
    """
    feats = pool(latents_or_pooled.detach()).cpu()
    y = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels)
    if len(y) != len(feats):
        raise ValueError(f"{len(feats)} samples but {len(y)} labels; pass one label per image")
    classes = np.unique(y)
    subsets: list[np.ndarray]
    if classes_per_repeat is None or classes_per_repeat >= len(classes):
        subsets, repeats_done = [np.ones(len(y), dtype=bool)], 1
    else:
        rng = np.random.default_rng(seed)
        subsets = [np.isin(y, rng.choice(classes, classes_per_repeat, replace=False)) for _ in range(repeats)]
        repeats_done = repeats
    scores = np.array([nn_purity(feats[torch.from_numpy(m)], y[m]) for m in subsets])
    protocol = {
        "metric": "gsq", "n_samples": len(y), "n_classes": len(classes), "classes_per_repeat": classes_per_repeat,
        "repeats": repeats_done, "pool": "global-average", "similarity": "cosine after centring", "seed": seed,
    }
    value, n = float(scores.mean()), float(np.mean([m.sum() for m in subsets]))
    # the images' binomial standard error (each image's neighbour a hit or not): how far other images move it
    se = float(np.sqrt(value * (1 - value) / n))
    return MetricResult(value, protocol, {"std": float(scores.std()), "se": se, "chance": 1.0 / len(classes)})
