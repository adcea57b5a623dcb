"""`pae-lab evaluate`: any sample file in ADM's format scored with a study's scores, against reference
images or their stored statistics, with the files' mistakes named in one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from analysis.adm_files import load_images, save_images, save_statistics
from analysis.fidelity import frechet_distance, frechet_distance_to_statistics
from pae_lab.cli import app

EXTRACTOR = "effnet-lite0-96"
FD, PRECISION, RECALL = "fd_effnet_lite0_96", "precision_effnet_lite0_96", "recall_effnet_lite0_96"


def scenes(n: int, seed: int, size: tuple[int, int] = (32, 32)) -> torch.Tensor:
    """Smooth random images (blobs, not noise), uint8 [N, 3, H, W]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    return (torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False) * 255).round().to(torch.uint8)


def test_images_round_trip_channels_last_with_labels(tmp_path) -> None:
    images, labels = scenes(6, 0, (24, 32)), np.arange(6)  # not square: a swapped H and W would show
    path = save_images(tmp_path / "s", images, labels)
    assert path == tmp_path / "s"  # written where asked (np.savez would have added .npz)
    with np.load(path) as raw:
        adm = raw["arr_0"]
        assert adm.shape == (6, 24, 32, 3) and adm.dtype == np.uint8  # ADM's layout: [N, H, W, C]
        assert adm[2, 5, 17, 1] == images[2, 1, 5, 17] and adm[4, 23, 0, 2] == images[4, 2, 23, 0]
    back, got = load_images(path)
    assert torch.equal(back, images) and list(got) == list(labels)
    with pytest.raises(ValueError, match="5 labels for 6 images"):
        save_images(tmp_path / "t.npz", images, labels[:5])


