"""The teacher's ceiling and the oracle control prior on tiny procedural scenes, with known answers."""
import numpy as np
import pytest
import torch

from analysis.panel_config import PanelConfig
from analysis.teacher import pooled_pixels, row_name, teacher_ceiling
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
    out = teacher_ceiling({"oracle": (feats["val"], feats["train"]),
                           "pooled_pixels": (pooled_pixels(val.images, 4), pooled_pixels(train.images, 4))},
                          val.labels, train.labels, val.segments, cfg)
    assert out["oracle"]["gsq"] == pytest.approx(1.0) and out["oracle"]["linprobe"] == pytest.approx(1.0)
    assert out["oracle"]["ssc"] > out["pooled_pixels"]["ssc"] - 0.05 and 0 <= out["pooled_pixels"]["ssc"] <= 1
    assert set(out["pooled_pixels"]) >= {"ssc", "coherence", "gsq", "linprobe", "knn"}
    assert row_name("refined") == "teacher:refined" and row_name("pooled_pixels") == "reference:pooled_pixels"


def test_pae_lab_teacher_compares_the_oracle_with_a_brief_baseline_and_reuses_nothing_it_should_not(tmp_path):
    """The oracle writes the class into every token (GSQ near 1): a baseline trained 4 steps cannot
    match it, so the check must call the teacher stronger on GSQ. The shared stages land in the
    study's own folder (the study then reuses them); the baseline run stays in a scratch folder."""
    import copy
    import subprocess
    import sys

    import yaml

    from conftest import TINY

    cfg = copy.deepcopy(TINY)
    cfg.update(name="check", output_dir=str(tmp_path / "study"), prior={"name": "oracle"})
    path = tmp_path / "check.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-m", "pae_lab", "teacher", str(path), "--steps", "4", "--seeds", "2"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "GSQ: refined teacher" in out.stdout and "the teacher is stronger: SCR has room to raise GSQ" in out.stdout
    assert "baseline_latent" in out.stdout and "4 tokenizer steps" in out.stdout
    study = tmp_path / "study"
    assert (study / "shared" / "teacher").is_dir() and not (study / "runs").exists()
    assert (study / "teacher_check" / "shared").resolve() == (study / "shared").resolve()


def test_a_teacher_below_the_latent_is_called_weaker():
    from pae_lab.execution.teacher_check import verdicts

    rows = {"raw_prior": {"ssc_ami": 0.3, "gsq": 0.2}, "refined": {"ssc_ami": 0.26, "gsq": 0.11},
            "pooled_pixels": {"ssc_ami": 0.59, "gsq": 0.15}, "baseline_latent": {"ssc_ami": 0.45, "gsq": 0.10},
            "baseline_latent_sd": {"ssc_ami": 0.02, "gsq": 0.01}}
    lines = verdicts(rows, 100)
    assert "the teacher is WEAKER: SSR can only pull SSC (AMI) down" in lines[0]
    assert "too close to call" in lines[1]  # 0.11 vs 0.10 with a seed sd of 0.01: not 2 sd apart
    assert "colour alone gives the segments away" in lines[2]
    rows["baseline_latent_sd"]["gsq"] = 0.004
    assert "the teacher is stronger: SCR has room to raise GSQ" in verdicts(rows, 100)[1]
    rows["baseline_latent_sd"] = {"ssc_ami": float("nan"), "gsq": float("nan")}  # one seed: no spread, the sign alone
    lines = verdicts(rows, 100)
    assert "(one seed: no spread)" in lines[0] and "WEAKER" in lines[0] and "stronger" in lines[1]
