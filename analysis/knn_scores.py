"""Precision, recall, density and coverage of a generated set against a reference set.

FD folds fidelity and diversity into one number: a generator that drops half the classes and one
that blurs every image can score alike. These four k-NN scores keep them apart (Kynkäänniemi et
al. 2019; Naeem et al. 2020), with the `prdc` package's definitions on the same features as FD;
with k = 3, precision and recall are ADM's improved precision / recall. The distances are those
`prdc` computes (sklearn's euclidean), taken a block of rows at a time so that memory stays within
`working_memory` MB: `prdc` holds every N x N matrix whole, 10 GB for the 50 000 samples of FID-50K.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import pairwise_distances_chunked

from analysis.fidelity_names import KNN_ROLES

WORKING_MEMORY_MB = 1024  # the largest block of distances held at once


def kth_neighbour_distances(features: np.ndarray, k: int, working_memory: int = WORKING_MEMORY_MB) -> np.ndarray:
    """Each row's distance to its k-th nearest other row (prdc's radius: its own 0 distance is the first)."""
    def kth(block: np.ndarray, start: int) -> np.ndarray:
        return np.partition(block, k, axis=1)[:, k]

    return np.concatenate(list(pairwise_distances_chunked(features, reduce_func=kth, working_memory=working_memory)))


def knn_scores(samples: torch.Tensor, reference: torch.Tensor, k: int, working_memory: int = WORKING_MEMORY_MB) -> dict[str, float]:
    """{precision, recall, density, coverage} of `samples` against `reference` (features [N, D])."""
    largest = min(len(samples), len(reference)) - 1
    if not 1 <= k <= largest:
        raise ValueError(f"prdc_k={k} must lie in 1..{largest} (one less than the smaller set)")
    real, fake = np.asarray(reference, np.float32), np.asarray(samples, np.float32)
    real_radii, fake_radii = kth_neighbour_distances(real, k, working_memory), kth_neighbour_distances(fake, k, working_memory)
    inside = np.zeros(len(fake), np.int64)  # per sample: how many reals' k-NN balls hold it

    def per_real(block: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:  # reals [start, ...) x every sample
        radii = real_radii[start:start + len(block)]
        within = block < radii[:, None]
        inside[:] += within.sum(axis=0)
        return (block < fake_radii[None, :]).any(axis=1), block.min(axis=1) < radii

    blocks = list(pairwise_distances_chunked(real, fake, reduce_func=per_real, working_memory=working_memory))
    recalled, covered = (np.concatenate(part) for part in zip(*blocks))
    values = ((inside > 0).mean(), recalled.mean(), 1.0 / k * inside.mean(), covered.mean())  # prdc's formulas
    return {role: float(value) for role, value in zip(KNN_ROLES, values)}


def knn_scores_named(samples: torch.Tensor, reference: torch.Tensor, names: dict[str, str], k: int) -> dict[str, float]:
    """`knn_scores` under a study's column names (FidelityColumns.knn)."""
    return {names[role]: value for role, value in knn_scores(samples, reference, k).items()}
