"""The controls every generation score must pass, on cases whose answer is known.

Real images through the embedded extractor for blur and the constant decoder (a perfect generator:
fresh images of the same distribution; an identity decoder); a well-separated Gaussian mixture in
feature space for dropped modes, where the answer does not depend on what the extractor sees.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.control_verdicts import verdicts
from analysis.controls import blurred, constant_like, measure_controls, mode_subsets
from analysis.fidelity_names import fidelity_columns
from analysis.set_scores import set_scores
from analysis.suite_scores import Suite, suite_scores
from pae_lab.data.scenes import scenes

N = 512
COLS = fidelity_columns("effnet-lite0-96")
SCORED = COLS.set_scored() + COLS.suite()  # IS from EfficientNet's ImageNet head beside FD's set
DIRECTIONS = {c: COLS.direction(c) for c in SCORED}


def extract(images: torch.Tensor) -> dict[str, torch.Tensor]:
    return Suite("effnet-lite0-96").features(torch.as_tensor(images), batch_size=32)


@pytest.fixture(scope="module")
def image_controls():
    """A perfect generator (other images of the same scenes) and an identity decoder, under every control."""
    reference = scenes(32, N, "train", seed=0)
    samples = scenes(32, N, "val", seed=0)
    floor = scenes(32, N, "val", seed=1)
    real = extract(reference.images)["fid"]  # an identity decoder: its reconstructions are the reference

    def score(gen, own):
        return {**set_scores(gen["fid"], real, own["fid"], COLS, prdc_k=3, kid_subsets=10, seed=0), **suite_scores(gen, {}, COLS)}

    rows = measure_controls(torch.from_numpy(samples.images), torch.from_numpy(reference.images),
                            torch.from_numpy(floor.images), floor.labels, originals=torch.from_numpy(floor.images), extract=extract,
                            extract_own=extract,
                            score=score, directions=DIRECTIONS, roles=COLS.roles(), knn_own=list(COLS.knn("own").values()),
                            blur_sigmas=[0.5, 2.0], mode_keep=0.5, seed=0)
    table = pd.DataFrame(rows)
    return table, verdicts(table, SCORED, COLS.roles()).set_index("column")


def test_blur_worsens_gfd_and_rewards_lfd(image_controls) -> None:
    """gFD against real images must rise under blur; lFD, which compares the samples with the
    decoder's own (here blurred) images, falls: it rewards a decoder that shows less."""
    table, verdict = image_controls
    blur = table[table["control"] == "blur"].set_index(["column", "param"])
    for sigma in (0.5, 2.0):
        assert blur.loc[(COLS.fd, sigma), "worse"], sigma
    assert not all(blur.loc[(COLS.lfd, s), "worse"] for s in (0.5, 2.0))
    assert verdict.loc[COLS.fd, "passes_controls"] and not verdict.loc[COLS.lfd, "passes_controls"]
    assert "blur" in verdict.loc[COLS.lfd, "failed_controls"]


def test_a_constant_decoder_cannot_win(image_controls) -> None:
    """A decoder that shows one image whatever the latent scores lFD = 0: lFD fails. Precision fails
    too: the mean image sits inside the reals' k-NN balls, so a constant decoder has precision 1
    (fidelity alone cannot see it). gFD, KD and recall come out worse, as every accepted score must.
    Coverage is not required to pass here: against the mean of five random subsets, half of these
    scenes' classes cover as many reals as all of them (the classes overlap in the extractor's
    features); a single random draw let it pass by luck."""
    table, verdict = image_controls
    constant = table[table["control"] == "constant"].set_index("column")
    assert constant.loc[COLS.lfd, "value"] == pytest.approx(0, abs=1e-6) and not constant.loc[COLS.lfd, "worse"]
    assert constant.loc[COLS.precision, "value"] == 1.0 and "constant" in verdict.loc[COLS.precision, "failed_controls"]
    accepted = [c for c in verdict.index if verdict.loc[c, "passes_controls"] == True]  # noqa: E712
    assert {COLS.fd, COLS.kd, COLS.recall} <= set(accepted)
    # against the decoder's own (constant) images the k-NN radii are 0: those scores are undefined and fail
    assert np.isnan(constant.loc[COLS.lcoverage, "value"]) and not verdict.loc[COLS.lcoverage, "passes_controls"]
    for column in accepted:
        assert constant.loc[column, "worse"], column


