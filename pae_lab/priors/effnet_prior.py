""""effnet_lite0": the embedded default prior, ImageNet EfficientNet-Lite0 shipped in a wheel.

Images are upsampled to `input_resolution` (default 128: the 32-64 px study images are far below
what the network was trained on) and the map after MBConv `block` is taken. Default block 10:
the last stride-16 block, 112 channels, an 8x8 map at 128 px -- the deepest map that still has
spatial detail at pae-lab's latent grids (4-16). Other choices: block 4 (stride 8, 40 ch),
7 (stride 16, 80 ch), 14 (stride 32, 192 ch), 15 (stride 32, 320 ch).
`pooled: true` takes the classifier's input instead: the 1280-d head features averaged over the
image, the same vector on every token (a semantic teacher for SCR; `block` is then unused).
"""
from __future__ import annotations

import torch

from analysis import effnet
from pae_lab.priors.base import Prior, resize_input
from pae_lab.priors.registry import register_prior


class EffNetLite0Prior(Prior):
    def __init__(self, input_resolution: int = 128, block: int = 10, pooled: bool = False):
        model = effnet.load_efficientnet_lite0()
        n_blocks = len(model._blocks)
        if not 0 <= block < n_blocks:
            raise ValueError(f"effnet_lite0: block must be in [0, {n_blocks - 1}], got {block}")
        dim = model._conv_head.out_channels if pooled else model._blocks[block]._project_conv.out_channels
        super().__init__("effnet_lite0", dim)
        self.model = model
        self.block, self.pooled = block, pooled
        self.input_resolution = input_resolution

    def feature_map(self, x01: torch.Tensor) -> torch.Tensor:
        x = resize_input(x01, self.input_resolution)
        if self.pooled:
            return effnet.pooled_features(self.model, x)[:, :, None, None]  # 1 x 1: the grid gets the same vector
        return effnet.block_features(self.model, x, [self.block])[0]


@register_prior("effnet_lite0")
def effnet_lite0(input_resolution: int = 128, block: int = 10, pooled: bool = False) -> Prior:
    return EffNetLite0Prior(input_resolution, block, pooled)
