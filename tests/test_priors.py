"""Priors: the embedded EfficientNet-Lite0, the timm backend from a local file, feature caching."""
from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from pae_lab.priors import PRIORS, Prior, build_prior, cache_features, register_prior, resize_to_grid
from analysis import effnet


@pytest.fixture(scope="module")
def effnet_prior() -> Prior:
    return build_prior("effnet_lite0", input_resolution=64)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("grid", [8, 4])
def test_effnet_features_shape(effnet_prior, images, grid):
    feats = effnet_prior.features(images, grid)
    assert feats.shape == (3, 112, grid, grid) and effnet_prior.dim == 112
    assert not feats.requires_grad and torch.isfinite(feats).all()


def test_effnet_matches_backbone_block(effnet_prior, images):
    # at 64 px block 10 is stride 16 -> 4x4; grid 4 is exactly the backbone's map
    x = torch.nn.functional.interpolate(images, size=64, mode="bilinear", align_corners=False, antialias=True)
    want = effnet.block_features(effnet_prior.model, x, [10])[0]
    torch.testing.assert_close(effnet_prior.features(images, 4), want)
    torch.testing.assert_close(effnet_prior.features(images, 2), torch.nn.functional.avg_pool2d(want, 2))


def test_effnet_other_block_and_frozen(images):
    prior = build_prior("effnet_lite0", input_resolution=64, block=4)
    assert prior.dim == 40 and prior.features(images, 8).shape == (3, 40, 8, 8)
    prior.train()  # a prior stays frozen inside a module being trained
    assert not prior.training and not any(p.requires_grad for p in prior.parameters())
    with pytest.raises(ValueError, match=r"block must be in \[0, 15\]"):
        build_prior("effnet_lite0", block=16)


def test_resize_to_grid_known_answers():
    fmap = torch.arange(16.0).view(1, 1, 4, 4)
    assert resize_to_grid(fmap, 4) is fmap
    assert resize_to_grid(fmap, 2).flatten().tolist() == [2.5, 4.5, 10.5, 12.5]
    up = resize_to_grid(torch.tensor([[[[1.0, 3.0]]]]).expand(1, 1, 2, 2), 4)
    assert up[0, 0, 0].tolist() == [1.0, 1.5, 2.5, 3.0]


def _tiny_vit(img_size: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, img_size=img_size).eval()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_timm_prior_loads_local_weights(tmp_path, images, suffix):
    net = _tiny_vit(64)
    path = tmp_path / f"vit{suffix}"
    state = {k: v.contiguous() for k, v in net.state_dict().items()}  # includes the classifier head
    save_file(state, path) if suffix == ".safetensors" else torch.save({"model": state}, path)
    prior = build_prior("timm", model="vit_tiny_patch16_224", weights=str(path), input_resolution=64)
    assert prior.dim == 192 and prior.name == "timm:vit_tiny_patch16_224"
    # known answer: the same network's patch tokens (cls token dropped), normalised with mean/std 0.5
    x = torch.nn.functional.interpolate(images, size=64, mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        tokens = net.forward_features((x - 0.5) / 0.5)[:, 1:]
    want = tokens.transpose(1, 2).reshape(3, 192, 4, 4)
    torch.testing.assert_close(prior.features(images, 4), want)
    assert prior.features(images, 2).shape == (3, 192, 2, 2)
    assert prior.features(images, 8).shape == (3, 192, 8, 8)


def test_timm_prior_resamples_position_embeddings(tmp_path, images):
    path = tmp_path / "vit32.safetensors"
    save_file({k: v.contiguous() for k, v in _tiny_vit(32).state_dict().items()}, path)
    prior = build_prior("timm", model="vit_tiny_patch16_224", weights=str(path), input_resolution=64)
    assert prior.net.pos_embed.shape == (1, 17, 192)
    assert prior.features(images, 4).shape == (3, 192, 4, 4)


def test_timm_prior_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"prior\.params\.weights: /path/to/file"):
        build_prior("timm", model="vit_tiny_patch16_224")
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match=rf"{missing}.*does not exist.*prior\.params\.weights"):
        build_prior("timm", model="vit_tiny_patch16_224", weights=str(missing))
    wrong = tmp_path / "wrong.safetensors"
    save_file({"foo": torch.zeros(1)}, wrong)
    with pytest.raises(ValueError, match="do not fit timm model.*missing"):
        build_prior("timm", model="vit_tiny_patch16_224", weights=str(wrong), input_resolution=32)
    with pytest.raises(ValueError, match="multiple of the patch size 16"):
        build_prior("timm", model="vit_tiny_patch16_224", weights=str(wrong), input_resolution=40)


def test_cache_features_writes_and_reuses(tmp_path, effnet_prior):
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    calls = []
    path = tmp_path / "feats" / "effnet.npy"
    feats = cache_features(effnet_prior, images, 4, 2, path, progress=lambda d, n: calls.append((d, n)))
    assert calls == [(2, 5), (4, 5), (5, 5)]
    assert feats.shape == (5, 112, 4, 4) and feats.dtype == np.float16
    direct = effnet_prior.features(torch.from_numpy(images).float() / 255.0, 4).numpy()
    np.testing.assert_allclose(feats.astype(np.float32), direct, rtol=1e-2, atol=1e-2)
    assert np.array_equal(np.load(path), feats)
    assert [p.name for p in path.parent.iterdir()] == ["effnet.npy"]  # no temp files left
    # a second call loads the file: a marker written into it comes back
    marked = feats.copy()
    marked[0, 0, 0, 0] = 1234
    np.save(path, marked)
    assert cache_features(effnet_prior, images, 4, 2, path)[0, 0, 0, 0] == 1234
    assert cache_features(effnet_prior, images, 4, 2, path, overwrite=True)[0, 0, 0, 0] != 1234
    # a file of another shape (other grid) is recomputed
    assert cache_features(effnet_prior, images, 2, 4, path).shape == (5, 112, 2, 2)


def test_user_registers_a_prior(images):
    class MeanColour(Prior):
        def feature_map(self, x01):
            return x01

    register_prior("test_mean_colour")(lambda: MeanColour("test_mean_colour", 3))
    prior = build_prior("test_mean_colour")
    torch.testing.assert_close(prior.features(images, 1)[:, :, 0, 0], images.mean(dim=(2, 3)))
    assert "test_mean_colour" in PRIORS.names("test_*")
    register_prior("test_not_a_prior")(lambda: torch.nn.Identity())
    with pytest.raises(TypeError, match="returned Identity; it must return a Prior"):
        build_prior("test_not_a_prior")
