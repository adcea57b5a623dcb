"""`pae`: the paper-faithful tokenizer (method.md): frozen VFM -> DAM fusion -> compressor -> RMS sphere -> decoder.

Encoder: the frozen VFM (any prior backend: the embedded EfficientNet-Lite0 by default, DINOv2 via
timm from a local weights file) gives tokens H_vfm on the latent grid. The Detail-Aware Modulator
(DAM) embeds pixel patches and runs `dam_depth` blocks of self-attention, cross-attention to
H_vfm and an MLP; its output modulates H_vfm through a zero-initialised linear layer, then a
LayerNorm: H = LN(H_vfm * (1 + gamma) + beta). At step 0 gamma = beta = 0, so training starts from
the VFM alone. `fusion` covers the paper's DAM ablation: `add` (H = LN(H_vfm + W h_dam), W zero
initialised), `concat` (H = LN(W [H_vfm, h_dam])) and `none` (no DAM). A compressor (linear,
attention block, 3x3 conv to latent_channels) and per-token RMS normalisation give z.
Decoder: a deprojector (linear) then a ViT pixel decoder (tokens -> f x f patches), or the conv
decoder of the `conv` architecture.

The VFM is kept outside the module tree: it is moved with the tokenizer, but never trained,
never in `parameters()` and never in a checkpoint (DINOv2-L would add 1.2 GB to each).
"""
from __future__ import annotations

from typing import Callable

import torch
from timm.layers import Mlp
from timm.models.vision_transformer import Block
from torch import nn

from pae_lab.models.tokenizer import TokenizerBase, conv_decoder, rms_normalize
from pae_lab.priors import build_prior
from pae_lab.config.tokenizers import PAEConfig, TokenizerConfig


