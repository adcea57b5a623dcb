"""Inception with ADM's sFID features: torch-fidelity's "inception-v3-compat" network, plus the
spatial features ADM's evaluator reads from TF's `mixed_6/conv:0`.

Which torch module that is: the 2015 TF graph names its Inception blocks mixed, mixed_1, ...,
mixed_10, i.e. torch-fidelity's Mixed_5b, 5c, 5d, 6a, 6b, 6c, 6d, 6e, 7a, 7b, 7c, so mixed_6 is
Mixed_6d (the third 17 x 17 InceptionC block), and a block's plain `conv` is its 1x1 branch (the
`tower*` scopes are the others): torch-fidelity's weight conversion maps "mixed_6/conv/conv2d_params"
to "Mixed_6d.branch1x1.conv". The TF node `mixed_6/conv` is that conv + batch norm + ReLU, which is
BasicConv2d's output, so a forward hook on `Mixed_6d.branch1x1` sees exactly it: [N, 192, 17, 17]
from 299 px inputs. ADM keeps the first 7 channels and flattens channels-last ([N, 17, 17, 7] ->
2023), and so do we: FD itself does not care about the order, but a reference file's `mu_s` /
`sigma_s` are indexed in that order, and our features must be too. (Some PyTorch ports hook
Mixed_6e, TF's mixed_7: another layer.)
"""
from __future__ import annotations

from typing import Any

import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from analysis.fidelity_names import SPATIAL_LAYER

SPATIAL_MODULE = "Mixed_6d.branch1x1"  # TF's mixed_6/conv (see the module docstring)
SPATIAL_CHANNELS = 7  # ADM: spatial[..., :7]
SPATIAL_DIM = SPATIAL_CHANNELS * 17 * 17  # 2023 from 299 px inputs


def adm_spatial(activation: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> ADM's sFID features [N, H * W * 7]: first 7 channels, flattened channels-last."""
    return activation[:, :SPATIAL_CHANNELS].permute(0, 2, 3, 1).reshape(len(activation), -1)


class InceptionV3Spatial(FeatureExtractorInceptionV3):
    """torch-fidelity's Inception (same weights file, same outputs) that also provides SPATIAL_LAYER."""

    def __init__(self, name: str, features_list: list[str], **kwargs: Any):
        super().__init__(name, features_list, **kwargs)
        self._kept: list[torch.Tensor] = []
        self.get_submodule(SPATIAL_MODULE).register_forward_hook(lambda module, args, out: self._kept.append(out))

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return (*FeatureExtractorInceptionV3.get_provided_features_list(), SPATIAL_LAYER)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        wanted = list(self.features_list)
        inner = [f for f in wanted if f != SPATIAL_LAYER] or ["768"]  # "768": stops right after Mixed_6e
        self._kept.clear()
        self.features_list = inner
        try:
            out = dict(zip(inner, super().forward(x)))
        finally:
            self.features_list = wanted
        out[SPATIAL_LAYER] = adm_spatial(self._kept.pop()).to(torch.float32)
        return tuple(out[f] for f in wanted)