def test_a_float_file_is_refused_naming_file_and_key(tmp_path) -> None:
    np.savez(tmp_path / "bad.npz", arr_0=np.zeros((4, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"bad\.npz: arr_0 must be uint8"):
        load_images(tmp_path / "bad.npz")


@pytest.mark.parametrize("n", [20, 90])  # fewer and more samples than feature dimensions: both of its branches
def test_fd_against_statistics_is_fd_against_the_features(n) -> None:
    g = torch.Generator().manual_seed(n)
    a = torch.randn(n, 48, generator=g, dtype=torch.float64)
    b = torch.randn(70, 48, generator=g, dtype=torch.float64) * 1.5 + 0.3
    mu, sigma = b.mean(0), torch.from_numpy(np.cov(b.numpy(), rowvar=False))
    assert frechet_distance_to_statistics(a, mu, sigma) == pytest.approx(frechet_distance(a, b), rel=1e-9)
    assert frechet_distance_to_statistics(b, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_evaluate_scores_samples_against_images_and_against_their_statistics(tmp_path) -> None:
    ref, other = save_images(tmp_path / "ref.npz", scenes(40, 1)), save_images(tmp_path / "gen.npz", scenes(40, 2))
    runner = CliRunner()
    args = ["--reference", str(ref), "--extractor", EXTRACTOR, "--kid-subsets", "10"]
    same = runner.invoke(app, ["evaluate", str(ref), *args, "--json", str(tmp_path / "same.json")])
    assert same.exit_code == 0, same.output
    scores = json.loads((tmp_path / "same.json").read_text())["scores"]
    assert scores[FD] == pytest.approx(0, abs=1e-6) and scores[PRECISION] == 1 and scores[RECALL] == 1
    stats = tmp_path / "ref_stats.npz"
    differ = runner.invoke(app, ["evaluate", str(other), *args, "--json", str(tmp_path / "differ.json"),
                                 "--save-reference-stats", str(stats)])
    assert differ.exit_code == 0, differ.output
    assert FD in differ.output and "N = 40: FD falls with N" in differ.output  # the small-N note
    by_images = json.loads((tmp_path / "differ.json").read_text())["scores"]
    assert by_images[FD] > 1 and {"kd_effnet_lite0_96", PRECISION, RECALL, "coverage_effnet_lite0_96"} <= set(by_images)
    by_stats = runner.invoke(app, ["evaluate", str(other), "--reference", str(stats), "--extractor", EXTRACTOR,
                                   "--json", str(tmp_path / "stats.json")])
    assert by_stats.exit_code == 0, by_stats.output
    from_stats = json.loads((tmp_path / "stats.json").read_text())["scores"]
    assert from_stats[FD] == pytest.approx(by_images[FD], rel=1e-6) and PRECISION not in from_stats


def test_an_adm_reference_batch_gives_fd_from_its_statistics_and_the_rest_from_its_images(tmp_path) -> None:
    """ADM's reference files hold the images (precision / recall) and the whole data set's mu / sigma
    (FID), float32, and sFID's mu_s / sigma_s: FD must come from the stored statistics."""
    from analysis.fidelity import extract_features

    ref, gen = scenes(40, 1), save_images(tmp_path / "gen.npz", scenes(40, 2))
    wider = extract_features(torch.cat([ref, scenes(40, 4)]), extractor=EXTRACTOR).numpy()  # not ref's own
    batch = tmp_path / "VIRTUAL_ref.npz"
    np.savez(batch, arr_0=ref.permute(0, 2, 3, 1).numpy(), mu=wider.mean(0).astype(np.float32),
             sigma=np.cov(wider, rowvar=False).astype(np.float32), mu_s=np.zeros(3), sigma_s=np.eye(3))
    from analysis.sample_scores import score_sample_file

    scores, protocol, notes = score_sample_file(gen, batch, extractor=EXTRACTOR, kid_subsets=10)
    generated = extract_features(load_images(gen)[0], extractor=EXTRACTOR)
    expected = frechet_distance_to_statistics(generated, torch.from_numpy(wider.mean(0).astype(np.float32)).double(),
                                              torch.from_numpy(np.cov(wider, rowvar=False).astype(np.float32)).double())
    assert scores[FD] == pytest.approx(expected, rel=1e-9) and protocol["fd_against"] == "the reference file's stored mu / sigma"
    assert {PRECISION, RECALL, "kd_effnet_lite0_96"} <= set(scores) and protocol["n_reference"] == 40
    assert any("does not name the network" in n for n in notes) and any("sFID" in n for n in notes)
    _, _, other = score_sample_file(save_images(tmp_path / "small.npz", scenes(40, 5, (16, 16))), batch,
                                    extractor=EXTRACTOR, kid_subsets=10)
    assert any("samples are (16, 16) px, the reference (32, 32) px" in n for n in other)


def test_statistics_of_another_network_are_refused_in_one_line(tmp_path) -> None:
    samples = save_images(tmp_path / "gen.npz", scenes(8, 3))
    wide = tmp_path / "inception_stats.npz"
    np.savez(wide, mu=np.zeros(2048), sigma=np.eye(2048))  # ADM's reference batches: 2048-d Inception pool features
    out = CliRunner().invoke(app, ["evaluate", str(samples), "--reference", str(wide), "--extractor", EXTRACTOR])
    assert out.exit_code == 2 and "inception_stats.npz: mu (2048,) and sigma (2048, 2048)" in out.output
    assert "--extractor inception --inception-weights" in out.output
    named = tmp_path / "named.npz"
    save_statistics(named, torch.randn(10, 1280, dtype=torch.float64), "effnet-lite0")
    out = CliRunner().invoke(app, ["evaluate", str(samples), "--reference", str(named), "--extractor", EXTRACTOR])
    assert out.exit_code == 2 and "made with the effnet-lite0 extractor" in out.output


def test_the_controls_read_samples_a_generation_folder_kept_before_samples_npz(tmp_path) -> None:
    from pae_lab.plan import layout
    from pae_lab.stages.controls import last_samples

    images = scenes(4, 6)
    np.save(tmp_path / layout.SAMPLES_UNLABELLED, images.numpy())
    assert torch.equal(last_samples(tmp_path), images)
    save_images(tmp_path / layout.SAMPLES, scenes(4, 7))
    assert torch.equal(last_samples(tmp_path), scenes(4, 7))  # the labelled file first


def test_evaluate_gives_adms_suite_against_images_and_against_their_statistics(tmp_path) -> None:
    """With Inception (random weights of the real architecture) and a DINOv2-shaped timm ViT: IS, sFID and
    fd_dinov2 beside FID; the reference's statistics file holds mu_s / sigma_s under ADM's keys, and FID and
    sFID from it equal FID and sFID from the reference images' features (5 images: the networks are slow
    on a CPU)."""
    from weights_fixture import TINY_VIT, random_inception_weights, random_vit_weights

    inception, vit = tmp_path / "inception.pth", tmp_path / "vit.pth"
    random_inception_weights(inception)
    random_vit_weights(vit)
    ref, samples = save_images(tmp_path / "ref.npz", scenes(5, 1)), save_images(tmp_path / "samples.npz", scenes(5, 2))
    args = ["--extractor", "inception", "--inception-weights", str(inception), "--kid-subsets", "5"]
    runner, stats = CliRunner(), tmp_path / "ref_stats.npz"
    out = runner.invoke(app, ["evaluate", str(samples), "--reference", str(ref), *args, "--dinov2-weights", str(vit),
                              "--dinov2-model", TINY_VIT, "--save-reference-stats", str(stats), "--json", str(tmp_path / "images.json")])
    assert out.exit_code == 0, out.output
    found = json.loads((tmp_path / "images.json").read_text())
    by_images, protocol = found["scores"], found["protocol"]
    assert by_images["sfid"] > 0 and by_images["fid"] > 0 and by_images["is"] >= 1 and by_images["fd_dinov2"] > 0
    assert {"precision", "recall", "kid"} <= set(by_images) and protocol["sfid_against"] == "the reference images' features"
    assert protocol["dinov2_model"] == TINY_VIT and not any("skipped" in n for n in found["notes"])
    with np.load(stats) as stored:
        assert stored["mu_s"].shape == (2023,) and stored["sigma_s"].shape == (2023, 2023)
    out = runner.invoke(app, ["evaluate", str(samples), "--reference", str(stats), *args, "--json", str(tmp_path / "stats.json")])
    assert out.exit_code == 0, out.output
    found = json.loads((tmp_path / "stats.json").read_text())
    by_stats = found["scores"]
    assert by_stats["fid"] == pytest.approx(by_images["fid"], rel=1e-6) and by_stats["sfid"] == pytest.approx(by_images["sfid"], rel=1e-6)
    assert by_stats["is"] == by_images["is"] and found["protocol"]["sfid_against"] == "the reference file's stored mu_s / sigma_s"
    assert sum("fd_dinov2 skipped" in n for n in found["notes"]) == 1  # no DINOv2 weights named this time: one line
