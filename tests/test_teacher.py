"""The teacher's ceiling and the oracle control prior on tiny procedural scenes, with known answers."""
import numpy as np
import pytest
import torch

from analysis.panel_config import PanelConfig
from analysis.teacher import flat_rows, pooled_pixels, row_name, teacher_results
from pae_lab.data import build_dataset
from pae_lab.priors import PRIORS, build_prior


@pytest.fixture(scope="module")
def scenes():
    return {s: build_dataset("scenes", resolution=16, size=48, split=s, seed=0) for s in ("train", "val")}


def test_oracle_prior_encodes_segments_and_class(scenes):
    prior = build_prior("oracle", segment_dim=8, max_segments=8)
    assert "oracle" in PRIORS.names() and prior.dim == 8 + 8
    f = torch.from_numpy(prior.annotated_features(scenes["val"], 4).astype(np.float32))
    assert f.shape == (48, 16, 4, 4)
    onehot = f[:, 8:].mean(dim=(2, 3)).argmax(1).numpy()
    assert (onehot == scenes["val"].labels).all()
    # a cell inside one segment carries exactly that segment's embedding row (unit norm)
    single = torch.isclose(f[:, :8].norm(dim=1), torch.tensor(1.0), atol=1e-3)
    assert single.float().mean() > 0.2
    with pytest.raises(TypeError, match="annotated_features"):
        prior.features(torch.rand(1, 3, 16, 16), 4)


def test_ceiling_rows_know_their_answers(scenes):
    val, train = scenes["val"], scenes["train"]
    prior = build_prior("oracle", segment_dim=8, max_segments=8)
    feats = {s: torch.from_numpy(prior.annotated_features(scenes[s], 4).astype(np.float32)) for s in scenes}
    cfg = PanelConfig(n_images=48, gsq_classes_per_repeat=8, gsq_repeats=1, knn_k=3)
    out = flat_rows(teacher_results({"oracle": (feats["val"], feats["train"]),
                                     "pooled_pixels": (pooled_pixels(val.images, 4), pooled_pixels(train.images, 4))},
                                    val.labels, train.labels, val.segments, cfg))
    assert out["oracle"]["gsq"] == pytest.approx(1.0) and out["oracle"]["linprobe"] == pytest.approx(1.0)
    assert out["oracle"]["ssc"] > out["pooled_pixels"]["ssc"] - 0.05 and 0 <= out["pooled_pixels"]["ssc"] <= 1
    assert set(out["pooled_pixels"]) >= {"ssc", "coherence", "gsq", "linprobe", "knn"}
    assert row_name("refined") == "teacher:refined" and row_name("pooled_pixels") == "reference:pooled_pixels"


def test_the_network_free_controls_see_what_they_claim(scenes):
    """Gradient energy sees edges and texture, not colour; position is the same map for every image."""
    from analysis.teacher import gradient_energy, position

    images = scenes["val"].images
    energy = gradient_energy(images, 4)
    assert energy.shape == (len(images), 4, 4, 4) and (energy >= 0).all()
    flat = np.full_like(images[:2], 200)
    assert gradient_energy(flat, 4).abs().max() == 0  # a flat colour has no texture, whatever its colour
    stripes = np.zeros((1, 3, 16, 16), np.uint8)
    stripes[..., ::2] = 255  # vertical stripes: all horizontal change, no vertical
    e = gradient_energy(stripes, 4)[0].mean(dim=(1, 2))
    assert e[0] == pytest.approx(1.0) and e[1] == 0
    where = position(3, 4)
    assert where.shape == (3, 3, 4, 4) and torch.equal(where[0], where[2])
    assert where[0, 0, 0, 0] == -1 and where[0, 0, 0, -1] == 1 and where[0, 1, -1, 0] == 1


def test_pixel_patches_keep_every_pixel_of_each_cell():
    """Each cell's channels are its own f x f pixels, so the map decodes back to the image exactly."""
    from analysis.teacher import pixel_patches

    images = np.random.default_rng(0).integers(0, 256, (2, 3, 16, 16), dtype=np.uint8)
    patches = pixel_patches(images, 4)
    assert patches.shape == (2, 48, 4, 4)
    assert torch.equal(torch.nn.functional.pixel_shuffle(patches, 4), torch.from_numpy(images).float() / 255)
    assert pixel_patches(images[:, :, :15, :15], 4).shape == (2, 27, 4, 4)  # 15 px: area-resized to 12, f = 3


