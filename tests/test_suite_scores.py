"""The scores papers quote beside FD / KD, pinned by known answers on networks with random weights
(the real ones cannot be downloaded here; each loader takes any state dict of the right shape):
sFID's features are ADM's (7 x 17 x 17 of TF's mixed_6/conv, channels-last), IS of uniform logits
is 1 and of confident distinct classes the class count, FD-DINOv2 runs EDM2's preprocessing on a
tiny timm ViT, and precision / recall match a brute-force count.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from weights_fixture import TINY_VIT, random_inception_weights, random_vit_weights

from analysis.fidelity import extract_features, extract_layers, frechet_distance
from analysis.fidelity_names import fidelity_columns
from analysis.inception_score import inception_score
from analysis.knn_scores import knn_scores
from analysis.suite_scores import Suite, suite_scores


def scenes(n: int, seed: int, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    return (F.interpolate(coarse, size=size, mode="bilinear", align_corners=False) * 255).round().to(torch.uint8)


def test_sfid_features_are_adms_mixed_6_conv_first_7_channels_channels_last(tmp_path) -> None:
    """TF's mixed_6/conv is Mixed_6d's 1x1 branch after its ReLU: [N, 192, 17, 17] from 299 px; ADM keeps
    channels :7 and flattens [N, 17, 17, 7]. The pool features are torch-fidelity's own, unchanged."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    inception = tmp_path / "pt_inception-random.pth"
    random_inception_weights(inception)
    images = scenes(3, 0)
    ours = extract_layers(images, extractor="inception", inception_weights=inception, roles=("fid", "isc", "sfid"))
    assert ours["sfid"].shape == (3, 7 * 17 * 17) == (3, 2023)
    assert ours["fid"].shape == (3, 2048) and ours["isc"].shape == (3, 1008)
    stock = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                        feature_extractor_weights_path=str(inception))
    seen = []
    stock.Mixed_6d.branch1x1.register_forward_hook(lambda m, a, out: seen.append(out))
    with torch.no_grad():
        pool, logits = stock(images)
    (act,) = seen
    assert act.shape == (3, 192, 17, 17) and (act >= 0).all()  # after the ReLU
    assert torch.allclose(ours["fid"], pool.double(), atol=1e-5) and torch.allclose(ours["isc"], logits.double(), atol=1e-5)
    for i, h, w, c in ((0, 0, 0, 0), (1, 3, 11, 6), (2, 16, 2, 4), (1, 16, 16, 6)):
        assert ours["sfid"][i, (h * 17 + w) * 7 + c] == pytest.approx(float(act[i, c, h, w]), abs=1e-6)
    assert act[:, :7].abs().sum() > 0  # not a dead layer: the check above could not pass by zeros
    assert frechet_distance(ours["sfid"], ours["sfid"]) == pytest.approx(0.0, abs=1e-8)


def test_is_of_uniform_logits_is_one(tmp_path) -> None:
    """An Inception whose classifier is zero gives every image the uniform class distribution: IS = 1."""
    weights = tmp_path / "uniform.pth"
    random_inception_weights(weights, uniform_logits=True)
    suite = Suite(extractor="inception", inception_weights=weights)
    feats = suite.features(scenes(2, 1))
    scores = suite_scores(feats, feats, suite.columns())
    assert scores["is"] == pytest.approx(1.0, abs=1e-12) and math.isnan(scores["is_std"])
    assert scores["sfid"] == pytest.approx(0.0, abs=1e-8) and "fd_dinov2" not in scores


def test_is_counts_confident_distinct_classes_over_adms_splits() -> None:
    """Each sample certain of its own class, classes equally used: IS = the number of classes. Over
    ADM's consecutive splits of 5000 (no shuffle), the mean and spread of the per-split scores."""
    assert inception_score(100.0 * torch.eye(10).repeat(3, 1))["is"] == pytest.approx(10.0, rel=1e-9)
    # 10,000 samples: split 1 uses 4 classes, split 2 uses 8 -> IS 4 and 8, as ADM's loop computes them
    logits = torch.cat([100.0 * torch.eye(8)[torch.arange(5000) % 4], 100.0 * torch.eye(8)[torch.arange(5000) % 8]])
    found = inception_score(logits)
    assert found["is_splits"] == 2 and found["is"] == pytest.approx(6.0, rel=1e-9) and found["is_std"] == pytest.approx(2.0, rel=1e-9)


