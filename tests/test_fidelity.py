"""gFID / KID through torch-fidelity with the embedded EfficientNet-Lite0 extractor, offline.

Tiny sets (24 images of 32x32): FD of a set with itself is ~0, FD between smooth images and
pixel noise is large, keys are never called "fid" for this extractor, and Inception never
downloads.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torch_fidelity
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from weights_fixture import random_inception_weights

from analysis.fidelity import (FIDELITY_EXTRACTORS, EffNetLite0Extractor, ExtractorSpec, compute_fidelity,
                               images_to_uint8, metric_names, register_extractors)

N = 24  # each image is resized to 224x224: keep the sets small


def _smooth_images(n: int, seed: int) -> torch.Tensor:
    base = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    return images_to_uint8(F.interpolate(base, size=32, mode="bilinear", align_corners=False))


def _noise_images(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Both comparisons share one cached reference: the second call extracts only its samples."""
    cache = tmp_path_factory.mktemp("fidelity_cache")
    reference = _smooth_images(N, seed=0)
    with pytest.warns(UserWarning, match="only 24 samples"):
        same = compute_fidelity(reference.clone(), reference, reference_cache_name="toy", cache_root=cache)
    with pytest.warns(UserWarning):
        far = compute_fidelity(_noise_images(N, seed=1), reference, reference_cache_name="toy", cache_root=cache)
    return {"same": same, "far": far, "cache": cache}


def test_fd_of_a_set_with_itself_is_zero_and_of_different_sets_is_large(results):
    same, far = results["same"]["fd_effnet_lite0"], results["far"]["fd_effnet_lite0"]
    assert abs(same) < 0.05  # eigenvalue round-off of rank-deficient 1280-d covariances
    assert far > 100.0 and far > 1e4 * max(abs(same), 1e-6)
    assert results["far"]["kd_effnet_lite0"] > results["same"]["kd_effnet_lite0"]


def test_effnet_metrics_are_never_called_fid(results):
    for r in (results["same"], results["far"]):
        assert {"fd_effnet_lite0", "kd_effnet_lite0", "kd_effnet_lite0_std"} <= set(r)
        assert not {"fid", "kid", "frechet_inception_distance"} & set(r)
    assert metric_names() == ("fd_effnet_lite0", "kd_effnet_lite0")
    assert metric_names(inception_weights="/some/file.pth") == ("fid", "kid")
    assert metric_names("effnet-lite0", inception_weights="/some/file.pth") == ("fd_effnet_lite0", "kd_effnet_lite0")


def test_protocol_and_warnings_are_returned(results):
    protocol = results["far"]["protocol"]
    assert protocol["n_samples"] == N and protocol["n_reference"] == N
    assert protocol["extractor"] == "effnet-lite0" and protocol["feature_dim"] == 1280
    assert protocol["kid_subset_size"] == N // 2  # half the smaller set: the subsets differ
    assert protocol["reference_cache"] == "toy-n24-32x32"
    assert results["far"]["warnings"] and "2048" in results["far"]["warnings"][0]


def test_reference_statistics_are_cached_per_dataset(results):
    names = sorted(p.name for p in results["cache"].iterdir())
    assert names == ["toy-n24-32x32-effnet-lite0-features-1280.pt", "toy-n24-32x32-effnet-lite0-stat-fid-1280.pt"]


def test_extractor_features_and_idempotent_registration():
    register_extractors()  # second registration is a no-op
    assert FEATURE_EXTRACTORS_REGISTRY["effnet-lite0"] is EffNetLite0Extractor
    ext = EffNetLite0Extractor("effnet-lite0", ["1280", "logits"])
    feats, logits = ext(_smooth_images(2, seed=5))
    assert feats.shape == (2, 1280) and logits.shape == (2, 1000)
    with pytest.raises(ValueError, match="uint8"):
        ext(torch.rand(2, 3, 32, 32))


def test_missing_inception_weights_is_a_clear_error(tmp_path):
    images = _smooth_images(4, seed=0)
    missing = tmp_path / "weights-inception.pth"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        compute_fidelity(images, images, inception_weights=missing)
    with pytest.raises(ValueError, match="needs a local weights file"):
        compute_fidelity(images, images, extractor="inception")


def test_inception_runs_offline_from_the_given_weights_file(tmp_path):
    """With a weights file, the real InceptionV3 network runs offline and the keys are fid / kid."""
    weights = tmp_path / "weights-inception.pth"
    random_inception_weights(weights)
    images = _smooth_images(8, seed=0)
    others = _smooth_images(8, seed=1)
    with pytest.warns(UserWarning, match="fid is strongly biased"):
        same = compute_fidelity(images, images, inception_weights=weights)
    with pytest.warns(UserWarning):
        apart = compute_fidelity(images, others, inception_weights=weights)
    assert abs(same["fid"]) < 1e-3 and apart["fid"] > same["fid"]
    assert {"fid", "kid", "kid_std"} <= set(same) and "fd_effnet_lite0" not in same
    assert same["protocol"]["extractor"] == "inception" and same["protocol"]["feature_dim"] == 2048


def test_inputs_are_checked():
    images = _smooth_images(4, seed=0)
    with pytest.raises(ValueError, match="uint8"):
        compute_fidelity(images.float() / 255, images)
    with pytest.raises(ValueError, match="kid_subset_size"):
        compute_fidelity(images, images, kid_subset_size=5)
    with pytest.raises(KeyError, match="dinov2, effnet-lite0, effnet-lite0-96, inception"):
        compute_fidelity(images, images, extractor="clip")