def test_the_latent_is_judged_below_a_control_only_beyond_the_images_error():
    from pae_lab.execution.teacher_check import BASELINE, latent_below

    rows = {BASELINE: {"gsq": 0.14, "gsq_se": 0.01}, "far": {"gsq": 0.30, "gsq_se": 0.01},
            "near": {"gsq": 0.15, "gsq_se": 0.01}, "under": {"gsq": 0.10, "gsq_se": 0.01}}
    said = latent_below(rows, "gsq", {c: rows[c]["gsq"] for c in ("far", "near", "under")})
    assert "lies below far (by 0.160, error ±0.028)" in said  # 1.96 x sqrt(2) x 0.01
    assert "not distinguishable from near" in said and "under" not in said
    assert "error ±0.050" in latent_below(rows, "gsq", {"far": 0.30}, seed_band=0.0412)  # the seeds' spread counts too
    rows["bare"] = {"gsq": 0.30}  # no image error: not judged, however wide the gap
    assert latent_below(rows, "gsq", {"bare": 0.30}) == "; below bare, not judged (no image error)"
    assert latent_below(rows, "ssc_ami", {"far": 0.3}) == ""  # a metric the latent was not scored on


def test_a_gap_the_shared_images_explain_is_judged_on_the_paired_error():
    """Two rows scored on the same images move together image by image: the per-image gaps, not each
    row's own spread, say how far another draw of images would move their difference."""
    from pae_lab.execution.teacher_check import BASELINE, latent_below

    rng = np.random.default_rng(0)
    latent = rng.uniform(0.0, 0.4, 400)  # a wide spread over images: each row's own error is large
    control = latent + 0.01 + rng.normal(0, 0.01, 400)  # but the control is above it image by image
    rows = {BASELINE: {"ssc_ami": latent.mean(), "ssc_ami_se": latent.std(ddof=1) / 20},
            "pixels": {"ssc_ami": control.mean(), "ssc_ami_se": control.std(ddof=1) / 20}}
    alone = latent_below(rows, "ssc_ami", {"pixels": rows["pixels"]["ssc_ami"]})
    assert "not distinguishable from pixels" in alone  # independent errors: 1.96 x sqrt(2) x 0.0058 > 0.01
    items = {BASELINE: {"ssc_ami": latent}, "pixels": {"ssc_ami": control}}
    paired = latent_below(rows, "ssc_ami", {"pixels": rows["pixels"]["ssc_ami"]}, items=items)
    assert "lies below pixels (by 0.010, error ±0.001, images paired)" in paired, paired  # 1.96 x 0.01 / 20
    shuffled = {**items, "pixels": {"ssc_ami": rng.permutation(control)}}  # unpaired images: no gain from pairing
    assert "not distinguishable from pixels" in latent_below(rows, "ssc_ami", {"pixels": rows["pixels"]["ssc_ami"]},
                                                            items=shuffled)


def test_ssc_keeps_each_images_ami_in_image_order(scenes):
    from analysis.spatial import ssc
    from analysis.teacher import item_rows, teacher_results

    val = scenes["val"]
    feats = pooled_pixels(val.images, 4)
    segments = torch.from_numpy(np.asarray(val.segments))
    one = torch.zeros_like(segments)  # images with one segment are skipped: NaN in their place
    mixed = torch.where(torch.arange(len(segments))[:, None, None] % 2 == 0, segments, one)
    found = ssc(feats, mixed)
    assert len(found.items["ami"]) == len(val.images) and np.isnan(found.items["ami"][1::2]).all()
    kept = found.items["ami"][0::2]
    assert np.nanmean(kept) == pytest.approx(found.extra["ami"])
    assert np.allclose(kept, ssc(feats[0::2], segments[0::2]).items["ami"], equal_nan=True)
    cfg = PanelConfig(n_images=48, gsq_classes_per_repeat=8, gsq_repeats=1, knn_k=3)
    rows = item_rows(teacher_results({"pixels": (feats, feats)}, val.labels, val.labels, np.asarray(val.segments), cfg))
    assert list(rows["pixels"]) == ["ssc_ami"] and len(rows["pixels"]["ssc_ami"]) == len(val.images)


def _check_study(tmp_path, **overrides):
    import copy

    import yaml

    from conftest import TINY
    from pae_lab.config.schema import StudyConfig

    cfg = copy.deepcopy(TINY)
    cfg.update(name="check", output_dir=str(tmp_path / "study"), prior={"name": "oracle"}, **overrides)
    path = tmp_path / "check.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, StudyConfig.model_validate(cfg)


