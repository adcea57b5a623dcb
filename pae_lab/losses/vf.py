"""VA-VAE's VF loss (hustvl/LightningDiT), the peer alignment regularizer: margin-tolerant alignment
of a linear view of the latent with the raw VFM features."""
from __future__ import annotations

import torch
from torch import nn

from pae_lab.losses.regularizers import RegContext, Regularizer, register_regularizer
from pae_lab.models.tokens import cosine_gram, token_cosine


@register_regularizer("vf")
class VF(Regularizer):
    """dm_weight * mean ReLU(|S_z' - S_f| - margin_dm) + mc_weight * mean_i ReLU(1 - margin_mc - cos(z'_i, f_i)).

    z' = W z with W a bias-free 1x1 conv from the latent width to the VFM width D, a TRAINABLE
    parameter of this regularizer: call `setup(latent_channels=C, vfm_dim=D)` (build_regularizer
    does when given both) and put `parameters()` into the optimizer. S are the per-image token
    cosine-similarity matrices; f = ctx.vfm (raw prior features at the latent grid, no gradient).
    Upstream rescales the weight each step by the ratio of reconstruction and VF gradient norms
    at the encoder's last layer; that adaptive weighting is NOT done here (the variant's fixed
    weight applies), so the default weight may need tuning per prior.
    """

    needs = frozenset({"vfm"})

    def __init__(self, margin_dm: float = 0.25, margin_mc: float = 0.5, dm_weight: float = 1.0, mc_weight: float = 1.0):
        super().__init__()
        self.margin_dm, self.margin_mc = float(margin_dm), float(margin_mc)
        self.dm_weight, self.mc_weight = float(dm_weight), float(mc_weight)
        self.proj: nn.Conv2d | None = None

    def setup(self, *, latent_channels: int, vfm_dim: int | None = None) -> None:
        if vfm_dim is None:
            raise ValueError("vf needs the prior's feature width: setup(latent_channels=C, vfm_dim=D)")
        if self.proj is None or (self.proj.in_channels, self.proj.out_channels) != (latent_channels, vfm_dim):
            self.proj = nn.Conv2d(latent_channels, vfm_dim, kernel_size=1, bias=False)

    def forward(self, ctx: RegContext) -> torch.Tensor:
        feats = self.require(ctx, "vfm").detach()
        if self.proj is None:
            raise RuntimeError(
                "vf has no projection yet: call setup(latent_channels=C, vfm_dim=D) (or build_regularizer(..., "
                "latent_channels=C, vfm_dim=D)) before building the optimizer, so its weights are trained"
            )
        if self.proj.out_channels != feats.shape[1]:
            raise ValueError(f"vf was set up for vfm_dim={self.proj.out_channels} but ctx.vfm has {feats.shape[1]} channels")
        zp = self.proj(ctx.z)
        dm = torch.relu((cosine_gram(zp) - cosine_gram(feats)).abs() - self.margin_dm).mean()
        mc = torch.relu(1 - self.margin_mc - token_cosine(zp, feats)).mean()
        return self.dm_weight * dm + self.mc_weight * mc
