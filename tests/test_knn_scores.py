"""Precision / recall / density / coverage: the `prdc` package's numbers, a block of rows at a time."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from prdc import compute_prdc

from analysis.knn_scores import knn_scores


@pytest.mark.parametrize("working_memory", [1024, 0.01])  # whole, and a few rows per block
def test_blocks_of_rows_give_prdc_s_numbers_bit_for_bit(working_memory) -> None:
    """prdc holds every N x N distance matrix whole (10 GB at FID-50K's 50 000 samples); the blocks
    must not change a single comparison, ties included (samples that copy a reference image)."""
    rng = np.random.default_rng(0)
    for trial in range(12):
        n_real, n_fake, dim = rng.integers(6, 120, size=2).tolist() + [int(rng.integers(2, 40))]
        k = int(rng.integers(1, min(n_real, n_fake) - 1))
        real = rng.normal(size=(n_real, dim)).astype(np.float32)
        fake = (rng.normal(size=(n_fake, dim)) * rng.uniform(0.5, 1.5) + rng.uniform(0, 1)).astype(np.float32)
        fake[:3] = real[:3]
        with contextlib.redirect_stdout(io.StringIO()):
            expected = compute_prdc(real, fake, nearest_k=k)
        got = knn_scores(torch.from_numpy(fake), torch.from_numpy(real), k, working_memory=working_memory)
        assert got == {role: float(value) for role, value in expected.items()}, trial


def test_precision_and_recall_by_hand_on_four_points() -> None:
    """1-d sets small enough to count by hand. k = 1: each point's ball reaches its nearest other point.
    Reals at 0, 1, 10 have radii 1, 1, 9; samples at 0.5, 20 have radii 19.5, 19.5.
    precision: 0.5 lies in the ball of 0 (0.5 < 1) and of 10 (9.5 > 9: no), 20 in none -> 1/2.
    recall: every real lies within 19.5 of 0.5 -> 1. density: 0.5 sits in 2 balls (0 and 1), 20 in 0
    -> (2 + 0) / 2 / k = 1. coverage: reals whose nearest sample is inside their ball: 0 (0.5 < 1),
    1 (0.5 < 1), not 10 (9.5 > 9) -> 2/3."""
    real = torch.tensor([[0.0], [1.0], [10.0]])
    fake = torch.tensor([[0.5], [20.0]])
    assert knn_scores(fake, real, 1) == {"precision": 0.5, "recall": 1.0, "density": 1.0, "coverage": pytest.approx(2 / 3)}
