"""The convolutional tokenizer whose latent manifold the regularizers shape.

The `conv` architecture: a small, CPU-sized stand-in for PAE's encoder/decoder that keeps PAE's
latent contract -- every token is RMS-normalised, so it lives on a sphere of radius sqrt(C). The
paper-faithful one is `pae` (pae_lab/models/pae.py). Training hyper-parameters (steps, batch, lr, ...) belong to the
orchestrator; this module only builds the network.

Shape rule: each entry of `channel_mult` is one resolution level ending in a stride-2
downsample, so the downsample factor is 2 ** len(channel_mult). `downsample` is stated
explicitly in the config (so a study reads clearly) and validated against that rule.
"""
from __future__ import annotations

import torch
from torch import nn

from pae_lab.architectures import ArchitectureConfig
from pae_lab.config.tokenizers import TokenizerConfig


def _group_norm(channels: int, groups: int) -> nn.Module:
    return nn.GroupNorm(min(groups, channels), channels)


# Lookup tables instead of if-chains; the config's Literal types keep it honest.
NORMS = {
    "group": _group_norm,
    "layer": lambda channels, groups: nn.GroupNorm(1, channels),
    "none": lambda channels, groups: nn.Identity(),
}
ACTIVATIONS = {"silu": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU}


def rms_normalize(z: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-token RMS normalisation over channels: each token then has l2 norm ~sqrt(C)."""
    return z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + eps)


class ResBlock(nn.Module):
    """Pre-norm residual block (norm, act, 3x3 conv, twice) with a 1x1 skip when widths differ."""

    def __init__(self, cin: int, cout: int, cfg: TokenizerConfig):
        super().__init__()
        norm, act = NORMS[cfg.norm], ACTIVATIONS[cfg.activation]
        self.body = nn.Sequential(
            norm(cin, cfg.norm_groups), act(), nn.Conv2d(cin, cout, 3, padding=1),
            norm(cout, cfg.norm_groups), act(), nn.Conv2d(cout, cout, 3, padding=1),
        )  # fmt: skip
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


def _level(cin: int, cout: int, cfg: TokenizerConfig) -> list[nn.Module]:
    """num_res_blocks blocks taking cin to cout (a 1x1 conv when there are no blocks)."""
    if cfg.num_res_blocks == 0:
        return [nn.Conv2d(cin, cout, 1)] if cin != cout else []
    return [ResBlock(cin if i == 0 else cout, cout, cfg) for i in range(cfg.num_res_blocks)]


class Upsample(nn.Module):
    """Nearest x2 then 3x3 conv: no checkerboard artefacts, unlike a transposed conv.

    The conv also changes the width (cin -> cout), so the full-resolution level never runs a
    conv at the wider width: this halves the decoder's most expensive layer.
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))


def conv_decoder(cfg: TokenizerConfig) -> nn.Sequential:
    """Latent [B, C, h, w] -> image [B, 3, h*f, w*f] in [-1, 1]: the conv decoder (also PAE's `conv` decoder)."""
    widths = [cfg.base_channels * m for m in cfg.channel_mult]
    norm, act = NORMS[cfg.norm], ACTIVATIONS[cfg.activation]
    dec: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, widths[-1], 3, padding=1), *_level(widths[-1], widths[-1], cfg)]
    cin = widths[-1]
    for w in reversed(widths):
        dec += [Upsample(cin, w), *_level(w, w, cfg)]
        cin = w
    dec += [norm(cin, cfg.norm_groups), act(), nn.Conv2d(cin, 3, 3, padding=1)]
    return nn.Sequential(*dec)


class TokenizerBase(nn.Module):
    """The latent contract every architecture shares: `config` with latent_channels and downsample."""

    config: ArchitectureConfig

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(C, h, w) of the latent of an image of the given size."""
        f = self.config.downsample
        if height % f or width % f:
            raise ValueError(f"image size {height}x{width} is not divisible by the downsample factor {f}")
        return self.config.latent_channels, height // f, width // f

    def forward(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x01)
        return z, self.decode(z)


class Tokenizer(TokenizerBase):
    """Conv encoder/decoder; `encode` puts every latent token on the sphere of radius sqrt(C)."""

    def __init__(self, config: TokenizerConfig | None = None, **overrides):
        super().__init__()
        cfg = config.model_copy(update=overrides) if config is not None else TokenizerConfig(**overrides)
        cfg = TokenizerConfig.model_validate(cfg.model_dump())  # re-validate the overrides
        self.config = cfg
        widths = [cfg.base_channels * m for m in cfg.channel_mult]
        norm, act = NORMS[cfg.norm], ACTIVATIONS[cfg.activation]

        enc: list[nn.Module] = [nn.Conv2d(3, cfg.base_channels, 3, padding=1)]
        cin = cfg.base_channels
        for w in widths:
            enc += _level(cin, w, cfg)
            enc.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
            cin = w
        enc += [*_level(cin, cin, cfg), norm(cin, cfg.norm_groups), act(), nn.Conv2d(cin, cfg.latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)

        self.decoder = conv_decoder(cfg)

    def encode(self, x01: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], [B, 3, H, W] -> RMS-normalised latent [B, C, H/f, W/f]."""
        return rms_normalize(self.encoder(x01 * 2.0 - 1.0), self.config.rms_eps)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent -> image in ~[0, 1], left unclamped so losses see (and correct) overshoot."""
        return self.decoder(z) * 0.5 + 0.5


def build_conv(config: TokenizerConfig) -> Tokenizer:
    return Tokenizer(config)
