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


def scenes(n: int, seed: int) -> torch.Tensor:
    """Smooth random images (blobs, not noise), uint8 [N, 3, 32, 32]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    return (torch.nn.functional.interpolate(coarse, size=32, mode="bilinear", align_corners=False) * 255).round().to(torch.uint8)


def test_images_round_trip_channels_last_with_labels(tmp_path) -> None:
    images, labels = scenes(6, 0), np.arange(6)
    path = save_images(tmp_path / "s.npz", images, labels)
    with np.load(path) as raw:
        assert raw["arr_0"].shape == (6, 32, 32, 3) and raw["arr_0"].dtype == np.uint8  # ADM's layout
    back, got = load_images(path)
    assert torch.equal(back, images) and list(got) == list(labels)


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
    assert FD in differ.output and "only 40 samples" in differ.output  # the small-N note
    by_images = json.loads((tmp_path / "differ.json").read_text())["scores"]
    assert by_images[FD] > 1 and {"kd_effnet_lite0_96", PRECISION, RECALL, "coverage_effnet_lite0_96"} <= set(by_images)
    by_stats = runner.invoke(app, ["evaluate", str(other), "--reference", str(stats), "--extractor", EXTRACTOR,
                                   "--json", str(tmp_path / "stats.json")])
    assert by_stats.exit_code == 0, by_stats.output
    from_stats = json.loads((tmp_path / "stats.json").read_text())["scores"]
    assert from_stats[FD] == pytest.approx(by_images[FD], rel=1e-6) and PRECISION not in from_stats


def test_statistics_of_another_network_are_refused_in_one_line(tmp_path) -> None:
    samples = save_images(tmp_path / "gen.npz", scenes(8, 3))
    wide = tmp_path / "inception_stats.npz"
    np.savez(wide, mu=np.zeros(2048), sigma=np.eye(2048))  # ADM's reference batches: 2048-d Inception pool features
    out = CliRunner().invoke(app, ["evaluate", str(samples), "--reference", str(wide), "--extractor", EXTRACTOR])
    assert out.exit_code == 2 and "inception_stats.npz: statistics of 2048-d features" in out.output
    named = tmp_path / "named.npz"
    save_statistics(named, torch.randn(10, 1280, dtype=torch.float64), "effnet-lite0")
    out = CliRunner().invoke(app, ["evaluate", str(samples), "--reference", str(named), "--extractor", EXTRACTOR])
    assert out.exit_code == 2 and "made with the effnet-lite0 extractor" in out.output
