"""Weights files of the real architectures with random values: the real ones cannot be downloaded
here, and every loader takes any state dict of the right shape."""
from __future__ import annotations

from unittest import mock

import torch

TINY_VIT = "vit_tiny_patch16_224"  # a 5.7M-parameter timm ViT standing in for DINOv2 ViT-L/14 (same code path)


def random_inception_weights(path, uniform_logits: bool = False) -> None:
    """A torch-fidelity InceptionV3 weights file, every layer, key and shape as torch-fidelity expects
    them, randomly initialised (at He's scale, so the deep features are not ~0); `uniform_logits`: its classifier zeroed, so every image's class
    distribution is uniform."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    empty = path.parent / "empty.pt"
    torch.save({}, empty)
    torch.manual_seed(0)
    with mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None):
        model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith("conv.weight"):
            value.mul_(6 ** 0.5)  # torch's default init shrinks activations 3x a layer: He's scale keeps them alive
    if uniform_logits:
        state["fc.weight"].zero_()
        state["fc.bias"].zero_()
    torch.save(state, path)


def random_vit_weights(path, model: str = TINY_VIT) -> None:
    """A randomly initialised timm ViT (no classifier head, as timm's DINOv2 files) saved as a state dict."""
    import timm

    torch.manual_seed(0)
    torch.save(timm.create_model(model, pretrained=False, num_classes=0).state_dict(), path)
