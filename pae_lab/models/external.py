"""`external`: any pretrained tokenizer under the same panel, through a small adapter registry.

An adapter turns `tokenizer.path` / `config` / `factory` / `params` into a module with
`encode(x01 [B,3,H,W] in [0,1]) -> z [B,C,H/f,W/f]` and `decode(z) -> images in ~[0,1]`.
Built-ins: `diffusers` (a diffusers autoencoder folder, the class read from its config.json:
AutoencoderKL, AutoencoderDC, AutoencoderRAE; `pae_lab.models.external_diffusers`), `ldm_kl` (an
LDM-format KL checkpoint + its YAML, rebuilt as a diffusers AutoencoderKL;
`pae_lab.models.external_ldm`), `torchscript` (a scripted module exporting `encode` and
`decode`), `state_dict` (a user's class `factory` plus a state-dict file) and `python` (a user's
`factory`, e.g. in a study plugin, returning a ready model). Register more with
`@register_adapter("name")`. A model may also offer `shipped_norm(channels) -> LatentNorm | None`:
the statistics its checkpoint ships, used with `latent_norm: checkpoint`.

External tokenizers are not trained: the tokenizer stage loads one, checks that its latent has
`latent_channels` channels on the S/`downsample` grid at the study's resolution S, and exports
latents; the manifold panel, generator and generation metrics then run as for a trained variant.
"""
from __future__ import annotations

import pkgutil
from pathlib import Path
from typing import Callable, Literal

import torch
from torch import nn

from pae_lab.models.latent_norm import LatentNorm
from pae_lab.models.tokenizer import TokenizerBase
from pae_lab.catalog import ADAPTERS
from pae_lab.config.tokenizers import ExternalConfig


Adapter = Callable[[ExternalConfig], nn.Module]


def register_adapter(name: str) -> Callable[[Adapter], Adapter]:
    """`@register_adapter("name")` on `(ExternalConfig) -> module with encode(x01) and decode(z)`."""
    return ADAPTERS.decorator(name)


def local_path(cfg: ExternalConfig, kind: Literal["file", "folder"], key: str = "path") -> Path:
    """The local file or folder that `tokenizer.<key>` names, or one line saying what is missing."""
    value = getattr(cfg, key)
    if not value:
        raise ValueError(f"tokenizer.{key}: adapter {cfg.adapter!r} needs a local {kind}; set tokenizer.{key}")
    path = Path(value).expanduser()
    if not (path.is_dir() if kind == "folder" else path.is_file()):
        raise FileNotFoundError(f"tokenizer.{key}: {kind} {path} does not exist (adapter {cfg.adapter!r})")
    return path


def _factory(cfg: ExternalConfig) -> Callable[..., nn.Module]:
    if not cfg.factory or ":" not in cfg.factory:
        raise ValueError(f"tokenizer.factory: adapter {cfg.adapter!r} needs `module:callable`, got {cfg.factory!r}")
    try:
        return pkgutil.resolve_name(cfg.factory)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"tokenizer.factory: cannot import {cfg.factory!r}: {exc}") from None


@register_adapter("torchscript")
def torchscript_adapter(cfg: ExternalConfig) -> nn.Module:
    model = torch.jit.load(str(local_path(cfg, "file")), map_location="cpu")
    missing = [m for m in ("encode", "decode") if not hasattr(model, m)]
    if missing:
        raise ValueError(f"tokenizer.path: TorchScript module {cfg.path} exports no {', '.join(missing)} "
                         "(mark them @torch.jit.export before scripting)")
    return model


@register_adapter("state_dict")
def state_dict_adapter(cfg: ExternalConfig) -> nn.Module:
    path = local_path(cfg, "file")
    model = _factory(cfg)(**cfg.params)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


@register_adapter("python")
def python_adapter(cfg: ExternalConfig) -> nn.Module:
    extra = {"path": str(local_path(cfg, "file" if Path(cfg.path).expanduser().is_file() else "folder"))} if cfg.path else {}
    return _factory(cfg)(**cfg.params, **extra)


class ExternalTokenizer(TokenizerBase):
    """A frozen pretrained model; `probe(resolution)` checks its shape contract once, when the stage loads it."""

    def __init__(self, config: ExternalConfig, model: nn.Module):
        super().__init__()
        self.config = config
        self.model = model.eval()
        for p in model.parameters():  # not requires_grad_(): ScriptModules lack it
            p.requires_grad_(False)

    @property
    def source(self) -> str:
        return f"the {self.config.adapter} model at {self.config.path or self.config.factory}"

    def probe(self, resolution: int, device: torch.device | str = "cpu") -> None:
        """Encode one image at the study's resolution: a fixed-grid encoder (RAE) only answers there."""
        cfg = self.config
        expected = self.latent_shape(resolution, resolution)
        with torch.no_grad():
            shape = tuple(self.encode(torch.zeros(1, 3, resolution, resolution, device=device)).shape[1:])
        if shape != expected:
            raise ValueError(f"tokenizer: {self.source} maps a {resolution}x{resolution} image (data.resolution="
                             f"{resolution}) to a latent of shape {shape}; tokenizer.latent_channels={cfg.latent_channels} "
                             f"and tokenizer.downsample={cfg.downsample} expect {expected}")

    def shipped_norm(self) -> LatentNorm | None:
        """With `latent_norm: checkpoint`, the statistics the checkpoint ships; None: fit them (the default)."""
        cfg = self.config
        if cfg.latent_norm == "fit":
            return None
        if cfg.latent_stats:
            return LatentNorm.from_file(local_path(cfg, "file", "latent_stats"), cfg.latent_channels)
        shipped = getattr(self.model, "shipped_norm", None)
        norm = shipped(cfg.latent_channels) if shipped is not None else None
        if norm is None:
            raise ValueError(f"tokenizer.latent_norm: 'checkpoint', but {self.source} ships no latent statistics; "
                             "name its file with tokenizer.latent_stats, or set latent_norm: fit")
        return norm

    def train(self, mode: bool = True) -> "ExternalTokenizer":
        return super().train(False)  # frozen: dropout / batch-norm stay in inference mode

    def encode(self, x01: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x01)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z)


def build_external(config: ExternalConfig) -> ExternalTokenizer:
    return ExternalTokenizer(config, ADAPTERS.get(config.adapter)(config))
