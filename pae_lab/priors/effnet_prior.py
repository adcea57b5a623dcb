""""effnet_lite0": the embedded default prior, ImageNet EfficientNet-Lite0 shipped in a wheel.

Images are upsampled to `input_resolution` (default 128: the 32-64 px study images are far below
what the network was trained on) and the map after MBConv `block` is taken. Default block 10:
the last stride-16 block, 112 channels, an 8x8 map at 128 px -- the deepest map that still has
spatial detail at pae-lab's latent grids (4-16). Other choices: block 4 (stride 8, 40 ch),
7 (stride 16, 80 ch), 14 (stride 32, 192 ch), 15 (stride 32, 320 ch).
"""
from __future__ import annotations

import torch

from analysis import effnet
from pae_lab.priors.base import Prior, resize_input
from pae_lab.priors.registry import register_prior


class EffNetLite0Prior(Prior):
    def __init__(self, input_resolution: int = 128, block: int = 10):
        model = effnet.load_efficientnet_lite0()
        n_blocks = len(model._blocks)
        if not 0 <= block < n_blocks:
            raise ValueError(f"effnet_lite0: block must be in [0, {n_blocks - 1}], got {block}")
        super().__init__("effnet_lite0", model._blocks[block]._project_conv.out_channels)
        self.model = model
        self.block = block
        self.input_resolution = input_resolution

    def feature_map(self, x01: torch.Tensor) -> torch.Tensor:
        return effnet.block_features(self.model, resize_input(x01, self.input_resolution), [self.block])[0]


@register_prior("effnet_lite0")
def effnet_lite0(input_resolution: int = 128, block: int = 10) -> Prior:
    return EffNetLite0Prior(input_resolution, block)
