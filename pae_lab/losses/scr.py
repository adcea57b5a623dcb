"""SCR, semantic consistency regularisation: the latent should point where the prior points."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pae_lab.losses.regularizers import RegContext, Regularizer, register_regularizer
from pae_lab.models.tokens import token_cosine


@register_regularizer("scr")
class SCR(Regularizer):
    """(1 - cos(pool(z), pool(Z_T))) + mean_i (1 - cos(z_i, Z_T,i)), batch-averaged.

    pool = spatial mean. `pooled` / `patch` switch the global and per-token terms (the paper's
    ablation: pooled only / patch only / both); each term lies in [0, 2]. Z_T must have the
    latent's channel count (the refined prior projects to it). The target gets no gradient.
    """

    needs = frozenset({"target"})

    def __init__(self, pooled: bool = True, patch: bool = True):
        super().__init__()
        if not (pooled or patch):
            raise ValueError("scr with pooled=False and patch=False has no term left; enable at least one")
        self.pooled, self.patch = bool(pooled), bool(patch)

    def forward(self, ctx: RegContext) -> torch.Tensor:
        target = self.require(ctx, "target").detach()
        if target.shape[1] != ctx.z.shape[1]:
            raise ValueError(
                f"scr compares channels directly: target has {target.shape[1]} channels, latent {ctx.z.shape[1]}; "
                "build the refined prior with latent_dim equal to the tokenizer's latent_channels"
            )
        loss = ctx.z.new_zeros(())
        if self.pooled:
            loss = loss + (1 - F.cosine_similarity(ctx.z.mean(dim=(2, 3)), target.mean(dim=(2, 3)), dim=1, eps=1e-8)).mean()
        if self.patch:
            loss = loss + (1 - token_cosine(ctx.z, target)).mean()
        return loss