def test_pae_lab_teacher_calls_the_oracle_stronger_and_leaves_the_study_its_shared_stages(tmp_path):
    """The oracle's segment embeddings give the segments away (SSC far above a 6-step latent's): the
    check must call the teacher stronger on SSC. The shared stages the tokenizer reads land in the
    study's own folder; the baseline runs stay in a scratch folder that links to them relatively."""
    import os
    import subprocess
    import sys

    path, _ = _check_study(tmp_path)
    out = subprocess.run([sys.executable, "-m", "pae_lab", "teacher", str(path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    said = " ".join(out.stdout.split())  # the console wraps long lines at its width
    assert "the teacher is stronger: SSR has room to raise SSC (AMI)" in said and "(95%, 3 seeds)" in said
    assert "refined sd (3 refiner seeds)" in out.stdout and "over 3 refiner seeds the target reads" in said
    study = tmp_path / "study"
    assert (study / "shared" / "refine").is_dir() and not (study / "runs").exists()
    assert not (study / "shared" / "reference").exists()  # not read by the tokenizer: left to the study
    link = study / "teacher_check" / "shared"
    assert os.readlink(link) == "../shared" and link.resolve() == (study / "shared").resolve()
    assert len(list((study / "teacher_check" / "runs" / "baseline").glob("seed*"))) == 3


def test_the_check_scores_every_row_as_the_teacher_stage_does(tmp_path):
    """Its teacher rows equal the teacher stage's teacher.json to the last bit, and a baseline trained for the
    study's own steps is the study's baseline: the same tokenizer hash as the study's run."""
    import json

    from rich.console import Console

    from pae_lab.execution.driver import Driver
    from pae_lab.execution.teacher_check import brief_baseline, teacher_check
    from pae_lab.plan import layout
    from pae_lab.plan.runs import expand

    _, study = _check_study(tmp_path, variants=["baseline"], seeds=[0])
    rows, how = teacher_check(study, seeds=2, log=lambda _: None)
    spread, items = how.pop("refiner"), how.pop("items")
    assert len(items["baseline_latent"]["ssc_ami"]) == len(items["pooled_pixels"]["ssc_ami"]) == study.data.val_size
    for row in ("pooled_pixels", "baseline_latent"):  # the latent's: the seeds' per-image mean
        assert np.nanmean(items[row]["ssc_ami"]) == pytest.approx(rows[row]["ssc_ami"])
    assert how == {"steps": study.training.steps, "seeds": 2, "trained": True, "study_steps": study.training.steps}
    gsq = spread["refined"]["gsq"]  # the study's own refiner first, then two more seeds
    assert len(gsq) == 3 and gsq[0] == rows["refined"]["gsq"] and len(set(gsq)) > 1
    assert Driver(study, Console(quiet=True)).run().failed == []
    (teacher,) = (study.study_dir() / "shared" / "teacher").iterdir()
    stored = json.loads((teacher / "teacher.json").read_text())["rows"]
    np.testing.assert_equal({name: rows[name] for name in stored}, stored)  # NaN == NaN: position has no GSQ
    (own,) = expand(study)
    check = [r for r in expand(brief_baseline(study, study.training.steps, 2)) if r.seed == 0][0]
    assert check.hashes["tokenizer"] == own.hashes["tokenizer"]
    assert (study.study_dir() / "teacher_check" / "runs").is_dir()
    said: list[str] = []  # another teacher: refined again, the baselines it is judged against kept
    other = study.model_copy(update={"refine": study.refine.model_copy(update={"seed": study.refine.seed + 7})})
    teacher_check(other, seeds=2, refiner_seeds=1, log=said.append)
    assert "shared stage refine: done" in " ".join(said), said
    assert [line for line in said if "tokenizer" in line] == [f"baseline tokenizer seed {s}: cached" for s in (0, 1)]
    apart = other.model_copy(update={"output_dir": str(tmp_path / "apart")})  # and kept rightly: trained afresh
    teacher_check(apart, seeds=1, refiner_seeds=1, log=lambda _: None)  # on the other teacher, the same latents
    latents = [expand(brief_baseline(s, s.training.steps, 1))[0].stage_dir("tokenizer") / layout.latents("val")
               for s in (study, apart)]
    np.testing.assert_array_equal(*(np.load(f) for f in latents))
    Driver(study, Console(quiet=True)).prepare(force=True)  # `run --force`: the check's baselines go too
    assert not (study.study_dir() / "teacher_check").exists() and not (study.study_dir() / "shared").exists()


def test_a_teacher_outside_the_latents_interval_is_judged_and_one_inside_is_not():
    from pae_lab.execution.teacher_check import verdicts

    rows = {"raw_prior": {"ssc_ami": 0.3, "gsq": 0.2}, "refined": {"ssc_ami": 0.26, "gsq": 0.11},
            "pooled_pixels": {"ssc_ami": 0.59, "ssc_ami_se": 0.005, "gsq": 0.15},
            "baseline_latent": {"ssc_ami": 0.45, "ssc_ami_se": 0.005, "gsq": 0.10},
            "baseline_latent_sd": {"ssc_ami": 0.02, "gsq": 0.01}}
    how = {"steps": 200, "seeds": 3, "trained": True, "study_steps": 200}
    lines = verdicts(rows, how)
    assert "the teacher is WEAKER: SSR can only pull SSC (AMI) down" in lines[0]
    # 0.11 vs 0.10 +- t(0.975, 2) 0.01 / sqrt(3) = 0.025: inside
    assert "not distinguishable at 3 latent seeds" in lines[1] and "[0.075, 0.125]" in lines[1]
    assert "colour alone gives it away: the teacher is no better; the latent lies below pooled pixels" in lines[2]
    assert "images paired" not in lines[2]  # without per-image scores: both rows' errors as if independent
    per_image = {"pooled_pixels": {"ssc_ami": np.full(100, 0.59)}, "baseline_latent": {"ssc_ami": np.full(100, 0.45)}}
    assert "images paired" in verdicts(rows, {**how, "items": per_image})[2]  # the check's per-image scores reach it
    rows["position"] = {"ssc_ami": 0.18}
    rows["refined"]["ssc_ami"] = 0.7  # above every control
    assert "pooled pixels 0.590, position 0.180 -> the teacher beats them all" in verdicts(rows, how)[2]
    rows["refined"]["ssc_ami"], rows["position"]["ssc_ami"] = 0.26, 0.65  # the layout alone beats the teacher
    assert "the layout alone gives it away" in verdicts(rows, how)[2]
    del rows["position"]
    rows["baseline_latent_sd"]["gsq"] = 0.003  # half-width 0.0075: 0.11 is above
    assert "the teacher is stronger: SCR has room to raise GSQ" in verdicts(rows, how)[1]
    assert "(the study trains 400)" in verdicts(rows, {**how, "study_steps": 400})[-1]
    del rows["refined"]["ssc_ami"]
    assert "SSC (AMI): not judged" in verdicts(rows, how)[0]


def test_the_verdict_is_the_studys_own_target_and_says_whether_other_refiner_seeds_agree():
    """GSQ 0.11 vs 0.10 (sd 0.003, 3 seeds: half-width 0.0075) is stronger; refiner seeds reading 0.09 and
    0.13 beside it put one seed on the other side. SCR's own teacher decides GSQ."""
    from pae_lab.execution.teacher_check import verdicts

    rows = {"refined": {"ssc_ami": 0.5, "gsq": 0.11}, "baseline_latent": {"ssc_ami": 0.1, "gsq": 0.10},
            "baseline_latent_sd": {"ssc_ami": 0.01, "gsq": 0.003}}
    how = {"steps": 200, "seeds": 3, "trained": True, "study_steps": 200}
    assert verdicts(rows, how)[1].endswith("the teacher is stronger: SCR has room to raise GSQ")
    scattered = {**how, "refiner": {"refined": {"gsq": [0.11, 0.09, 0.13], "ssc_ami": [0.5, 0.49, 0.52]}}}
    lines = verdicts(rows, scattered)
    assert lines[1].endswith("stronger: SCR has room to raise GSQ; over 3 refiner seeds the target reads 0.090-0.130, "
                             "and 1 of 3 give another")
    assert lines[0].endswith("over 3 refiner seeds the target reads 0.490-0.520, and every seed gives this verdict")
    rows["refined:scr"] = {"gsq": 0.3}
    line = verdicts(rows, scattered)[1]  # its own row, with no seeds of its own
    assert line.startswith("GSQ: refined teacher (scr's own) 0.300") and line.endswith("room to raise GSQ")
