"""A user plugin for the tests: a regularizer whose loss is NaN, and a variant that uses it."""
import torch

from pae_lab.losses.regularizers import Regularizer, register_regularizer
from pae_lab.variants import register_variant


@register_regularizer("nan_loss")
class NanLoss(Regularizer):
    """Always NaN: the run using it must fail and be recorded, not crash the study."""

    default_weight = 1.0

    def forward(self, ctx):
        return ctx.z.sum() * torch.tensor(float("nan"))


register_variant("explodes", {"nan_loss": {"weight": 1.0}}, description="test: NaN loss")
