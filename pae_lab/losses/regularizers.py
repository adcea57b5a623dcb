"""The regularizer registry: every latent regularizer (PAE's SSR/MCR/SCR and the peers) is an entry.

A regularizer is an `nn.Module` whose keyword constructor arguments are its documented
parameters and whose `forward(ctx)` returns the UNWEIGHTED scalar loss; the trainer multiplies by
the variant's weight and logs every term. Regularizers may own trainable parameters (VF's
projection), so the trainer puts `regularizer.parameters()` into the optimizer, after calling
`setup(...)`, which creates any parameter whose shape depends on the latent or prior width.

Users add their own with `@register_regularizer("name")` in their own module; the built-ins
register through that same call.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from pae_lab.catalog import REGULARIZERS
from pae_lab.registry import RegistryError


@dataclass
class RegContext:
    """Everything a regularizer may look at for one training batch.

    x: images in [0, 1], [B, 3, H, W]; z: latent [B, C, h, w] (RMS-normalised per token);
    x_rec: decode(z) with its graph; decode: the decoder, for perturbed latents;
    target: refined prior targets Z_T at the latent grid [B, C_T, h, w] or None;
    vfm: raw prior features at the latent grid [B, D, h, w] or None;
    perceptual: the perceptual distance module (or None for L1 only); step: the training step;
    x_rec_features: perceptual.embed(x_rec), detached, as the reconstruction loss computed it (or None).
    """

    x: torch.Tensor
    z: torch.Tensor
    x_rec: torch.Tensor
    decode: Callable[[torch.Tensor], torch.Tensor]
    target: torch.Tensor | None = None
    vfm: torch.Tensor | None = None
    perceptual: nn.Module | None = None
    step: int = 0
    x_rec_features: list[torch.Tensor] | None = None


class Regularizer(nn.Module):
    """Base class. Subclasses set `default_weight`, list the context fields they need in `needs`
    ("target" and/or "vfm", so the trainer knows whether to compute prior features), take their
    parameters as keyword constructor arguments, and implement `forward(ctx) -> scalar`.
    """

    name: ClassVar[str] = ""
    default_weight: ClassVar[float] = 1.0
    needs: ClassVar[frozenset[str]] = frozenset()

    def __init__(self) -> None:  # explicit, so a subclass without params has an empty signature
        super().__init__()

    def setup(self, *, latent_channels: int, vfm_dim: int | None = None) -> None:
        """Create shape-dependent parameters; call once before building the optimizer. No-op by default."""

    def require(self, ctx: RegContext, field: str) -> torch.Tensor:
        """ctx.<field>, or an error that says which regularizer needs it and how to provide it."""
        value = getattr(ctx, field)
        if value is None:
            source = {"target": "refined prior targets Z_T", "vfm": "raw prior (VFM) features"}.get(field, field)
            raise ValueError(
                f"regularizer {self.name!r} needs ctx.{field} ({source} at the latent grid) but it is None: "
                "give the run a prior, or drop this regularizer from the variant"
            )
        if value.shape[0] != ctx.z.shape[0] or value.shape[2:] != ctx.z.shape[2:]:
            raise ValueError(
                f"regularizer {self.name!r}: ctx.{field} has shape {tuple(value.shape)} but the latent is "
                f"{tuple(ctx.z.shape)}; resample the prior to the latent grid {tuple(ctx.z.shape[2:])}"
            )
        return value

    def forward(self, ctx: RegContext) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        """The documented keyword parameters and their defaults (for listings and validation)."""
        return {
            p.name: (None if p.default is inspect.Parameter.empty else p.default)
            for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }


def register_regularizer(name: str, cls: type[Regularizer] | None = None, *, overwrite: bool = False):
    """Register a Regularizer subclass under `name`: `@register_regularizer("name")` or a plain call.

    Fails at registration when the class is not a Regularizer or its default_weight is not a number.
    A built-in takes its default weight from its declaration in pae_lab.catalog.
    """
    if cls is None:
        return lambda c: register_regularizer(name, c, overwrite=overwrite)
    if "default_weight" in REGULARIZERS.info(name) and isinstance(cls, type) and "default_weight" not in vars(cls):
        cls.default_weight = REGULARIZERS.info(name)["default_weight"]
    weight = getattr(cls, "default_weight", None)
    if isinstance(cls, type) and issubclass(cls, Regularizer) and (isinstance(weight, bool) or not isinstance(weight, (int, float))):
        raise RegistryError(f"regularizer {name!r}: default_weight must be a number, got {weight!r}")
    REGULARIZERS.register(name, cls, overwrite=overwrite)  # checks the name and the base class
    cls.name = name
    return cls


def build_regularizer(
    name: str, *, latent_channels: int | None = None, vfm_dim: int | None = None, **params: Any
) -> Regularizer:
    """Instantiate a registered regularizer with its keyword parameters; with `latent_channels`
    given, also run `setup` so its trainable parameters exist before the optimizer is built."""
    reg = REGULARIZERS.get(name)(**params)
    reg.name = name  # the name it was built under, even for a class registered twice
    if latent_channels is not None:
        reg.setup(latent_channels=latent_channels, vfm_dim=vfm_dim)
    return reg
