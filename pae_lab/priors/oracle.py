""""oracle": a positive-control prior built from the dataset's own annotations, never from pixels.

Why: a miniature can only show that SSR / SCR help when the teacher is better than what the
tokenizer finds alone. On the embedded scenes the pretrained prior is not (its refined target has
lower SSC and GSQ than the baseline latent), so this prior gives the regularizers a teacher that
must beat it: each token's feature is
- the area fractions of the instance segments covering that latent cell, embedded by fixed random
  orthonormal rows (unit rows when segment_dim < max_segments) (`segment_dim` channels): tokens of one object share a direction;
- plus `semantic_weight` times the one-hot image class on every token (`num_classes` channels).
It reads labels and segments, so it is a control for the platform (does it detect an effect
that must exist?), named "oracle" everywhere, and never a default: real data has no oracle.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pae_lab.data.imageset import ImageSet
from pae_lab.priors.base import Prior
from pae_lab.priors.registry import register_prior


class OraclePrior(Prior):
    """Features from an ImageSet's segments and labels (`annotated_features`); `feature_map` refuses."""

    needs_annotations = True

    def __init__(self, num_classes: int = 8, max_segments: int = 8, segment_dim: int = 16,
                 semantic_weight: float = 1.0, seed: int = 0):
        if segment_dim < 1 or max_segments < 1 or num_classes < 1:
            raise ValueError(f"oracle: num_classes, max_segments and segment_dim must be >= 1, got "
                             f"{num_classes}, {max_segments}, {segment_dim}")
        super().__init__("oracle", segment_dim + num_classes)
        gen = torch.Generator().manual_seed(seed)
        rows = torch.randn(max_segments, segment_dim, generator=gen)
        if segment_dim >= max_segments:  # orthonormal rows: different segments are orthogonal
            rows = torch.linalg.qr(rows.T)[0].T
        self.register_buffer("embed", torch.nn.functional.normalize(rows, dim=1).contiguous())
        self.num_classes, self.max_segments, self.semantic_weight = num_classes, max_segments, float(semantic_weight)

    def feature_map(self, x01: torch.Tensor) -> torch.Tensor:
        raise TypeError("the oracle prior is computed from labels and segments: call annotated_features(image_set, grid)")

    @torch.no_grad()
    def annotated_features(self, images: ImageSet, grid: int) -> np.ndarray:
        """float16 [N, segment_dim + num_classes, grid, grid]."""
        if images.segments is None:
            raise ValueError("prior 'oracle' needs a dataset with segments (e.g. scenes); this one has none")
        seg = torch.from_numpy(images.segments)
        if int(seg.max()) >= self.max_segments or int(images.labels.max()) >= self.num_classes:
            raise ValueError(f"prior 'oracle': the data has segment ids up to {int(seg.max())} and classes up to "
                             f"{int(images.labels.max())}; raise prior.params.max_segments / num_classes")
        area = F.adaptive_avg_pool2d(F.one_hot(seg, self.max_segments).permute(0, 3, 1, 2).float(), grid)
        spatial = torch.einsum("nkhw,kd->ndhw", area, self.embed)
        onehot = F.one_hot(torch.from_numpy(images.labels), self.num_classes).float() * self.semantic_weight
        semantic = onehot[:, :, None, None].expand(-1, -1, grid, grid)
        return torch.cat([spatial, semantic], dim=1).numpy().astype(np.float16)


@register_prior("oracle")
def oracle(num_classes: int = 8, max_segments: int = 8, segment_dim: int = 16, semantic_weight: float = 1.0,
           seed: int = 0) -> Prior:
    return OraclePrior(num_classes, max_segments, segment_dim, semantic_weight, seed)
