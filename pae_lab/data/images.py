"""Pictures people look at: image grids and latents rendered as RGB by PCA."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from analysis.tensors import to_uint8
from pae_lab.fsutil import atomic_write


def save_grid(images01: torch.Tensor, path: Path, nrow: int = 8, scale: int = 2) -> Path:
    """A grid of [N, 3, H, W] images in [0, 1], upscaled so small images stay visible."""
    imgs = to_uint8(images01.detach().cpu()).numpy()
    n, c, h, w = imgs.shape
    rows = (n + nrow - 1) // nrow
    canvas = np.full((rows * (h + 2) + 2, nrow * (w + 2) + 2, 3), 255, dtype=np.uint8)
    for i, img in enumerate(imgs):
        r, col = divmod(i, nrow)
        canvas[2 + r * (h + 2): 2 + r * (h + 2) + h, 2 + col * (w + 2): 2 + col * (w + 2) + w] = img.transpose(1, 2, 0)
    pil = Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST)
    return atomic_write(Path(path).with_suffix(".png"), lambda p: pil.save(p, format="PNG"))


def latent_pca_rgb(latents: torch.Tensor) -> torch.Tensor:
    """Project every token on the set's top-3 principal directions: [N, C, h, w] -> [N, 3, h, w] in [0, 1];
    a latent of fewer than 3 channels (a narrow baseline of the width arm) leaves the other colours 0."""
    n, c, h, w = latents.shape
    tokens = latents.detach().float().permute(0, 2, 3, 1).reshape(-1, c)
    tokens = tokens - tokens.mean(0)
    _, _, v = torch.pca_lowrank(tokens, q=min(3, c), center=False)
    proj = tokens @ v[:, :3]
    lo, hi = proj.quantile(0.01, dim=0), proj.quantile(0.99, dim=0)
    proj = ((proj - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
    proj = torch.nn.functional.pad(proj, (0, 3 - proj.shape[1]))
    return proj.reshape(n, h, w, -1).permute(0, 3, 1, 2)


def side_by_side(originals: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """Interleave rows: originals on odd rows, their reconstructions below."""
    pairs = torch.stack([originals, reconstructions.clamp(0, 1)], dim=1)
    return pairs.flatten(0, 1)
