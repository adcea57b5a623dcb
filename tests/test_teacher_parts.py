"""Each regularizer's own teacher (prior.parts): its config, its features and targets, its rows, and
the tokenizer aligning each regularizer to its own target; and the whitened PCA targets."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from conftest import TINY
from pae_lab.config.schema import StudyConfig

PARTS = {"ssr": {"params": {"block": 4}}, "scr": {"params": {"pooled": True}}}


def _study(tmp_path, **overrides) -> StudyConfig:
    cfg = copy.deepcopy(TINY)
    cfg.update(name="parts", output_dir=str(tmp_path / "study"), **overrides)
    return StudyConfig.model_validate(cfg)


def test_a_part_goes_over_the_study_prior_and_names_a_regularizer_that_aligns(tmp_path):
    import re
    from pathlib import Path

    from pae_lab.config.errors import StudyError
    from pae_lab.plan.preflight import check_study

    study = _study(tmp_path, prior={"params": {"input_resolution": 64}, "parts": PARTS})
    assert study.prior.teachers() == [None, "ssr", "scr"]
    assert study.prior.part(None) == ("effnet_lite0", {"input_resolution": 64})
    assert study.prior.part("ssr") == ("effnet_lite0", {"input_resolution": 64, "block": 4})
    other = _study(tmp_path, prior={"params": {"input_resolution": 64}, "parts": {"scr": {"name": "oracle"}}})
    assert other.prior.part("scr") == ("oracle", {})  # another prior: the study's params are not its own
    check_study(study, Path("s.yaml"))
    for parts, message in (({"sr": {}}, "prior.parts.sr: unknown regularizer 'sr'"),
                           ({"vf": {}}, "prior.parts.vf: regularizer 'vf' aligns to no refined target (it reads vfm"),
                           ({"mcr": {}}, "prior.parts.mcr: regularizer 'mcr' aligns to no refined target (it reads no prior"),
                           ({"ssr": {"name": "dino"}}, "prior.parts.ssr.name: unknown prior 'dino'"),
                           ({"ssr": {"params": {"weights": "nowhere.pt"}}},
                            "prior.parts.ssr.params.weights: prior weights file not found: 'nowhere.pt'")):
        with pytest.raises(StudyError, match=re.escape(f"s.yaml: {message}")):
            check_study(_study(tmp_path, prior={"parts": parts}), Path("s.yaml"))
    with pytest.raises(ValueError, match="refine.whiten: true whitens the PCA targets"):
        _study(tmp_path, refine={"whiten": True})


def test_each_regularizer_aligns_to_its_own_target():
    """The objective hands SSR and SCR the target named for each; swapping them changes both terms."""
    from pae_lab.losses.regularizers import build_regularizer
    from pae_lab.models.tokens import gram_distance
    from pae_lab.stages.tokenizer import TokenizerObjective, teacher_of

    class Identity(nn.Module):
        def encode(self, x):
            return x

        def decode(self, z):
            return z

    regs = nn.ModuleDict({"ssr": build_regularizer("ssr"), "scr": build_regularizer("scr"), "mcr": build_regularizer("mcr")})
    assert teacher_of(regs, {"ssr": object()}) == {"ssr": "ssr", "scr": None}  # MCR aligns to no target
    cfg = StudyConfig.model_validate({"name": "x"}).training.model_copy(update={"l1_weight": 0.0})
    cfg.perceptual.weight = 0.0
    objective = TokenizerObjective(Identity(), nn.ModuleDict({k: regs[k] for k in ("ssr", "scr")}),
                                   {"ssr": 1.0, "scr": 1.0}, cfg)
    torch.manual_seed(0)
    x, a, b = torch.rand(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    _, terms, _ = objective(x, {"ssr": a, "scr": b}, None, None, 0, 1.0)
    assert terms["ssr"] == pytest.approx(float(gram_distance(x, a)))
    _, swapped, _ = objective(x, {"ssr": b, "scr": a}, None, None, 0, 1.0)
    assert swapped["ssr"] == pytest.approx(float(gram_distance(x, b)))
    assert swapped["ssr"] != pytest.approx(terms["ssr"]) and swapped["scr"] != pytest.approx(terms["scr"])


def _shared(study: StudyConfig, *names: str) -> dict:
    from pae_lab.plan.graph import ordered
    from pae_lab.plan.layout import StudyLayout
    from pae_lab.plan.runs import shared_plan
    from pae_lab.stages.execute import run_stage
    from pae_lab.tracking.store import RunLogger

    hashes, folders = shared_plan(study)
    root = StudyLayout(study.study_dir()).shared_root
    for stage in [s for s in ordered("shared") if s.name in names]:
        run_stage(stage, study, folders, hashes[stage.name], logger=RunLogger(root, None, None, mirror=False))
    return folders


def test_each_part_has_its_features_targets_and_teacher_rows(tmp_path):
    import json

    from pae_lab.plan import layout

    study = _study(tmp_path, prior={"params": {"input_resolution": 64}, "parts": PARTS})
    folders = _shared(study, "data", "prior", "refine", "teacher")
    grid = study.latent_grid
    base = np.load(folders["prior"] / layout.prior_features("val"))
    ssr = np.load(folders["prior"] / layout.prior_features("val", "ssr"))
    scr = np.load(folders["prior"] / layout.prior_features("val", "scr"))
    assert base.shape[1:] == (112, grid, grid) and ssr.shape[1:] == (40, grid, grid) and scr.shape[1:] == (1280, grid, grid)
    assert np.ptp(scr, axis=(2, 3)).max() == 0 and np.ptp(ssr, axis=(2, 3)).max() > 0  # the pooled head: one vector per image
    for part in (None, "ssr", "scr"):
        assert np.load(folders["refine"] / layout.refined_targets("train", part)).shape[1] == study.tokenizer.latent_channels
    assert (folders["refine"] / layout.refiner("ssr")).is_file()
    stored = json.loads((folders["teacher"] / layout.TEACHER_CEILING).read_text())
    assert stored["teachers"]["ssr"] == {"name": "effnet_lite0", "params": {"input_resolution": 64, "block": 4}}
    rows = stored["rows"]
    assert {"raw_prior", "refined", "raw_prior:ssr", "refined:ssr", "raw_prior:scr", "refined:scr"} <= set(rows)
    assert rows["refined:ssr"] != rows["refined"] and rows["raw_prior:scr"]["gsq"] != rows["raw_prior"]["gsq"]


def test_whitened_pca_targets_have_unit_variance_per_direction(tmp_path):
    from pae_lab.plan import layout

    plain, white = (_study(tmp_path, refine={"enabled": False, "whiten": w}) for w in (False, True))
    targets = {w: np.load(_shared(s, "data", "prior", "refine")["refine"] / layout.refined_targets("train")).astype(np.float64)
               for w, s in ((False, plain), (True, white))}
    tokens = {w: t.transpose(0, 2, 3, 1).reshape(-1, t.shape[1]) for w, t in targets.items()}
    assert np.allclose(tokens[True].std(0, ddof=1), 1, atol=0.02)
    assert tokens[False].std(0, ddof=1)[0] > 1.5 * tokens[False].std(0, ddof=1)[-1]  # PCA alone: falling variance
    # the same directions: each whitened channel is the plain one rescaled
    ratio = tokens[True] / np.where(np.abs(tokens[False]) > 1e-3, tokens[False], np.nan)
    assert np.nanstd(ratio, axis=0).max() < 0.05 * np.nanmean(np.abs(ratio), axis=0).min()


def test_the_new_options_leave_old_studies_hashes_alone_and_move_their_own(tmp_path):
    """No parts and no whitening: the prior and refine hashes as before the options existed (a finished study
    is not redone); a part moves the prior's hash, whitening the refine stage's, the PCA path its own."""
    from pae_lab.plan.graph import identity_dump, stage_hashes

    plain = _study(tmp_path)
    assert "whiten" not in identity_dump(plain.refine) and "parts" in plain.prior.model_dump()
    hashes = {name: stage_hashes(_study(tmp_path, **cfg)) for name, cfg in (
        ("plain", {}), ("part", {"prior": {"parts": {"ssr": {"params": {"block": 7}}}}}),
        ("pca", {"refine": {"enabled": False}}), ("white", {"refine": {"enabled": False, "whiten": True}}))}
    assert hashes["part"]["prior"] != hashes["plain"]["prior"] and hashes["pca"]["prior"] == hashes["plain"]["prior"]
    assert len({hashes[n]["refine"] for n in hashes}) == 4
