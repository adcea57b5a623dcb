"""DINOv2 ViT-L/14 through timm, from a local weights file, as a torch-fidelity extractor: the
features of FD-DINOv2 (Stein et al. 2023; EDM2's `fd_dinov2`).

Preprocessing as EDM2's DINOv2 detector (its fast "torch" mode, which follows dgm-eval): uint8
images resized to 224 x 224 bicubic with antialias, scaled to [0, 1], ImageNet mean / std; the
feature is the final-norm CLS token (1024-d), which timm's DINOv2 returns with `num_classes=0`
(token pooling, no fc_norm). The weights keep their 518 px position embedding; timm resamples it
to the 16 x 16 grid on the fly (`dynamic_img_size`), as torch.hub's DINOv2 does: close to, not
bit-identical with, EDM2's numbers. The timm architecture is a parameter (`timm_model`), so a
test can run a tiny random ViT the same way; the protocol names it.
"""
from __future__ import annotations

import os
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.models import load_checkpoint
from timm.models.vision_transformer import checkpoint_filter_fn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from analysis.fidelity_names import DINOV2_LAYER, DINOV2_TIMM_MODEL

INPUT_SIZE = 224
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class DinoV2Timm(FeatureExtractorBase):
    """uint8 [B, 3, H, W] -> CLS features of a timm ViT loaded from `feature_extractor_weights_path`."""

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None,
                 timm_model: str = DINOV2_TIMM_MODEL, **kwargs: Any):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None or not os.path.isfile(feature_extractor_weights_path):
            raise FileNotFoundError(f"dinov2_weights file {feature_extractor_weights_path!r} does not exist: name a local "
                                    f"{timm_model} weights file (timm's model.safetensors); nothing is downloaded")
        self.timm_model = timm_model
        self.model = timm.create_model(timm_model, pretrained=False, num_classes=0, dynamic_img_size=True)
        load_checkpoint(self.model, feature_extractor_weights_path, filter_fn=checkpoint_filter_fn)
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
