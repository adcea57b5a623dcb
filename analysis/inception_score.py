"""Inception Score from a network's class logits, by torch-fidelity's `isc_features_to_metric`.

ADM's evaluator computes IS over consecutive splits of 5000 samples (10 for FID-50K) from the
softmax of its pool-3 logits *without* the classifier's bias, which is torch-fidelity's
"logits_unbiased" for Inception. We take the same splits (no shuffling), so at N = 50,000 the
value is ADM's; below 5000 samples it is one split (IS over the whole set, no spread, std NaN).
"""
from __future__ import annotations

import math

import torch
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

ADM_SPLIT_SIZE = 5000  # samples per split in ADM's evaluator


def is_splits(n: int, split_size: int = ADM_SPLIT_SIZE) -> int:
    """How many splits of about `split_size` the n samples make (at least one)."""
    return max(1, round(n / split_size))


def inception_score(logits: torch.Tensor, split_size: int = ADM_SPLIT_SIZE) -> dict[str, float]:
    """{"is", "is_std", "is_splits"} of logits [N, classes]: exp E_x KL(p(y|x) || p(y)) per split."""
    if logits.dim() != 2 or len(logits) < 2:
        raise ValueError(f"inception_score needs logits [N >= 2, classes], got {tuple(logits.shape)}")
    splits = is_splits(len(logits), split_size)
    found = isc_features_to_metric(logits, splits=splits, shuffle=False)
    return {"is": found[KEY_METRIC_ISC_MEAN], "is_std": found[KEY_METRIC_ISC_STD] if splits > 1 else math.nan,
            "is_splits": splits}
