"""SSR, spatial structure regularisation: the latent's token Gram matrix should match the prior's."""
from __future__ import annotations

import torch

from pae_lab.losses.regularizers import RegContext, Regularizer, register_regularizer
from pae_lab.models.tokens import gram_distance


@register_regularizer("ssr")
class SSR(Regularizer):
    """||G_z - G_T||_F^2 over token Gram matrices (N x N, N = h*w) of the latent and the refined target.

    Choices the paper leaves open: tokens are l2-normalised before the Gram (a cosine Gram, so
    the loss shapes spatial *structure*, not token norms, and z and Z_T may have different
    widths), and the squared Frobenius norm is divided by N^2 and averaged over the batch, so
    the value lies in [0, 4] whatever the grid size. The target gets no gradient.
    """

    needs = frozenset({"target"})

    def forward(self, ctx: RegContext) -> torch.Tensor:
        return gram_distance(ctx.z, self.require(ctx, "target").detach())