@pytest.mark.parametrize("n", [7000, 12_500])
def test_is_takes_adms_splits_when_n_is_no_multiple_of_5000(n) -> None:
    """ADM's evaluator: `for i in range(0, len(preds), 5000)`, KL of each part against its own marginal,
    exp, mean over parts; the last part shorter. Written out here apart from the implementation."""
    logits = torch.randn(n, 20, generator=torch.Generator().manual_seed(n), dtype=torch.float64) * 3
    preds = torch.softmax(logits, 1).numpy()
    parts = [preds[i:i + 5000] for i in range(0, n, 5000)]
    scores = [np.exp(np.mean(np.sum(p * (np.log(p) - np.log(p.mean(0, keepdims=True))), 1))) for p in parts]
    found = inception_score(logits)
    assert found["is_splits"] == len(parts) and found["is"] == pytest.approx(np.mean(scores), rel=1e-9)
    assert found["is_std"] == pytest.approx(np.std(scores), rel=1e-9)


def test_precision_recall_match_a_brute_force_count() -> None:
    """Kynkaanniemi et al.: precision = share of samples inside some real's k-NN ball, recall = share of
    reals inside some sample's k-NN ball (radius: distance to the k-th nearest other point of its set)."""
    g = np.random.default_rng(0)
    real, fake = g.normal(size=(30, 4)), g.normal(loc=1.5, size=(25, 4))
    k = 3

    def radii(points):
        return np.array([sorted(np.linalg.norm(points - p, axis=1))[k] for p in points])  # [0] is the point itself

    def covered(points, centres, r):
        return np.mean([any(np.linalg.norm(p - c) < rc for c, rc in zip(centres, r)) for p in points])

    found = knn_scores(torch.from_numpy(fake), torch.from_numpy(real), k)
    assert found["precision"] == pytest.approx(covered(fake, real, radii(real)), abs=1e-12)
    assert found["recall"] == pytest.approx(covered(real, fake, radii(fake)), abs=1e-12)
    assert 0 < found["precision"] < 1 and 0 < found["recall"] < 1  # a case that tells the two sides apart


def test_fd_dinov2_runs_edm2s_preprocessing_on_the_named_timm_network(tmp_path) -> None:
    """EDM2 loads torch.hub's DINOv2, whose 37 x 37 position embedding is resampled to 224 px's 16 x 16 grid by
    `interpolate_pos_encoding`: bicubic by scale factor (16 + 0.1) / 37, no antialias (written out here);
    timm's own resampling (by size, antialiased) gives other features, which this test tells apart."""
    import timm

    tiny_vit = tmp_path / "vit_small_dinov2_random.pth"
    random_vit_weights(tiny_vit)
    images = scenes(4, 2)
    feats = extract_features(images, extractor="dinov2", weights=tiny_vit, timm_model=TINY_VIT)
    state = torch.load(tiny_vit)
    patches = state["pos_embed"][:, 1:].reshape(1, 37, 37, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, scale_factor=(16.1 / 37, 16.1 / 37), mode="bicubic", antialias=False)
    state["pos_embed"] = torch.cat([state["pos_embed"][:, :1], patches.permute(0, 2, 3, 1).reshape(1, 256, -1)], 1)
    net = timm.create_model(TINY_VIT, pretrained=False, num_classes=0, img_size=224).eval()
    net.load_state_dict(state)
    x = F.interpolate(images.float(), size=(224, 224), mode="bicubic", antialias=True) / 255  # EDM2: bicubic 224, ImageNet norm
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    timm_way = timm.create_model(TINY_VIT, pretrained=False, num_classes=0, dynamic_img_size=True).eval()
    timm_way.load_state_dict(torch.load(tiny_vit))
    with torch.no_grad():
        expected, resampled_by_timm = net(x), timm_way(x)
    assert feats.shape == (4, 384) and torch.allclose(feats, expected.double(), atol=1e-5)
    assert not torch.allclose(feats, resampled_by_timm.double(), atol=1e-3)
    suite = Suite(extractor="effnet-lite0-96", dinov2_weights=tiny_vit, dinov2_model=TINY_VIT)
    both = suite.features(images)
    other = suite.features(scenes(4, 3))
    same, apart = suite_scores(both, both, suite.columns()), suite_scores(both, other, suite.columns())
    assert same["fd_dinov2"] == pytest.approx(0.0, abs=1e-8) and apart["fd_dinov2"] > 1e-3
    assert "is_effnet_lite0_96" in same and "is" not in same and "sfid" not in same  # named after their extractor
    assert [line.split(" ")[0] for line in suite.skipped()] == ["fd_dinov2", "sFID"]  # not EDM2's ViT-L (said), no Inception
    assert suite.shared_network(prior="vit_base_patch14_dinov2.lvd142m")  # a timm prior on DINOv2 (studies/imagenet256.yaml)
    assert suite.shared_network(prior="dinov2_vitb14") and not suite.shared_network(prior="effnet_lite0")


