"""Every score of a generated set, from features: against the real reference and against the
tokenizer's own reconstructions of it. One function, so a checkpoint and each control are scored
the same way."""
from __future__ import annotations

from typing import Any

import torch

from analysis.fidelity import fd_kd_named
from analysis.fidelity_names import FidelityColumns
from analysis.knn_scores import knn_scores_named


def set_scores(generated: torch.Tensor, real: torch.Tensor, own: torch.Tensor, cols: FidelityColumns, *,
               prdc_k: int, real_stats: tuple[torch.Tensor, torch.Tensor] | None = None, **kd: Any) -> dict[str, float]:
    """FD / KD and precision / recall / density / coverage of `generated` vs `real` (gFD, ...) and vs
    `own` (lFD, lprecision, ...); gFD from `real_stats` (mu, sigma) when the study names a statistics
    file; `kd` is passed to KD (kid_subsets, seed)."""
    return {**fd_kd_named(generated, real, cols.fd, cols.kd, stats=real_stats, **kd),
            **fd_kd_named(generated, own, cols.lfd, cols.lkd, **kd),
            **knn_scores_named(generated, real, cols.knn("real"), prdc_k),
            **knn_scores_named(generated, own, cols.knn("own"), prdc_k)}
