""""timm": any timm ViT (DINOv2, SigLIP, MAE, ...) or convnet, with weights from a local file.

The model is built with `pretrained=False` and loaded from `weights` (.safetensors, .pth, .pt,
.bin), passed through the model family's own `checkpoint_filter_fn` when it has one (that
converts upstream formats and resamples position embeddings to `input_resolution`). Nothing is
downloaded: HF_HUB_OFFLINE=1 is set before timm is imported here. ViT outputs drop the prefix
(class / register) tokens and fold the patch tokens into a map; normalisation comes from the
model's pretrained_cfg mean/std unless given.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

import torch

from pae_lab.priors.base import Prior, resize_input
from pae_lab.priors.registry import register_prior

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def _check_weights(model: str, weights: str | None) -> Path:
    how = f"set prior.params.weights: /path/to/file ({', '.join(WEIGHT_SUFFIXES)}) holding the state dict of {model!r}"
    if not weights:
        raise FileNotFoundError(f"timm prior {model!r} needs a local weights file (nothing is downloaded): {how}")
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"timm prior {model!r}: weights file {path} does not exist; {how}")
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise ValueError(f"timm prior {model!r}: weights file {path} has suffix {path.suffix!r}; expected one of {', '.join(WEIGHT_SUFFIXES)}")
    return path


def _load(net: torch.nn.Module, path: Path) -> None:
    """Load a local checkpoint strictly, except for a classifier head the feature model does not have."""
    from timm.models import load_state_dict

    state = load_state_dict(str(path), weights_only=True)
    filter_fn = getattr(sys.modules[type(net).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, net)
    missing, unexpected = net.load_state_dict(state, strict=False)
    head = net.pretrained_cfg.get("classifier") or "head"
    heads = head if isinstance(head, (list, tuple)) else [head]
    unexpected = [k for k in unexpected if not any(k.startswith(h + ".") for h in heads)]
    if missing or unexpected:
        raise ValueError(f"weights {path} do not fit timm model {net.pretrained_cfg.get('architecture')!r}: "
                         f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                         f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}; "
                         f"check prior.params.model matches the checkpoint")


class TimmPrior(Prior):
    def __init__(self, net: torch.nn.Module, input_resolution: int, mean: Sequence[float], std: Sequence[float]):
        super().__init__(f"timm:{net.pretrained_cfg.get('architecture')}", int(net.num_features))
        self.net = net
        self.input_resolution = input_resolution
        self.prefix_tokens = int(getattr(net, "num_prefix_tokens", 0))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def feature_map(self, x01: torch.Tensor) -> torch.Tensor:
        x = (resize_input(x01, self.input_resolution) - self.mean) / self.std
        out = self.net.forward_features(x)
        if out.ndim == 4:  # convnets: already [B, C, h, w]
            return out
        tokens = out[:, self.prefix_tokens:]
        side = int(round(tokens.shape[1] ** 0.5))
        if side * side != tokens.shape[1]:
            raise ValueError(f"{self.name}: {tokens.shape[1]} patch tokens do not form a square map")
        return tokens.transpose(1, 2).reshape(len(x), -1, side, side)


@register_prior("timm")
def timm_prior(model: str, weights: str | None = None, input_resolution: int = 224,
               mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> Prior:
    """`model`: a timm name (e.g. vit_small_patch14_dinov2.lvd142m); `weights`: local file, required."""
    path = _check_weights(model, weights)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import timm

    try:  # ViT-family models take img_size (position embeddings); convnets do not
        net = timm.create_model(model, pretrained=False, num_classes=0, img_size=input_resolution)
    except TypeError:
        net = timm.create_model(model, pretrained=False, num_classes=0)
    patch = getattr(getattr(net, "patch_embed", None), "patch_size", None)
    if patch is not None and input_resolution % patch[0]:
        raise ValueError(f"timm prior {model!r}: input_resolution {input_resolution} is not a multiple of the patch size {patch[0]}")
    _load(net, path)
    cfg = net.pretrained_cfg
    return TimmPrior(net, input_resolution, mean or cfg.get("mean"), std or cfg.get("std"))
