"""Inception Score from a network's class logits, by torch-fidelity's `isc_features_to_metric`.

ADM's evaluator computes IS over consecutive splits of 5000 samples (10 for FID-50K) from the
softmax of its pool-3 logits *without* the classifier's bias, which is torch-fidelity's
"logits_unbiased" for Inception. We take the same splits (in order, no shuffling, the last one
shorter when N is no multiple of 5000), so the value is ADM's at any N; below 5000 samples it is
one split (IS over the whole set, no spread, std NaN).
"""
from __future__ import annotations

import math

import torch
import numpy as np
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, isc_features_to_metric

ADM_SPLIT_SIZE = 5000  # samples per split in ADM's evaluator


def inception_score(logits: torch.Tensor, split_size: int = ADM_SPLIT_SIZE) -> dict[str, float]:
    """{"is", "is_std", "is_splits"} of logits [N, classes]: exp E_x KL(p(y|x) || p(y)) per split, over
    ADM's splits: consecutive runs of `split_size` samples in order, the last one shorter (its evaluator's
    `range(0, N, split_size)` loop), whose mean and population std are reported."""
    if logits.dim() != 2 or len(logits) < 2:
        raise ValueError(f"inception_score needs logits [N >= 2, classes], got {tuple(logits.shape)}")
    scores = [isc_features_to_metric(split, splits=1, shuffle=False)[KEY_METRIC_ISC_MEAN]
              for split in torch.split(logits, split_size)]
    return {"is": float(np.mean(scores)), "is_std": float(np.std(scores)) if len(scores) > 1 else math.nan,
            "is_splits": len(scores)}
