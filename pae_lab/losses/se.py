"""Scale equivariance ("diffusability"), a cheap peer regularizer: the decoder must commute with
down-sampling, L(down(x), D(down(z)))."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pae_lab.losses.reconstruction import reconstruction_loss
from pae_lab.losses.regularizers import RegContext, Regularizer, register_regularizer
from pae_lab.models.tokenizer import rms_normalize


@register_regularizer("se")
class ScaleEquivariance(Regularizer):
    """[L1 + d](D(down(z)), down(x)) with `factor`x average pooling of image and latent.

    `renormalize` puts the pooled latent back on the token sphere (pooling shrinks token norms,
    and the decoder only ever sees RMS-normalised tokens otherwise). default_weight 0.25 is our
    choice; the peers publish none for this form.
    """


    def __init__(self, factor: int = 2, renormalize: bool = True, l1_weight: float = 1.0, perceptual_weight: float = 1.0):
        super().__init__()
        if factor < 2:
            raise ValueError(f"se factor must be >= 2, got {factor}")
        self.factor, self.renormalize = int(factor), bool(renormalize)
        self.l1_weight, self.perceptual_weight = float(l1_weight), float(perceptual_weight)

    def forward(self, ctx: RegContext) -> torch.Tensor:
        h, w = ctx.z.shape[2:]
        if h % self.factor or w % self.factor:
            raise ValueError(f"se factor {self.factor} does not divide the latent grid {h}x{w}; use a smaller factor")
        z = F.avg_pool2d(ctx.z, self.factor)
        z = rms_normalize(z) if self.renormalize else z
        x = F.avg_pool2d(ctx.x, self.factor)
        return reconstruction_loss(x, ctx.decode(z), ctx.perceptual, self.l1_weight, self.perceptual_weight)[0]
