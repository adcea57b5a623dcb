"""Losses: reconstruction, perceptual distances, and the regularizer registry with its built-ins.

Importing this package registers the built-in regularizers (ssr, mcr, scr, vf, se) and
perceptual distances (effnet_lite0, lpips, l2).
"""
from pae_lab.losses.perceptual import PERCEPTUAL, PerceptualDistance, PerceptualUnavailable, build_perceptual, register_perceptual
from pae_lab.losses.reconstruction import reconstruction_loss, reconstruction_terms
from pae_lab.losses.regularizers import REGULARIZERS, RegContext, Regularizer, build_regularizer, register_regularizer

# Built-in regularizers register themselves on import, through register_regularizer.
from pae_lab.losses import mcr, scr, se, ssr, vf  # noqa: E402,F401  isort:skip

__all__ = [
    "PERCEPTUAL",
    "REGULARIZERS",
    "PerceptualDistance",
    "PerceptualUnavailable",
    "RegContext",
    "Regularizer",
    "build_perceptual",
    "build_regularizer",
    "reconstruction_loss",
    "reconstruction_terms",
    "register_perceptual",
    "register_regularizer",
]