def test_no_weight_download_can_happen(tmp_path):
    """Inception registered *without* the weights requirement reaches torch-fidelity's URL fetch: refused."""
    if "inception-download-probe" not in FIDELITY_EXTRACTORS:
        FIDELITY_EXTRACTORS.register("inception-download-probe",
                                     ExtractorSpec("inception-v3-compat", "fd_probe", "kd_probe", 2048))
    torch_home = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))  # an empty hub: no cached copy can short-cut the download
    try:
        images = _smooth_images(4, seed=0)
        with pytest.raises(RuntimeError, match="tried to download"), pytest.warns(UserWarning):
            compute_fidelity(images, images, extractor="inception-download-probe")
    finally:
        torch.hub.set_dir(torch_home)


def test_images_to_uint8_rounds_and_clamps():
    x = torch.tensor([-0.5, 0.0, 0.5, 1.0, 2.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert images_to_uint8(x)[0, 0, 0].tolist() == [0, 0, 128, 255, 255]
    assert torch_fidelity.__version__.startswith("0.4")


def test_inception_weights_in_the_torch_cache_are_used(tmp_path, monkeypatch) -> None:
    """Weights already in the torch hub cache make "auto" the standard FID, named fid / kid."""
    import torch

    from analysis.fidelity import INCEPTION_FILE, cached_inception_weights, metric_names

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert cached_inception_weights() is None and metric_names("auto") == ("fd_effnet_lite0", "kd_effnet_lite0")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / INCEPTION_FILE).write_bytes(b"stub")
    assert cached_inception_weights() == str(tmp_path / "checkpoints" / INCEPTION_FILE)
    assert metric_names("auto") == ("fid", "kid")
    assert metric_names("effnet-lite0") == ("fd_effnet_lite0", "kd_effnet_lite0")


def test_frechet_distance_matches_torch_fidelity_statistics():
    """Both forms (the N1 x N2 nuclear norm, and the statistics where N1 x N2 outgrows D x D) equal
    torch-fidelity's D x D eigenvalue form."""
    import numpy as np
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    from analysis.fidelity import frechet_distance

    gen = torch.Generator().manual_seed(0)
    for n1, n2, d in ((200, 150, 16), (30, 40, 64), (10, 300, 16)):  # D x D, N1 x N2, and N1 < D < N2
        f1 = torch.randn(n1, d, generator=gen, dtype=torch.float64)
        f2 = 1.5 * torch.randn(n2, d, generator=gen, dtype=torch.float64) + 0.3
        ref = fid_statistics_to_metric(fid_features_to_statistics(f1), fid_features_to_statistics(f2), False)
        assert frechet_distance(f1, f2) == pytest.approx(ref[torch_fidelity.KEY_METRIC_FID], rel=1e-6)
        assert frechet_distance(f1, f1) == pytest.approx(0.0, abs=1e-9)
        assert np.isfinite(frechet_distance(f1[:2], f2[:3]))


def test_learnability_fd_is_zero_when_generation_reproduces_the_reconstructions():
    """lfd compares generated images with the tokenizer's own reconstructions of the reference set:
    a generator that reproduces exactly those images scores 0, while gFD keeps the decoder's blur."""
    from analysis.fidelity import extract_features, fd_kd, fidelity_columns

    real = _smooth_images(N, seed=0)
    recon = images_to_uint8(F.avg_pool2d(real.float() / 255, 3, 1, 1))  # a blurring "decoder"
    generated = recon.clone()  # the generator reproduces the reconstructions
    fx = {k: extract_features(v, extractor="effnet-lite0-96") for k, v in
          {"real": real, "recon": recon, "gen": generated}.items()}
    assert fx["real"].shape == (N, 1280)
    learn, gfd = fd_kd(fx["gen"], fx["recon"], kid_subsets=10), fd_kd(fx["gen"], fx["real"], kid_subsets=10)
    floor = fd_kd(fx["recon"], fx["real"], kid_subsets=10)
    # KD's unbiased estimator pairs each image with itself across the two sets: <= 0 for equal sets
    assert abs(learn["fd"]) < 1e-6 and learn["kd"] <= 0 < gfd["kd"]
    assert gfd["fd"] > 1.0 and gfd["fd"] == pytest.approx(floor["fd"])  # all of gFD is the decoder floor here
    cols = fidelity_columns("effnet-lite0-96")
    assert (cols.fd, cols.lfd, cols.floor_fd, cols.noise_fd) == (
        "fd_effnet_lite0_96", "lfd_effnet_lite0_96", "floor_fd_effnet_lite0_96", "noise_fd_effnet_lite0_96")
    assert cols.targets()["lfd"] == cols.lfd and set(cols.meanings()) >= {cols.lfd, cols.floor_kd, cols.val_loss}


def test_shared_network_warning_names_the_roles():
    from analysis.fidelity import shared_network_warning

    msg = shared_network_warning("effnet-lite0-96", None, prior="effnet_lite0", perceptual="effnet_lite0")
    assert "also the prior and the perceptual" in msg
    assert shared_network_warning("effnet-lite0", None, prior="oracle", perceptual="lpips") == ""
    assert "the perceptual (" not in msg and "(effnet_lite0)" in msg


def test_kd_subsets_are_smaller_than_the_set_and_differ():
    """The default subset is below N, so the subsets differ and KD's spread over them is not 0."""
    from analysis.fidelity import fd_kd, kid_subset

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(60, 8, generator=g, dtype=torch.float64), torch.randn(60, 8, generator=g, dtype=torch.float64) + 0.5
    assert kid_subset(60, 60) == 30 < 60 and kid_subset(5000, 3000) == 1000
    spread = fd_kd(a, b, kid_subsets=20)["kd_std"]
    whole = fd_kd(a, b, kid_subsets=20, kid_subset_size=60)["kd_std"]  # the old default: rounding noise only
    assert spread > 0 and whole < 1e-2 * spread