def _zero_linear(cin: int, cout: int) -> nn.Linear:
    layer = nn.Linear(cin, cout)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class ScaleShift(nn.Module):
    """H_vfm * (1 + gamma) + beta, (gamma, beta) from a zero-initialised linear layer of the DAM tokens."""

    def __init__(self, dam: int, vfm: int):
        super().__init__()
        self.to_gamma_beta = _zero_linear(dam, 2 * vfm)

    def forward(self, h_vfm: torch.Tensor, h_dam: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.to_gamma_beta(h_dam).chunk(2, dim=-1)
        return h_vfm * (1 + gamma) + beta


class Add(nn.Module):
    """H_vfm + W h_dam with W zero-initialised: the residual-add ablation."""

    def __init__(self, dam: int, vfm: int):
        super().__init__()
        self.proj = _zero_linear(dam, vfm)

    def forward(self, h_vfm: torch.Tensor, h_dam: torch.Tensor) -> torch.Tensor:
        return h_vfm + self.proj(h_dam)


class Concat(nn.Module):
    """W [H_vfm, h_dam]: the concatenation ablation (not zero-initialised, so step 0 already mixes)."""

    def __init__(self, dam: int, vfm: int):
        super().__init__()
        self.proj = nn.Linear(vfm + dam, vfm)

    def forward(self, h_vfm: torch.Tensor, h_dam: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.cat([h_vfm, h_dam], dim=-1))


FUSIONS: dict[str, Callable[[int, int], nn.Module]] = {"scale_shift": ScaleShift, "add": Add, "concat": Concat}


def _tokens(fmap: torch.Tensor) -> torch.Tensor:
    return fmap.flatten(2).transpose(1, 2)


def _fmap(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    return tokens.transpose(1, 2).reshape(len(tokens), -1, *grid)


class PatchEmbed(nn.Module):
    """f x f pixel patches -> tokens, with a depthwise 3x3 conv as a resolution-free position code."""

    def __init__(self, patch: int, width: int):
        super().__init__()
        self.proj = nn.Conv2d(3, width, patch, stride=patch)
        self.pos = nn.Conv2d(width, width, 3, padding=1, groups=width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        return _tokens(h + self.pos(h))


class DAMBlock(nn.Module):
    """Self-attention over pixel tokens, cross-attention to the VFM tokens, MLP; all pre-norm residual."""

    def __init__(self, width: int, vfm_dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(width, heads, kdim=vfm_dim, vdim=vfm_dim, batch_first=True)
        self.mlp = Mlp(width, int(width * mlp_ratio))

    def forward(self, h: torch.Tensor, h_vfm: torch.Tensor) -> torch.Tensor:
        q = self.norm1(h)
        h = h + self.self_attn(q, q, q, need_weights=False)[0]
        h = h + self.cross_attn(self.norm2(h), h_vfm, h_vfm, need_weights=False)[0]
        return h + self.mlp(self.norm3(h))


class DAM(nn.Module):
    def __init__(self, cfg: PAEConfig, vfm_dim: int):
        super().__init__()
        self.embed = PatchEmbed(cfg.downsample, cfg.dam_width)
        self.blocks = nn.ModuleList(DAMBlock(cfg.dam_width, vfm_dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.dam_depth))

    def forward(self, x: torch.Tensor, h_vfm: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for block in self.blocks:
            h = block(h, h_vfm)
        return h


class Compressor(nn.Module):
    """Fused VFM tokens -> latent map: linear, one attention block, 3x3 conv to latent_channels."""

    def __init__(self, cfg: PAEConfig, vfm_dim: int):
        super().__init__()
        self.proj = nn.Linear(vfm_dim, cfg.compressor_width)
        self.block = Block(cfg.compressor_width, cfg.heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=True)
        self.conv = nn.Conv2d(cfg.compressor_width, cfg.latent_channels, 3, padding=1)

    def forward(self, h: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return self.conv(_fmap(self.block(self.proj(h)), grid))


class ViTDecoder(nn.Module):
    """Deprojector (linear + position conv), transformer blocks, linear to f x f x 3 pixels per token."""

    def __init__(self, cfg: PAEConfig):
        super().__init__()
        w, f = cfg.decoder_width, cfg.downsample
        self.deproject = nn.Linear(cfg.latent_channels, w)
        self.pos = nn.Conv2d(w, w, 3, padding=1, groups=w)
        self.blocks = nn.Sequential(*[Block(w, cfg.heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=True) for _ in range(cfg.decoder_depth)])
        self.norm = nn.LayerNorm(w)
        self.to_pixels = nn.Linear(w, 3 * f * f)
        self.patch = f

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        grid = tuple(z.shape[-2:])
        h = _fmap(self.deproject(_tokens(z)), grid)
        h = self.blocks(_tokens(h + self.pos(h)))
        pixels = _fmap(self.to_pixels(self.norm(h)), grid)  # [B, 3*f*f, g, g]
        return nn.functional.pixel_shuffle(pixels, self.patch)


def _conv_decoder(cfg: PAEConfig) -> nn.Module:
    levels = cfg.downsample.bit_length() - 1
    return conv_decoder(TokenizerConfig(base_channels=cfg.decoder_width, channel_mult=[1] * levels, latent_channels=cfg.latent_channels,
                                        downsample=cfg.downsample, num_res_blocks=cfg.decoder_depth))


DECODERS: dict[str, Callable[[PAEConfig], nn.Module]] = {"vit": ViTDecoder, "conv": _conv_decoder}


class PAETokenizer(TokenizerBase):
    """`encode` puts every token on the sphere of radius sqrt(C), like the `conv` architecture."""

    def __init__(self, config: PAEConfig | None = None, vfm: nn.Module | None = None):
        super().__init__()
        self.config = cfg = config or PAEConfig()
        prior = vfm if vfm is not None else build_prior(cfg.vfm.name, **cfg.vfm.params)
        object.__setattr__(self, "vfm", prior)  # outside the module tree: frozen, unsaved (see module doc)
        dim = prior.dim
        self.encoder = nn.ModuleDict({"norm": nn.LayerNorm(dim), "compressor": Compressor(cfg, dim)})
        if cfg.fusion != "none":
            self.encoder["dam"] = DAM(cfg, dim)
            self.encoder["fusion"] = FUSIONS[cfg.fusion](cfg.dam_width, dim)
        self.decoder = DECODERS[cfg.decoder](cfg)

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        self.vfm._apply(fn, recurse)  # device and dtype moves reach the frozen VFM too
        return self

    def vfm_tokens(self, x01: torch.Tensor) -> torch.Tensor:
        """Frozen VFM features on the latent grid as tokens [B, N, D] (no gradient)."""
        f = self.config.downsample
        return _tokens(self.vfm.features(x01, x01.shape[-1] // f)).float()

    def compress(self, h: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Fused tokens [B, N, D] -> RMS-normalised latent [B, C, g, g]."""
        return rms_normalize(self.encoder["compressor"](self.encoder["norm"](h), grid), self.config.rms_eps)

    def encode(self, x01: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], [B, 3, H, W] -> RMS-normalised latent [B, C, H/f, W/f]."""
        f = self.config.downsample
        grid = (x01.shape[-2] // f, x01.shape[-1] // f)
        h = self.vfm_tokens(x01)
        if "dam" in self.encoder:
            h = self.encoder["fusion"](h, self.encoder["dam"](x01 * 2.0 - 1.0, h))
        return self.compress(h, grid)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent -> image in ~[0, 1], unclamped (as for `conv`)."""
        return self.decoder(z) * 0.5 + 0.5


def build_pae(config: PAEConfig) -> PAETokenizer:
    return PAETokenizer(config)