def test_missing_dinov2_weights_are_named(tmp_path) -> None:
    missing = tmp_path / "model.safetensors"
    with pytest.raises(FileNotFoundError, match=f"dinov2 weights file '{missing}' does not exist"):
        extract_features(scenes(2, 0), extractor="dinov2", weights=missing)


def test_every_suite_column_is_named_once_after_its_extractor() -> None:
    inception, effnet = fidelity_columns("inception"), fidelity_columns("effnet-lite0")
    assert (inception.isc, inception.sfd, inception.dino_fd) == ("is", "sfid", "fd_dinov2")
    assert (effnet.isc, effnet.sfd) == ("is_effnet_lite0", "")
    assert "" not in effnet.roles() and "" not in effnet.meanings()
    assert effnet.direction("is_effnet_lite0") == "higher" and inception.direction("sfid") == "lower"
    assert inception.direction("fd_dinov2") == "lower"
    skipped = Suite(extractor="effnet-lite0").skipped()
    assert len(skipped) == 2 and "--dinov2-weights" in skipped[1] and "--inception-weights" in skipped[0]
    with pytest.raises(ValueError, match="scored beside the study's extractor"):
        Suite(extractor="dinov2")


def test_a_results_table_with_fd_dinov2_still_reads_its_own_fid(tmp_path) -> None:
    """fd_dinov2 sorts first among the extractors' FD keys but is scored beside the study's FD: a table
    without a correlation target reads the study's own FD."""
    from pae_lab.cli import generation_score_column

    (tmp_path / "results.csv").write_text("variant,fd_dinov2,fid\nbaseline,3.0,2.0\n")
    assert generation_score_column(tmp_path / "results.csv") == "fid"