def test_the_inception_score_is_under_the_controls_too(image_controls) -> None:
    """IS (here from EfficientNet's ImageNet head) claims confident and varied classes: a constant
    decoder gives exactly 1 (one class distribution), and on these scenes blur and dropping half the
    classes lower it as they must."""
    table, verdict = image_controls
    mine = table[table["column"] == COLS.isc].set_index(["control", "param"])
    assert mine.loc[("constant", ""), "value"] == pytest.approx(1.0)
    assert mine.loc[("actual", ""), "value"] > 2 and mine["worse"].dropna().all() and len(mine["worse"].dropna()) == 4
    assert verdict.loc[COLS.isc, "passes_controls"] == True  # noqa: E712


def test_sfid_and_fd_dinov2_are_scored_under_every_control_they_must_pass(tmp_path) -> None:
    """With Inception's and DINOv2's weights named (random stand-ins: the code path, not a verdict),
    every control scores sFID, FD-DINOv2 and Inception's IS, each against what it is compared with."""
    from weights_fixture import TINY_VIT, random_inception_weights, random_vit_weights

    inception, vit = tmp_path / "pt_inception-random.pth", tmp_path / "vit.pth"
    random_inception_weights(inception)
    random_vit_weights(vit)
    suite = Suite("inception", inception, vit, TINY_VIT)
    cols = suite.columns()
    reference, samples, floor = (scenes(32, 8, split, seed=seed) for split, seed in (("train", 0), ("val", 0), ("val", 1)))
    real = suite.features(torch.from_numpy(reference.images))
    rows = pd.DataFrame(measure_controls(
        torch.from_numpy(samples.images), torch.from_numpy(reference.images), torch.from_numpy(floor.images), floor.labels,
        originals=torch.from_numpy(floor.images), extract=lambda images: suite.features(torch.as_tensor(images)),
        extract_own=lambda images: {},  # the suite never reads the decoder's own set
        score=lambda gen, own: suite_scores(gen, real, cols), directions={c: cols.direction(c) for c in cols.suite()},
        roles=cols.roles(), knn_own=[], blur_sigmas=[1.0], mode_keep=0.5, seed=0, mode_draws=2))
    assert set(cols.suite()) == {cols.isc, cols.sfd, cols.dino_fd} == {"is", "sfid", "fd_dinov2"}
    for column in cols.suite():
        mine = rows[rows["column"] == column].set_index("control")
        assert set(mine.index) == {"actual", "blur", "constant", "floor", "modes"}, column
        assert mine.loc[["blur", "constant", "modes"], "worse"].notna().all() and mine.loc["floor", "worse"] is None, column
    assert rows[(rows["column"] == "is") & (rows["control"] == "constant")]["value"].item() == pytest.approx(1.0)


def test_floor_is_measured_without_a_verdict(image_controls) -> None:
    table, _ = image_controls
    floor = table[table["control"] == "floor"]
    assert set(floor["column"]) == set(SCORED) - {COLS.dino_fd} and floor["worse"].isna().all()  # no DINOv2 weights here


