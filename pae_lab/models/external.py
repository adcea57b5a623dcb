"""`external`: any pretrained tokenizer under the same panel, through a small adapter registry.

An adapter turns `tokenizer.path` / `factory` / `params` into a module with
`encode(x01 [B,3,H,W] in [0,1]) -> z [B,C,H/f,W/f]` and `decode(z) -> images in ~[0,1]`.
Built-ins: `diffusers` (an AutoencoderKL folder, e.g. SD-VAE; needs the `[diffusers]` extra; the
latent is the posterior mode, unscaled: the generator normalises per channel anyway),
`torchscript` (a scripted module exporting `encode` and `decode`), `state_dict` (a user's class
`factory` plus a state-dict file) and `python` (a user's `factory`, e.g. in a study plugin,
returning a ready model). Register more with `@register_adapter("name")`.

External tokenizers are not trained: the tokenizer stage loads one, checks that its latent has
`latent_channels` channels on the S/`downsample` grid, and exports latents; the manifold panel,
generator and generation metrics then run as for a trained variant.
"""
from __future__ import annotations

import pkgutil
from pathlib import Path
from typing import Callable, Literal

import torch
from torch import nn

from pae_lab.models.tokenizer import TokenizerBase
from pae_lab.catalog import ADAPTERS
from pae_lab.config.tokenizers import ExternalConfig


Adapter = Callable[[ExternalConfig], nn.Module]


def register_adapter(name: str) -> Callable[[Adapter], Adapter]:
    """`@register_adapter("name")` on `(ExternalConfig) -> module with encode(x01) and decode(z)`."""
    return ADAPTERS.decorator(name)


def _path(cfg: ExternalConfig, kind: Literal["file", "folder"]) -> Path:
    if not cfg.path:
        raise ValueError(f"tokenizer.path: adapter {cfg.adapter!r} needs a local {kind}; set tokenizer.path")
    path = Path(cfg.path).expanduser()
    if not (path.is_dir() if kind == "folder" else path.is_file()):
        raise FileNotFoundError(f"tokenizer.path: {kind} {path} does not exist (adapter {cfg.adapter!r})")
    return path


def _factory(cfg: ExternalConfig) -> Callable[..., nn.Module]:
    if not cfg.factory or ":" not in cfg.factory:
        raise ValueError(f"tokenizer.factory: adapter {cfg.adapter!r} needs `module:callable`, got {cfg.factory!r}")
    try:
        return pkgutil.resolve_name(cfg.factory)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"tokenizer.factory: cannot import {cfg.factory!r}: {exc}") from None


class DiffusersVAE(nn.Module):
    """AutoencoderKL seen through the pae-lab contract: images in [0, 1], the posterior mode as latent."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def encode(self, x01: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(x01 * 2.0 - 1.0).latent_dist.mode()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z).sample * 0.5 + 0.5


@register_adapter("diffusers")
def diffusers_adapter(cfg: ExternalConfig) -> nn.Module:
    path = _path(cfg, "folder")
    try:
        from diffusers import AutoencoderKL
    except ImportError:
        raise ImportError("tokenizer.adapter: 'diffusers' needs the optional extra: pip install 'pae-lab[diffusers]'") from None
    return DiffusersVAE(AutoencoderKL.from_pretrained(str(path), local_files_only=True, **cfg.params))


@register_adapter("torchscript")
def torchscript_adapter(cfg: ExternalConfig) -> nn.Module:
    model = torch.jit.load(str(_path(cfg, "file")), map_location="cpu")
    missing = [m for m in ("encode", "decode") if not hasattr(model, m)]
    if missing:
        raise ValueError(f"tokenizer.path: TorchScript module {cfg.path} exports no {', '.join(missing)} "
                         "(mark them @torch.jit.export before scripting)")
    return model


@register_adapter("state_dict")
def state_dict_adapter(cfg: ExternalConfig) -> nn.Module:
    path = _path(cfg, "file")
    model = _factory(cfg)(**cfg.params)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


@register_adapter("python")
def python_adapter(cfg: ExternalConfig) -> nn.Module:
    extra = {"path": str(_path(cfg, "file" if Path(cfg.path).expanduser().is_file() else "folder"))} if cfg.path else {}
    return _factory(cfg)(**cfg.params, **extra)


class ExternalTokenizer(TokenizerBase):
    """A frozen pretrained model with the shape contract checked once, at load time."""

    def __init__(self, config: ExternalConfig, model: nn.Module):
        super().__init__()
        self.config = config
        self.model = model.eval()
        for p in model.parameters():  # not requires_grad_(): ScriptModules lack it
            p.requires_grad_(False)
        side = 2 * config.downsample
        with torch.no_grad():
            shape = tuple(self.encode(torch.zeros(1, 3, side, side)).shape)
        if shape != (1, config.latent_channels, 2, 2):
            raise ValueError(f"tokenizer: the {config.adapter} model at {config.path or config.factory} maps a {side}x{side} "
                             f"image to a latent of shape {shape[1:]}; latent_channels={config.latent_channels} and "
                             f"downsample={config.downsample} expect {(config.latent_channels, 2, 2)}")

    def train(self, mode: bool = True) -> "ExternalTokenizer":
        return super().train(False)  # frozen: dropout / batch-norm stay in inference mode

    def encode(self, x01: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x01)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z)


def build_external(config: ExternalConfig) -> ExternalTokenizer:
    return ExternalTokenizer(config, ADAPTERS.get(config.adapter)(config))
