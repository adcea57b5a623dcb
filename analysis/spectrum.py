"""eRank: how many latent channels the pooled features really use."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from analysis.result import MetricResult
from analysis.tensors import pool


def erank(latents: Tensor, *, center: bool = False) -> MetricResult:
    """exp(entropy of the normalised singular values of the [N, C] pooled feature matrix) / C.

    1 means all C channels carry equal energy, 1/C a single direction. Not centred by default
    (RankMe's convention); `center=True` measures the spread around the mean instead.
    """
    feats = pool(latents.detach()).double().cpu()
    if center:
        feats = feats - feats.mean(0, keepdim=True)
    s = torch.linalg.svdvals(feats)
    p = s / s.sum().clamp_min(1e-300)
    p = p[p > 0]
    value = math.exp(float(-(p * p.log()).sum())) / feats.shape[1]
    protocol = {"metric": "erank", "n_samples": len(feats), "channels": feats.shape[1], "pool": "global-average", "center": center}
    return MetricResult(value, protocol, {"effective_channels": value * feats.shape[1]})
