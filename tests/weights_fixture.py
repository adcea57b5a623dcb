"""Weights files of the real architectures with random values: the real ones cannot be downloaded
here, and every loader takes any state dict of the right shape."""
from __future__ import annotations

from unittest import mock

import torch

TINY_VIT = "vit_small_patch14_dinov2.lvd142m"  # DINOv2 ViT-S/14 (22M parameters, 518 px position embedding) for ViT-L/14


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
    """A randomly initialised timm ViT (no classifier head, as timm's DINOv2 files) saved as a state dict; its
    layer scales at 1 and its position embedding at unit scale (DINOv2's init, 1e-5 and 0.02, leaves every
    block and the positions all but silent, so resampling them would change nothing a test could see)."""
    import timm

    torch.manual_seed(0)
    state = timm.create_model(model, pretrained=False, num_classes=0).state_dict()
    for key, value in state.items():
        if key.endswith(("ls1.gamma", "ls2.gamma")):
            value.fill_(1.0)
    state["pos_embed"] = torch.randn_like(state["pos_embed"])
    torch.save(state, path)
