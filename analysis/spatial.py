"""Spatial structure of latents: SSC (the paper's metric) and the mask-free near-minus-far coherence."""
from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from analysis.clustering import ami_geometric, nmi_geometric, spectral_cluster, token_affinity
from analysis.panel_config import DEFAULT_SSC_SIGMA
from analysis.result import MetricResult, summarize

# sigma is a kernel bandwidth on l2-normalised tokens: exp(cos / sigma) is proportional to
# exp(-||z_i - z_j||^2 / (2 sigma)). 0.1 means two tokens 25 degrees apart (cos 0.9) keep
# exp(-1) of the weight of identical ones, sharp enough to separate objects, while random
# 32-channel tokens (cos spread ~0.18) still form a connected graph. The paper does not say.


def downsample_segments(
    segments: Tensor, size: tuple[int, int], mode: Literal["majority", "nearest"] = "majority"
) -> Tensor:
    """[N, H, W] integer segment ids -> [N, h, w] on the latent grid.

    "majority" gives each latent cell the id covering most of its pixels (ties: the smallest id);
    "nearest" samples one pixel per cell.
    """
    if segments.dim() != 3:
        raise ValueError(f"segments must be [N, H, W] integer ids, got shape {tuple(segments.shape)}")
    if mode == "nearest":
        return F.interpolate(segments[:, None].double(), size=size, mode="nearest")[:, 0].long()
    if mode != "majority":
        raise ValueError(f"unknown downsample mode {mode!r}; use 'majority' or 'nearest'")
    _, hh, ww = segments.shape
    cell = ((torch.arange(hh) * size[0] // hh)[:, None] * size[1] + torch.arange(ww) * size[1] // ww).flatten()
    out = []
    for seg in segments:  # each pixel votes for the latent cell it falls in
        ids, inverse = torch.unique(seg.flatten(), return_inverse=True)
        votes = torch.bincount(cell * len(ids) + inverse, minlength=size[0] * size[1] * len(ids))
        out.append(ids[votes.view(size[0] * size[1], len(ids)).argmax(1)].view(size))
    return torch.stack(out)


def ssc(
    latents: Tensor,
    segments: Tensor,
    sigma: float = DEFAULT_SSC_SIGMA,
    k: int | None = None,
    seed: int = 0,
    *,
    downsample: Literal["majority", "nearest"] = "majority",
    ignore_index: int | None = None,
    n_init: int = 4,
    chunk: int = 64,
) -> MetricResult:
    """Spatial structure coherence: NMI between a spectral clustering of the tokens and the segments.

    Per image: affinity exp(<z_i, z_j> / sigma) of l2-normalised tokens (A_ii = 0), NJW spectral
    clustering into k groups (k = distinct segment ids on the latent grid unless given), NMI with
    geometric normalisation against those ids. Images with fewer than two segments on the grid
    are skipped and counted. Tokens labelled `ignore_index` (e.g. void) are clustered as one
    more region (they count towards k) but left out of the NMI. The extra `ami` is the same score
    corrected for chance (about 0 for a random partition, where NMI is not): results.csv's `ssc_ami`;
    `ami_se` its standard error over the scored images (how far another draw of images moves it);
    `items["ami"]` the per-image AMI (NaN for a skipped image), for paired comparisons of two latents.
    Tokens with no information score about 0 when they differ (noise) but about 0.02 on the embedded
    texture scenes when they are all equal: a uniform affinity's eigenvectors are arbitrary, so rounding
    picks the partition; why it lands a little above 0 is not known.
    """
    if latents.dim() != 4:
        raise ValueError(f"latents must be [N, C, h, w], got shape {tuple(latents.shape)}")
    if k is not None and k < 2:
        raise ValueError(f"k must be >= 2 (or None for the number of segments per image), got {k}")
    if len(latents) != len(segments):
        raise ValueError(f"{len(latents)} latents but {len(segments)} segment maps; pass one map per image")
    n, _, h, w = latents.shape
    grid = downsample_segments(segments.cpu(), (h, w), downsample).reshape(n, h * w).numpy()
    valid = grid != ignore_index if ignore_index is not None else np.ones_like(grid, dtype=bool)
    n_segments = [len(np.unique(g[v])) for g, v in zip(grid, valid)]
    ks = [min(k, h * w) if k is not None else len(np.unique(g)) for g in grid]
    keep = [i for i in range(n) if n_segments[i] >= 2]

    tokens = latents.detach().flatten(2).transpose(1, 2).double().cpu().numpy()  # [N, T, C]
    scores: dict[int, float] = {}
    adjusted: dict[int, float] = {}
    for kk in sorted({ks[i] for i in keep}):  # one batched k-means per distinct k
        group = [i for i in keep if ks[i] == kk]
        for start in range(0, len(group), chunk):
            idx = group[start : start + chunk]
            labels = spectral_cluster(token_affinity(tokens[idx], sigma), kk, n_init=n_init, seed=seed)
            for lab, i in zip(labels, idx):
                scores[i] = nmi_geometric(lab[valid[i]], grid[i][valid[i]])
                adjusted[i] = ami_geometric(lab[valid[i]], grid[i][valid[i]])

    protocol = {
        "metric": "ssc", "n_images": n, "n_scored": len(keep), "n_skipped": n - len(keep),
        "grid": [h, w], "sigma": sigma, "k": "segments-per-image" if k is None else k,
        "downsample": downsample, "ignore_index": ignore_index, "clustering": f"njw-spectral+kmeans(n_init={n_init})",
        "nmi": "geometric", "ami": "adjusted for chance (sklearn, geometric)", "seed": seed,
    }
    ami = np.array([adjusted[i] for i in keep])
    result = summarize([scores[i] for i in keep], protocol, ami=float(ami.mean()) if keep else float("nan"),
                       ami_se=float(ami.std(ddof=1) / np.sqrt(len(ami))) if len(ami) > 1 else float("nan"))
    return replace(result, items={"ami": np.array([adjusted.get(i, np.nan) for i in range(n)])})


def _grid_distance(h: int, w: int) -> Tensor:
    """[T, T] Chebyshev distance between token positions of an h x w grid."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    return torch.maximum((ys[:, None] - ys[None]).abs(), (xs[:, None] - xs[None]).abs())


def spatial_coherence(latents: Tensor, near: int = 1, far_min: int | None = None) -> MetricResult:
    """Mask-free spatial coherence (iREPA's LDS): mean cosine of near token pairs minus far pairs.

    Near: Chebyshev distance 1..`near`; far: distance >= `far_min` (default: half the larger grid
    side, at least near + 1). Per image, then averaged. Higher means tokens vary smoothly in space.
    """
    if latents.dim() != 4:
        raise ValueError(f"latents must be [N, C, h, w], got shape {tuple(latents.shape)}")
    _, _, h, w = latents.shape
    far_min = far_min if far_min is not None else max(near + 1, max(h, w) // 2)
    dist = _grid_distance(h, w)
    near_mask, far_mask = (dist >= 1) & (dist <= near), dist >= far_min
    if not near_mask.any() or not far_mask.any():
        raise ValueError(f"a {h}x{w} grid has no pairs with near={near}, far_min={far_min}; lower far_min")
    z = F.normalize(latents.detach().flatten(2).transpose(1, 2).double().cpu(), dim=-1)
    cos = z @ z.transpose(1, 2)
    near_cos, far_cos = cos[:, near_mask].mean(1), cos[:, far_mask].mean(1)
    protocol = {"metric": "spatial_coherence", "n_images": len(latents), "grid": [h, w], "near": near, "far_min": far_min}
    return summarize(
        (near_cos - far_cos).numpy(), protocol,
        near=float(near_cos.mean()), far=float(far_cos.mean()),
    )