def test_a_named_statistics_file_gives_the_study_fd_and_sfid_from_its_moments(tmp_path) -> None:
    """evaluation.reference_stats in ADM's layout (mu / sigma, mu_s / sigma_s): the reference stage keeps
    both pairs, and the generation stage reads sFID against mu_s / sigma_s, not the reference images."""
    import numpy as np

    from analysis.adm_files import save_statistics
    from pae_lab.config.schema import StudyConfig
    from pae_lab.plan import layout
    from pae_lab.stages.reference import load_suite_reference, reference_statistics

    g = torch.Generator().manual_seed(0)
    stats = save_statistics(tmp_path / "VIRTUAL_ref.npz", torch.randn(30, 2048, generator=g, dtype=torch.float64),
                            "inception", spatial=torch.randn(30, 2023, generator=g, dtype=torch.float64))
    study = StudyConfig.model_validate({"name": "s", "evaluation": {"extractor": "inception", "reference_stats": str(stats),
                                                                    "inception_weights": str(tmp_path / "inception.pth")}})
    kept, notes = reference_statistics(study)
    assert set(kept) == {"mu", "sigma", "mu_s", "sigma_s"} and kept["sigma_s"].shape == (2023, 2023) and notes == []
    np.savez(tmp_path / layout.REFERENCE_STATS, **kept)
    mu_s, sigma_s = load_suite_reference(tmp_path)["sfid"]
    with np.load(stats) as raw:
        assert np.array_equal(mu_s.numpy(), raw["mu_s"]) and np.array_equal(sigma_s.numpy(), raw["sigma_s"])
    effnet = StudyConfig.model_validate({"name": "s", "evaluation": {"extractor": "effnet-lite0", "reference_stats": str(stats)}})
    with pytest.raises(ValueError, match=r"VIRTUAL_ref\.npz: statistics made with the inception extractor"):
        reference_statistics(effnet)  # a file of another network is refused in one line
    adm = tmp_path / "adm.npz"  # ADM's reference batches name no network, and hold their 256 px images beside
    np.savez(adm, arr_0=np.zeros((4, 256, 256, 3), np.uint8), mu=np.zeros(2048), sigma=np.eye(2048))
    study = StudyConfig.model_validate({"name": "s", "data": {"resolution": 256}, "evaluation": {
        "extractor": "inception", "inception_weights": str(tmp_path / "inception.pth"), "reference_stats": str(adm)}})
    _, notes = reference_statistics(study)
    assert notes == [f"evaluation.reference_stats: {adm} does not name the network its statistics come from: assumed inception"]
    small = StudyConfig.model_validate({**study.model_dump(mode="json"), "data": {"resolution": 64}})
    with pytest.raises(ValueError, match=r"evaluation.reference_stats: .*adm\.npz holds \(256, 256\) px images, but the study generates 64 x 64"):
        reference_statistics(small)  # statistics of 256 px images would score a 64 px study


def test_named_reference_images_say_what_they_leave_unequal_and_refuse_too_few(tmp_path) -> None:
    import numpy as np

    from pae_lab.config.schema import StudyConfig
    from pae_lab.stages.reference import reference_notes

    batch = tmp_path / "VIRTUAL_ref.npz"  # images and their statistics, as ADM ships them
    np.savez(batch, arr_0=np.zeros((8, 32, 32, 3), np.uint8), mu=np.zeros(1280), sigma=np.eye(1280))
    study = StudyConfig.model_validate({"name": "s", "evaluation": {"num_samples": 64, "reference_images": str(batch)}})
    notes = reference_notes(study, 8)
    assert any("holds 8 images, fewer than the 64 generated" in n for n in notes)
    assert any("also holds mu / sigma, which only evaluation.reference_stats reads" in n for n in notes)
    with pytest.raises(ValueError, match="holds 3 images; precision / recall need more than evaluation.prdc_k = 3"):
        reference_notes(study, 3)  # before any run trains, not in its generation stage


def test_fd_dinov2_refuses_a_network_that_is_no_dinov2() -> None:
    with pytest.raises(ValueError, match="dinov2_model: 'vit_tiny_patch16_224' is no DINOv2"):
        Suite(dinov2_model="vit_tiny_patch16_224")


def test_an_embedding_network_gives_no_inception_score_and_its_columns_carry_its_name() -> None:
    """A plugin's FD network without class logits (CLIP, DINOv2, VGG features): no IS at all, and no column
    that reads like Inception's ("is", "precision")."""
    from analysis.fidelity_names import FIDELITY_EXTRACTORS, ExtractorSpec

    FIDELITY_EXTRACTORS.register("clip-plugin", ExtractorSpec("clip-vit-b-32", "fid_clip", "kid_clip", 512))
    try:
        suite = Suite(extractor="clip-plugin")
        assert suite.roles() == ("fid",)
        cols = suite.columns()
        assert (cols.isc, cols.precision) == ("is_fid_clip", "precision_fid_clip")
        assert suite_scores({"fid": torch.zeros(4, 512)}, {}, cols) == {}
    finally:
        FIDELITY_EXTRACTORS._entries.pop("clip-plugin")
