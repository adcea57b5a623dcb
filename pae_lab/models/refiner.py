"""The refined prior: a learned projection of raw VFM features to the latent's width, whose output
Z_T = P(H) is the frozen target SSR and SCR align the latent to.

Raw VFM features are too wide and spatially noisy to be good targets (method.md). P keeps what
a small ViT Q can map back to H (l_rep), and its token Gram matrix is pulled toward that of a
low-passed H (l_gram), so the targets carry clean spatial structure.

Choices where the paper is silent (all exposed as arguments):
- P is a 1x1 conv with bias; Q is Linear(latent_dim -> width) + fixed 2-D sin-cos positions +
  `depth` pre-norm TransformerEncoder layers (`heads` heads, MLP `mlp_ratio` * width, no
  dropout) + LayerNorm + Linear(width -> vfm_dim). The paper's Q has 4 layers; depth=2 is the
  CPU default.
- l_rep term: mean squared error over all elements; l_gram term: the SSR distance (cosine Gram
  of l2-normalised tokens, squared Frobenius / N^2, batch mean), so both live in O(1) ranges.
- Low-pass: H_ref = avgpool2(blur_sigma(bilinear_up2(H))), gaussian sigma = 2 * lowpass pixels of
  the 2x grid (= `lowpass` latent cells; 0.4 -> sigma 0.8 px), reflect padding; lowpass=0 skips
  the blur (the up/down pair alone is a mild smoothing).
- Z_T is not RMS-normalised: SSR and SCR compare directions only (cosines), so scale is moot.
- Balance: raw VFM channels have very different scales (EfficientNet block outputs reach O(10)),
  so the MSE term dwarfs the cosine Gram term (~10^4 : 1 on the embedded prior) and the Gram term
  barely acts. `standardize` gives every channel zero mean and unit variance over the training
  tokens first (the statistics are stored with the refiner); then MSE is O(1) and both terms act.
  The loss reports both weighted terms and their ratio (rep / gram) so an imbalance is visible.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pae_lab.models.tokens import gram_distance, tokens


def sincos_2d(h: int, w: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding [h*w, dim] (any grid size, no parameters)."""
    if dim % 4:
        raise ValueError(f"2-D sin-cos positions need a width divisible by 4, got {dim}")
    freq = 1.0 / (10000 ** (torch.arange(dim // 4, device=device, dtype=torch.float32) / (dim // 4)))
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32), torch.arange(w, device=device, dtype=torch.float32), indexing="ij"
    )
    ay, ax = ys.flatten()[:, None] * freq, xs.flatten()[:, None] * freq
    return torch.cat([ay.sin(), ay.cos(), ax.sin(), ax.cos()], dim=1).to(dtype or torch.float32)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable depthwise gaussian blur with reflect padding; sigma <= 0 returns x."""
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    radius = min(radius, min(x.shape[-2:]) - 1)  # reflect padding needs radius < size
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def lowpass_reference(h: torch.Tensor, lowpass: float = 0.4) -> torch.Tensor:
    """H_ref: upsample x2 (bilinear), gaussian blur with sigma = 2 * lowpass px, average-pool back."""
    up = F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False)
    return F.avg_pool2d(gaussian_blur(up, 2.0 * lowpass), 2)


class Refiner(nn.Module):
    """Projector P (VFM width -> latent width) and ViT deprojector Q (back), over a [B, D, h, w] grid."""

    def __init__(self, vfm_dim: int, latent_dim: int, depth: int = 2, heads: int = 4, width: int = 128, mlp_ratio: float = 2.0):
        super().__init__()
        if width % heads or width % 4:
            raise ValueError(f"refiner width {width} must be divisible by heads={heads} and by 4 (sin-cos positions)")
        self.vfm_dim, self.latent_dim, self.width = vfm_dim, latent_dim, width
        self.project = nn.Conv2d(vfm_dim, latent_dim, kernel_size=1)
        self.embed = nn.Linear(latent_dim, width)
        layer = nn.TransformerEncoderLayer(
            width, heads, dim_feedforward=int(mlp_ratio * width), dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vfm_dim)

    def deproject(self, z: torch.Tensor) -> torch.Tensor:
        """Q: [B, latent_dim, h, w] -> [B, vfm_dim, h, w]."""
        b, _, h, w = z.shape
        x = self.embed(tokens(z)) + sincos_2d(h, w, self.width, z.device, z.dtype)
        x = self.head(self.norm(self.blocks(x)))
        return x.transpose(1, 2).reshape(b, self.vfm_dim, h, w)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(P(H), Q(P(H)))."""
        if h.shape[1] != self.vfm_dim:
            raise ValueError(f"refiner was built for vfm_dim={self.vfm_dim} but the features have {h.shape[1]} channels")
        p = self.project(h)
        return p, self.deproject(p)

    @torch.no_grad()
    def targets(self, h: torch.Tensor) -> torch.Tensor:
        """Z_T = P(H), detached: what SSR and SCR align the latent to."""
        return self.project(h)


def channel_stats(feats: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std [1, D, 1, 1] over every token of a feature set [N, D, h, w]."""
    mean = feats.mean(dim=(0, 2, 3), keepdim=True)
    std = feats.std(dim=(0, 2, 3), keepdim=True).clamp_min(eps)
    return mean, std


def refine_loss(
    refiner: Refiner, h: torch.Tensor, l_rep: float = 1.0, l_gram: float = 1.0, lowpass: float = 0.4
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """l_rep * MSE(Q(P(H)), H) + l_gram * ||Gram(P(H)) - Gram(H_ref)||_F^2 / N^2 -> (total, detached terms:
    rep, gram, their weighted values and ratio = weighted rep / weighted gram)."""
    p, rec = refiner(h)
    rep = F.mse_loss(rec, h)
    gram = gram_distance(p, lowpass_reference(h, lowpass).detach())
    total = l_rep * rep + l_gram * gram
    w_rep, w_gram = (l_rep * rep).detach(), (l_gram * gram).detach()
    return total, {"rep": rep.detach(), "gram": gram.detach(), "rep_weighted": w_rep, "gram_weighted": w_gram,
                   "ratio": w_rep / w_gram.clamp_min(1e-12)}
