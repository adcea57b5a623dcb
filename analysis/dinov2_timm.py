"""DINOv2 ViT-L/14 through timm, from a local weights file, as a torch-fidelity extractor: the
features of FD-DINOv2 (Stein et al. 2023; EDM2's `fd_dinov2`).

Preprocessing as EDM2's DINOv2 detector (its fast "torch" mode, which follows dgm-eval): uint8
images resized to 224 x 224 bicubic with antialias, scaled to [0, 1], ImageNet mean / std; the
feature is the final-norm CLS token (1024-d), which timm's DINOv2 returns with `num_classes=0`
(token pooling, no fc_norm). The weights' 518 px (37 x 37) position embedding is resampled to the
16 x 16 grid of 224 px as torch.hub's DINOv2, which EDM2 loads, does it: bicubic by a scale factor
of (16 + 0.1) / 37, no antialias (`interpolate_pos_encoding`, interpolate_offset 0.1); timm's own
resampling (by size, with antialias) moves the CLS features by about 2% on a random ViT-S/14.
The timm architecture is a parameter (`timm_model`, any DINOv2: a test runs a random ViT-S/14 the
same way); the protocol names it.
"""
from __future__ import annotations

import os
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.models import load_state_dict
from timm.models.vision_transformer import checkpoint_filter_fn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from analysis.fidelity_names import DINOV2_LAYER, DINOV2_TIMM_MODEL

INPUT_SIZE = 224
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


HUB_OFFSET = 0.1  # torch.hub DINOv2's interpolate_offset: the scale factor is (grid + 0.1) / stored grid


def hub_resampled(pos_embed: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    """A position embedding [1, prefix + M*M, D] resampled to the model's grid as torch.hub's DINOv2
    does at inference (bicubic by scale factor, offset 0.1, no antialias); unchanged when it fits."""
    prefix = 0 if getattr(model, "no_embed_class", False) else model.num_prefix_tokens
    grid = model.patch_embed.grid_size[0]
    stored = round((pos_embed.shape[1] - prefix) ** 0.5)
    if stored == grid:
        return pos_embed
    patches = pos_embed[:, prefix:].reshape(1, stored, stored, -1).permute(0, 3, 1, 2)
    scale = (grid + HUB_OFFSET) / stored
    patches = F.interpolate(patches.float(), scale_factor=(scale, scale), mode="bicubic", antialias=False)
    if patches.shape[-2:] != (grid, grid):
        raise ValueError(f"DINOv2 position embedding: {stored} x {stored} resampled to {tuple(patches.shape[-2:])}, not {grid} x {grid}")
    return torch.cat([pos_embed[:, :prefix], patches.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)], dim=1)


class DinoV2Timm(FeatureExtractorBase):
    """uint8 [B, 3, H, W] -> CLS features of a timm ViT loaded from `feature_extractor_weights_path`."""

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None,
                 timm_model: str = DINOV2_TIMM_MODEL, **kwargs: Any):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None or not os.path.isfile(feature_extractor_weights_path):
            raise FileNotFoundError(f"dinov2_weights file {feature_extractor_weights_path!r} does not exist: name a local "
                                    f"{timm_model} weights file (timm's model.safetensors); nothing is downloaded")
        self.timm_model = timm_model
        self.model = timm.create_model(timm_model, pretrained=False, num_classes=0, img_size=INPUT_SIZE)
        state = load_state_dict(feature_extractor_weights_path)
        state["pos_embed"] = hub_resampled(state["pos_embed"], self.model)  # before timm's filter would resample it its way
        self.model.load_state_dict(checkpoint_filter_fn(state, self.model))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return (DINOV2_LAYER,)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        if metric == "isc":
            raise ValueError("DINOv2 has no class logits: it gives no Inception Score")
        return DINOV2_LAYER

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected uint8 images [B, 3, H, W], got {x.dtype} {tuple(x.shape)}")
        x = F.interpolate(x.float(), size=(INPUT_SIZE, INPUT_SIZE), mode="bicubic", antialias=True)
        x = (x / 255 - self.mean) / self.std
        return (self.model(x).to(torch.float32),)
