"""The `diffusers` adapter: a saved diffusers autoencoder folder, its class read from config.json.

`diffusers.AutoModel` builds whichever class `_class_name` names; the `diffusers_classes` registry
(`pae-lab registry diffusers_classes`) says how each one meets the pae-lab contract (its image
range, whether its own `encode` already applies the checkpoint's latent statistics, the extra it
needs). A new class is one `register_diffusers_class` call, a plugin's too. Needs the
`[diffusers]` extra; AutoencoderRAE also `[rae]` (transformers).
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pae_lab.catalog import DIFFUSERS_CLASSES
from pae_lab.config.tokenizers import ExternalConfig
from pae_lab.models.external import local_path, register_adapter
from pae_lab.models.latent_norm import LatentNorm
from pae_lab.registry import RegistryError


@dataclass(frozen=True)
class DiffusersClass:
    """`signed`: takes and returns images in [-1, 1] (else [0, 1]). `scales_inside`: its `encode` already
    normalises the latent with the shipped statistics (so `latent_norm: checkpoint` adds nothing).
    `needs`: an importable module beyond diffusers, and the pae-lab extra that brings it."""

    signed: bool
    scales_inside: bool = False
    needs: tuple[str, str] | None = None


def register_diffusers_class(name: str, convention: DiffusersClass) -> None:
    """How the diffusers class `name` (a config.json `_class_name`) is read by the `diffusers` adapter."""
    if not isinstance(convention, DiffusersClass):
        raise RegistryError(f"diffusers autoencoder class {name!r}: give a DiffusersClass, got {convention!r}")
    DIFFUSERS_CLASSES.register(name, convention)


register_diffusers_class("AutoencoderKL", DiffusersClass(signed=True))  # SD-VAE, FLUX VAE
register_diffusers_class("AutoencoderDC", DiffusersClass(signed=True))  # DC-AE: `.latent`, no posterior
# RAE resizes [0, 1] images to its encoder's input size (fixed token grid) and applies the ImageNet
# mean/std itself; its encode applies latents_mean/std and scaling_factor, its decode undoes them.
register_diffusers_class("AutoencoderRAE", DiffusersClass(signed=False, scales_inside=True,
                                                          needs=("transformers", "rae")))


def latent_of(encoded: Any) -> torch.Tensor:
    """The latent of a diffusers encoder output: the posterior's mode (KL), else `.latent` (DC-AE, RAE)."""
    dist = getattr(encoded, "latent_dist", None)
    return dist.mode() if dist is not None else encoded.latent


class DiffusersAutoencoder(nn.Module):
    """A diffusers autoencoder seen through the pae-lab contract: images in [0, 1] at the grid x downsample size."""

    def __init__(self, vae: nn.Module, convention: DiffusersClass, downsample: int, origin: str,
                 scale: tuple[float, float] | None = None):
        super().__init__()
        self.vae, self.convention, self.downsample, self.origin = vae, convention, downsample, origin
        self.scale = scale  # (scaling_factor, shift_factor) the checkpoint ships, if any

    def encode(self, x01: torch.Tensor) -> torch.Tensor:
        return latent_of(self.vae.encode(x01 * 2.0 - 1.0 if self.convention.signed else x01))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = self.vae.decode(z).sample
        x = x * 0.5 + 0.5 if self.convention.signed else x
        side = (z.shape[-2] * self.downsample, z.shape[-1] * self.downsample)
        return x if x.shape[-2:] == side else F.interpolate(x, size=side, mode="bicubic", align_corners=False)

    def shipped_norm(self, channels: int) -> LatentNorm | None:
        if self.convention.scales_inside:
            return LatentNorm((0.0,) * channels, (1.0,) * channels,
                              f"checkpoint: applied inside {type(self.vae).__name__}.encode ({self.origin})")
        if self.scale is None:
            return None
        factor, shift = self.scale
        return LatentNorm.from_scale(channels, factor, shift,
                                     f"checkpoint: scaling_factor={factor}, shift_factor={shift} ({self.origin})")


def shipped_scale(config: dict[str, Any]) -> tuple[float, float] | None:
    """(scaling_factor, shift_factor or 0) of a diffusers config, or None when it names no scaling factor."""
    if config.get("scaling_factor") is None:
        return None
    return float(config["scaling_factor"]), float(config.get("shift_factor") or 0.0)


def import_diffusers(adapter: str):
    try:
        import diffusers
    except ImportError:
        raise ImportError(f"tokenizer.adapter: {adapter!r} needs the optional extra: pip install 'pae-lab[diffusers]'") from None
    return diffusers


def _convention(folder: Path) -> DiffusersClass:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"tokenizer.path: {config_file} does not exist (adapter 'diffusers' reads the class from it)")
    name = json.loads(config_file.read_text()).get("_class_name")
    if name not in DIFFUSERS_CLASSES:
        raise ValueError(f"tokenizer.path: {config_file} has _class_name={name!r}; the diffusers adapter reads "
                         f"{', '.join(DIFFUSERS_CLASSES.names())} (register_diffusers_class adds one)")
    convention = DIFFUSERS_CLASSES.get(name)
    if convention.needs and importlib.util.find_spec(convention.needs[0]) is None:
        module, extra = convention.needs
        raise ImportError(f"tokenizer.path: {folder} holds an {name}, which needs {module}: pip install 'pae-lab[{extra}]'")
    return convention


@register_adapter("diffusers")
def diffusers_adapter(cfg: ExternalConfig) -> nn.Module:
    folder = local_path(cfg, "folder")
    diffusers = import_diffusers(cfg.adapter)
    convention = _convention(folder)
    vae = diffusers.AutoModel.from_pretrained(str(folder), local_files_only=True, **cfg.params)
    return DiffusersAutoencoder(vae, convention, cfg.downsample, f"{folder / 'config.json'}", shipped_scale(vae.config))
