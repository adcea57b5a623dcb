"""The reconstruction objective L1 + w * perceptual, shared by the trainer and by MCR's terms."""
from __future__ import annotations

import torch
from torch import nn


def reconstruction_loss(
    x: torch.Tensor,
    x_rec: torch.Tensor,
    perceptual: nn.Module | None,
    l1_weight: float = 1.0,
    perceptual_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Batch-mean l1_weight * L1 + perceptual_weight * d(x_rec, x) (the paper: L1 + 1.0 * LPIPS; no GAN here).

    `x` is the reference: with a PerceptualDistance that skips the graph of a target which
    needs no grad, pass a detached `x` for stop-gradient targets. Returns (total, terms) where
    terms holds detached 'l1' and 'perceptual' values for logging; the perceptual term is skipped
    (and reported as 0) when its weight is 0 or `perceptual` is None.
    """
    if x.shape != x_rec.shape:
        raise ValueError(f"reconstruction needs equal shapes; got target {tuple(x.shape)} vs output {tuple(x_rec.shape)}")
    l1 = (x_rec - x).abs().mean()
    total = l1_weight * l1
    if perceptual is not None and perceptual_weight != 0:
        pd = perceptual(x_rec, x).mean()
        total = total + perceptual_weight * pd
    else:
        pd = l1.new_zeros(())
    return total, {"l1": l1.detach(), "perceptual": pd.detach()}