def test_dropping_modes_always_hurts_fd_kd_recall_and_coverage() -> None:
    """Eight well-separated modes: half of them scores worse than a random subset of the same size
    on every score that claims diversity, over several draws."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 6, (8, 32))

    def mixture(n: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
        r = np.random.default_rng(seed)
        labels = r.integers(0, 8, n)
        return torch.from_numpy(centres[labels] + r.normal(0, 1, (n, 32))), labels

    real, _ = mixture(400, 1)
    for seed in range(5):
        gen, labels = mixture(400, 10 + seed)
        kept, (random,) = mode_subsets(labels, 0.5, seed)
        assert len(kept) == len(random) and len(np.unique(labels[kept])) == 4
        dropped = set_scores(gen[kept], real, real, COLS, prdc_k=3, kid_subsets=20, seed=0)
        fair = set_scores(gen[random], real, real, COLS, prdc_k=3, kid_subsets=20, seed=0)
        for column in (COLS.fd, COLS.kd, COLS.recall, COLS.coverage):
            worse = dropped[column] > fair[column] if DIRECTIONS[column] == "lower" else dropped[column] < fair[column]
            assert worse, (seed, column, dropped[column], fair[column])


def test_blur_and_constant_images_are_what_they_claim() -> None:
    images = torch.from_numpy(scenes(16, 8, "train", seed=0).images)
    assert torch.equal(blurred(images, 0.01), images)  # a blur far below a pixel changes nothing
    soft = blurred(images, 2.0)
    assert soft.dtype == torch.uint8 and soft.float().std() < images.float().std()
    flat = constant_like(images)
    assert flat.shape == images.shape and (flat == flat[0]).all()


def test_verdicts_count_failures_per_control_and_say_not_measured() -> None:
    rows = pd.DataFrame([
        {"control": "blur", "param": 1.0, "column": COLS.fd, "worse": True},
        {"control": "blur", "param": 1.0, "column": COLS.fd, "worse": False},
        {"control": "constant", "param": "", "column": COLS.fd, "worse": True},
        {"control": "modes", "param": 0.5, "column": COLS.fd, "worse": True},
    ])
    found = verdicts(rows, [COLS.fd, COLS.val_loss], COLS.roles()).set_index("column")
    assert found.loc[COLS.fd, "passes_controls"] is False
    assert "blur 1.0 px does not make it worse (1 of 2 runs)" in found.loc[COLS.fd, "failed_controls"]
    assert found.loc[COLS.val_loss, "passes_controls"] is None


def _study(**evaluation):
    from pae_lab.config.schema import StudyConfig

    return StudyConfig.model_validate({"name": "t", "evaluation": {"extractor": "effnet-lite0-96", **evaluation}})


def test_a_target_that_fails_its_controls_is_not_read_unless_the_study_says_so(image_controls) -> None:
    from pae_lab.results.aggregate import accepted_target

    _, verdict = image_controls
    verdict = verdict.reset_index()
    target, why = accepted_target(_study(correlation_target="lfd"), verdict)
    assert target == COLS.fd and "fails its controls" in why and "reads fd_effnet_lite0_96 instead" in why
    target, why = accepted_target(_study(correlation_target="lfd", allow_failed_target=True), verdict)
    assert target == COLS.lfd and "kept by evaluation.allow_failed_target" in why
    target, why = accepted_target(_study(correlation_target="gfd"), verdict)
    assert target == COLS.fd and why == f"{COLS.fd} passed its controls"


def test_the_frontier_distance_gets_controls_of_its_own() -> None:
    """A blur that costs 3 dB and raises gFD by 10% makes gFD worse; on a frontier that falls 0.1 log
    units per dB the line rises 0.3 there, so the distance improves by ~0.2: it fails its blur control
    while gFD passes. A frontier three times flatter (0.01 per dB) keeps the blur visible."""
    from analysis.control_verdicts import frontier_rows
    from analysis.frontier import Frontier

    rows = pd.DataFrame([
        {"variant": "baseline", "seed": 0, "control": c, "param": p, "column": col, "value": v, "compared_with": cw, "worse": w}
        for c, p, col, v, cw, w in [
            ("actual", "", COLS.fd, 1000.0, 1000.0, None), ("actual", "", "psnr", 20.0, 20.0, None),
            ("blur", 1.0, COLS.fd, 1100.0, 1000.0, True), ("blur", 1.0, "psnr", 17.0, 20.0, None),
            ("constant", "", COLS.fd, 9000.0, 1000.0, True), ("constant", "", "psnr", 10.0, 20.0, None),
            ("modes", 0.5, COLS.fd, 1200.0, 1050.0, True)]])

    def verdict(slope: float) -> pd.Series:
        fit = Frontier(0.0, slope, 0.01, 9, 20.0, 10.0, (15.0, 25.0), ("baseline", "baseline_w2"))
        found = frontier_rows(rows, fit, COLS.fd, COLS.frontier)
        assert set(found["control"]) == {"actual", "blur", "constant", "modes"}
        return verdicts(found, [COLS.frontier], COLS.roles()).set_index("column").loc[COLS.frontier]

    steep = verdict(-0.1)
    assert not steep["passes_controls"] and "blur 1.0 px does not make it worse" in steep["failed_controls"]
    assert verdict(-0.01)["passes_controls"] == True  # noqa: E712
