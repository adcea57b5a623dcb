"""Token views of a latent grid: the one place that says how [B, C, h, w] becomes N = h*w tokens.

SSR, SCR, VF and the refined prior all compare latents token by token; sharing these helpers keeps
their normalisation identical (and channels_last tensors work because nothing uses `.view`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def tokens(z: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] -> [B, N, C] with N = h*w in row-major grid order."""
    return z.flatten(2).transpose(1, 2)


def unit_tokens(z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """l2-normalised tokens [B, N, C]: Gram matrices of these are cosine similarities, scale-free."""
    return F.normalize(tokens(z), dim=-1, eps=eps)


def cosine_gram(z: torch.Tensor) -> torch.Tensor:
    """Token cosine-similarity matrix [B, N, N], entries in [-1, 1]."""
    t = unit_tokens(z)
    return t @ t.transpose(1, 2)


def gram_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||G_a - G_b||_F^2 / N^2 averaged over the batch, for two grids of the same size.

    Channel counts may differ (a Gram matrix is N x N whatever C is); grids must match.
    Each entry differs by at most 2, so the value lies in [0, 4].
    """
    if a.shape[0] != b.shape[0] or a.shape[2:] != b.shape[2:]:
        raise ValueError(
            f"Gram matrices need the same batch and token grid; got {tuple(a.shape)} vs {tuple(b.shape)}: "
            "resample the target to the latent grid first"
        )
    return (cosine_gram(a) - cosine_gram(b)).pow(2).mean()


def token_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-token cosine similarity [B, N] of two grids with the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"token cosine needs equal shapes; got {tuple(a.shape)} vs {tuple(b.shape)}")
    return F.cosine_similarity(tokens(a), tokens(b), dim=-1, eps=1e-8)
