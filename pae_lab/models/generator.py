"""The downstream latent generator: a small class-conditional DiT/SiT over tokenizer latents.

Scaled-down LightningDiT/SiT: conv patch embedding, fixed 2-D sin-cos positions, adaLN-Zero
blocks conditioned on (timestep + label) embeddings, a "null" label for classifier-free guidance.
It predicts the flow-matching velocity (pae_lab.generation.flow). Zero-initialised modulations
and output layer make every block the identity and the output zero at step 0, as in DiT.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from pae_lab.config.schema import GeneratorConfig


def sincos_1d(dim: int, positions: torch.Tensor, max_period: float = 10000.0) -> torch.Tensor:
    """[N] positions -> [N, dim] embedding: cos on the first half, sin on the second."""
    dtype = positions.dtype if positions.is_floating_point() else torch.float32
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) / half * torch.arange(half, dtype=dtype, device=positions.device))
    args = positions.to(dtype)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb.float()


def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """[grid*grid, dim] fixed positions, row-major: half the channels encode y, half x (as MAE/DiT)."""
    if dim % 4:
        raise ValueError(f"2-D sin-cos positions need a width divisible by 4, got {dim}")
    coords = torch.arange(grid, dtype=torch.float64)
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    return torch.cat([sincos_1d(dim // 2, ys.flatten()), sincos_1d(dim // 2, xs.flatten())], dim=1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class TimestepEmbedder(nn.Module):
    """t in [0, 1] -> width. t is scaled by 1000 so the sinusoid frequencies resolve the unit interval."""

    def __init__(self, width: int, freq_dim: int = 256, t_scale: float = 1000.0):
        super().__init__()
        self.freq_dim, self.t_scale = freq_dim, t_scale
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        freqs = sincos_1d(self.freq_dim, t.float() * self.t_scale)
        return self.mlp(freqs.to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Class labels -> width, with one extra row for the "null" (unconditional) label.

    During training each label is replaced by the null label with probability `dropout`, which
    teaches the unconditional branch that classifier-free guidance needs.
    """

    def __init__(self, num_classes: int, width: int, dropout: float):
        super().__init__()
        self.num_classes, self.dropout = num_classes, dropout
        self.table = nn.Embedding(num_classes + 1, width)

    @property
    def null_class(self) -> int:
        return self.num_classes

    def drop(self, y: torch.Tensor) -> torch.Tensor:
        mask = torch.rand(y.shape, device=y.device) < self.dropout
        return torch.where(mask, torch.full_like(y, self.null_class), y)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.training and self.dropout > 0:
            y = self.drop(y)
        return self.table(y)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class DiTBlock(nn.Module):
    """Pre-norm attention + MLP, each gated and modulated by the conditioning (adaLN-Zero)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    def __init__(self, width: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.linear = nn.Linear(width, out_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


class LatentDiT(nn.Module):
    """forward(x [B,C,h,w], t [B] in [0,1], y [B] long) -> velocity [B,C,h,w]."""

    def __init__(self, in_channels: int, grid: int, patch: int = 1, width: int = 128, depth: int = 4,
                 heads: int = 4, mlp_ratio: float = 4.0, num_classes: int = 10, class_dropout: float = 0.1):
        super().__init__()
        if grid % patch:
            raise ValueError(f"latent grid {grid} is not divisible by patch {patch}; pick a patch that divides it")
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.in_channels, self.grid, self.patch = in_channels, grid, patch
        self.tokens_per_side = grid // patch
        self.patch_embed = nn.Conv2d(in_channels, width, kernel_size=patch, stride=patch)
        self.register_buffer("pos_embed", sincos_2d(width, self.tokens_per_side)[None], persistent=False)
        self.t_embed = TimestepEmbedder(width)
        self.y_embed = LabelEmbedder(num_classes, width, class_dropout)
        self.blocks = nn.ModuleList(DiTBlock(width, heads, mlp_ratio) for _ in range(depth))
        self.final = FinalLayer(width, patch * patch * in_channels)
        self._init_weights()

    @property
    def null_class(self) -> int:
        """The label index meaning "no class" (classifier-free guidance's unconditional branch)."""
        return self.y_embed.null_class

    @property
    def num_classes(self) -> int:
        return self.y_embed.num_classes

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        nn.init.normal_(self.y_embed.table.weight, std=0.02)
        for layer in (self.t_embed.mlp[0], self.t_embed.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        for ada in [b.ada[-1] for b in self.blocks] + [self.final.ada[-1], self.final.linear]:
            nn.init.zeros_(ada.weight)
            nn.init.zeros_(ada.bias)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, n*n, p*p*C] -> [B, C, n*p, n*p]."""
        b, n, p, c = tokens.shape[0], self.tokens_per_side, self.patch, self.in_channels
        x = tokens.view(b, n, n, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, c, n * p, n * p)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != (self.in_channels, self.grid, self.grid):
            raise ValueError(f"LatentDiT expects latents [B, {self.in_channels}, {self.grid}, {self.grid}], "
                             f"got {tuple(x.shape)}")
        h = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        c = self.t_embed(t.expand(x.shape[0])) + self.y_embed(y)
        for block in self.blocks:
            h = block(h, c)
        return self.unpatchify(self.final(h, c))


def build_generator(cfg: "GeneratorConfig", in_channels: int, grid: int, num_classes: int) -> LatentDiT:
    """The model a `generator:` block describes, for latents [B, in_channels, grid, grid]."""
    return LatentDiT(in_channels, grid, patch=cfg.patch, width=cfg.width, depth=cfg.depth, heads=cfg.heads,
                     mlp_ratio=cfg.mlp_ratio, num_classes=num_classes, class_dropout=cfg.class_dropout)
