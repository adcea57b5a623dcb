"""The reconstruction objective L1 + w * perceptual, shared by the trainer and by MCR's terms."""
from __future__ import annotations

import torch
from torch import nn

from pae_lab.losses.perceptual import PerceptualDistance


def reconstruction_loss(*args, **kwargs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(total, terms) of `reconstruction_terms`: the loss and what it logs."""
    return reconstruction_terms(*args, **kwargs)[:2]


def reconstruction_terms(
    x: torch.Tensor,
    x_rec: torch.Tensor,
    perceptual: nn.Module | None,
    l1_weight: float = 1.0,
    perceptual_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[torch.Tensor] | None]:
    """Batch-mean l1_weight * L1 + perceptual_weight * d(x_rec, x) (the paper: L1 + 1.0 * LPIPS; no GAN here).

    `x` is the reference: with a PerceptualDistance that skips the graph of a target which
    needs no grad, pass a detached `x` for stop-gradient targets. Returns (total, terms, features) where
    terms holds detached 'l1' and 'perceptual' values for logging; the perceptual term is skipped
    (and reported as 0) when its weight is 0 or `perceptual` is None. The third value is `x_rec`'s
    embedding, detached, where it was computed by a PerceptualDistance that `embeds_separately` (else
    None): MCR's cascade compares with exactly these features and need not embed D(z) a second time.
    """
    if x.shape != x_rec.shape:
        raise ValueError(f"reconstruction needs equal shapes; got target {tuple(x.shape)} vs output {tuple(x_rec.shape)}")
    l1 = (x_rec - x).abs().mean()
    total = l1_weight * l1
    features = None
    if perceptual is None or perceptual_weight == 0:
        pd = l1.new_zeros(())
    elif isinstance(perceptual, PerceptualDistance) and perceptual.embeds_separately:
        distances, embedded = perceptual.scored(x_rec, x)
        pd, features = distances.mean(), [f.detach() for f in embedded]
    else:
        pd = perceptual(x_rec, x).mean()
    total = total + perceptual_weight * pd
    return total, {"l1": l1.detach(), "perceptual": pd.detach()}, features
