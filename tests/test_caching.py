"""Identity and caching rules: same inputs, same hash; a changed input reruns exactly what depends on it."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pae_lab.config.schema import StudyConfig
from pae_lab.plan.identity import content_hash
from pae_lab.plan.graph import stage_hashes
from pae_lab.plan.runs import expand
from pae_lab.plan.cache import is_done, run_cached
from pae_lab.stages.training import TrainLoop


def study(**kw) -> StudyConfig:
    return StudyConfig.model_validate({"name": "t", "variants": ["baseline", "ssr"], **kw})


def hashes(s: StudyConfig) -> dict[str, dict[str, str]]:
    return {r.variant: r.hashes for r in expand(s)}


def test_hash_is_canonical() -> None:
    assert content_hash({"a": 1, "b": [1.0, 2]}) == content_hash({"b": [1, 2], "a": 1.0})
    assert content_hash({"a": 1}) != content_hash({"a": 2})


def test_changing_training_reruns_tokenizer_and_downstream_only() -> None:
    a, b = hashes(study()), hashes(study(training={"steps": 11}))
    for variant in a:
        assert a[variant]["data"] == b[variant]["data"]
        assert a[variant]["refine"] == b[variant]["refine"]
        for stage in ("tokenizer", "manifold", "generator", "generation"):
            assert a[variant][stage] != b[variant][stage]


def test_a_new_teacher_retrains_only_the_runs_that_align_to_it() -> None:
    """An unregularized tokenizer opens the prior and the refined targets but learns nothing from them."""
    for teacher in ({"refine": {"steps": 7}}, {"prior": {"params": {"input_resolution": 64}}}):
        a, b = hashes(study()), hashes(study(**teacher))
        assert a["ssr"]["refine"] != b["ssr"]["refine"]
        for stage in ("tokenizer", "manifold", "generator", "generation"):
            assert a["ssr"][stage] != b["ssr"][stage], (teacher, stage)
            assert a["baseline"][stage] == b["baseline"][stage], (teacher, stage)


def test_changing_evaluation_keeps_trained_models() -> None:
    a, b = hashes(study()), hashes(study(evaluation={"num_samples": 64}))
    for variant in a:
        assert a[variant]["tokenizer"] == b[variant]["tokenizer"]
        assert a[variant]["generator"] == b[variant]["generator"]
        assert a[variant]["generation"] != b[variant]["generation"]


def test_variant_name_is_not_identity_but_regularizers_are() -> None:
    s = study(variants=["ssr", {"name": "ssr_copy", "base": "ssr"}, {"name": "ssr_heavy", "base": "ssr",
                                                                      "regularizers": {"ssr": {"weight": 0.9}}}])
    h = hashes(s)
    assert h["ssr"]["tokenizer"] == h["ssr_copy"]["tokenizer"]
    assert h["ssr"]["tokenizer"] != h["ssr_heavy"]["tokenizer"]


def test_seeds_expand_and_differ() -> None:
    runs = expand(study(seeds=[0, 1]))
    assert len(runs) == 4
    assert len({r.hashes["tokenizer"] for r in runs}) == 4
    assert stage_hashes(study(seeds=[0, 1])) == stage_hashes(study())


def test_run_cached_skips_reruns_and_clears_other_hash(tmp_path: Path) -> None:
    calls = []

    def stage(d: Path) -> dict:
        calls.append(d)
        (d / "out.txt").write_text("x")
        return {"v": len(calls)}

    d = tmp_path / "stage"
    assert run_cached(d, "h1", stage).summary == {"v": 1}
    res = run_cached(d, "h1", stage)
    assert res.skipped and res.summary == {"v": 1} and len(calls) == 1
    (d / "stale.txt").write_text("old")
    assert run_cached(d, "h2", stage).summary == {"v": 2}
    assert not (d / "stale.txt").exists() and is_done(d, "h2") and not is_done(d, "h1")
    assert run_cached(d, "h2", stage, force=True).summary == {"v": 3}


class Boom(RuntimeError):
    pass


def _train(tmp: Path, fail_at: int | None) -> tuple[torch.nn.Module, TrainLoop]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)

    def step_fn(step: int) -> dict:
        if step == fail_at:
            raise Boom()
        x = torch.randn(8, 4)
        loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss/total": loss.item()}

    loop = TrainLoop("t", tmp, {"model": model, "optimizer": opt}, 12, seed=3, checkpoint_every=5, log_every=2,
                     items_per_step=8)
    loop.run(step_fn)
    return model, loop


def test_resume_restores_full_state_and_matches_uninterrupted(tmp_path: Path) -> None:
    reference, _ = _train(tmp_path / "ref", None)
    with pytest.raises(Boom):
        _train(tmp_path / "cut", 7)  # dies after the step-5 checkpoint
    resumed, loop = _train(tmp_path / "cut", None)
    assert loop.resumed_from == 5
    for a, b in zip(reference.parameters(), resumed.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_nan_loss_raises_with_terms(tmp_path: Path) -> None:
    from pae_lab.stages.training import NonFiniteLoss

    loop = TrainLoop("t", tmp_path, {}, 3, seed=0, checkpoint_every=5, log_every=1, items_per_step=1)
    with pytest.raises(NonFiniteLoss, match="loss/total is nan at step 0"):
        loop.run(lambda step: {"loss/total": float("nan"), "loss/rec": 1.0})


# --- identity covers resolved inputs, and nothing that cannot change a result ------------------------
RUN_STAGES = ("tokenizer", "manifold", "generator", "generation", "controls", "guidance", "refit")


def changed(a: StudyConfig | dict, b: StudyConfig | dict) -> set[str]:
    """Stages whose hash differs between two configs or two hash tables taken earlier."""
    ha, hb = (x if isinstance(x, dict) else hashes(x) for x in (a, b))
    out = {stage for v in ha for stage in ha[v] if ha[v][stage] != hb[v][stage]}
    return out


def test_logging_and_checkpoint_cadence_change_nothing() -> None:
    assert changed(study(), study(training={"log_every": 3, "checkpoint_every": 7})) == set()
    assert changed(study(), study(evaluation={"batch_size": 17, "sampler": {"batch_size": 5}})) == set()


def test_sampler_seed_reruns_only_the_stages_that_draw_from_it() -> None:
    """KD subsets (reference floor, rKD, lKD) and the sampler's noise use it (the refit decodes the same
    samples); nothing is retrained."""
    assert changed(study(), study(evaluation={"sampler": {"seed": 5}})) == {"reference", "manifold", "generation", "controls", "guidance", "refit"}


def test_controls_settings_rerun_only_the_controls() -> None:
    assert changed(study(), study(evaluation={"controls": {"blur_sigmas": [1.0]}})) == {"controls"}
    assert changed(study(), study(evaluation={"prdc_k": 5})) == {"generation", "controls", "guidance"}


def test_auto_extractor_is_hashed_resolved(tmp_path: Path, monkeypatch) -> None:
    """Inception weights appearing in the torch hub cache turn `auto` into Inception: FD results rerun."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    before = hashes(study())
    weights = tmp_path / "hub" / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"weights v1")
    assert changed(before, study()) == {"reference", "manifold", "generation", "controls", "guidance", "refit"}
    with_v1 = hashes(study())
    weights.write_bytes(b"weights v2, another file")
    assert changed(with_v1, study()) == {"reference", "manifold", "generation", "controls", "guidance", "refit"}


def test_folder_dataset_contents_are_hashed(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "images"
    for i, cls in enumerate(("a", "b")):
        (root / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8), (i * 100, 0, 0)).save(root / cls / "0.png")
    data = {"name": "imagefolder", "params": {"root": str(root)}, "train_size": 16, "val_size": 16}
    before = hashes(study(data=data))
    Image.new("RGB", (8, 8), (0, 200, 0)).save(root / "b" / "1.png")
    assert changed(before, study(data=data)) == {"data", "prior", "refine", "reference", "teacher", *RUN_STAGES}


def test_prior_weights_file_contents_are_hashed(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"one")
    prior = {"name": "effnet_lite0", "params": {"weights": str(weights)}}
    before = hashes(study(prior=prior))
    weights.write_bytes(b"two")
    assert changed(before, study(prior=prior)) == {"prior", "refine", "teacher", *RUN_STAGES}


def test_every_stage_declares_only_registered_inputs() -> None:
    from pae_lab.plan.graph import STAGES, Stage, register_stage
    from pae_lab.registry import RegistryError

    with pytest.raises(RegistryError, match="reads nope"):
        register_stage(Stage("extra", "x:y", reads=("nope",)))
    with pytest.raises(RegistryError, match="unknown input"):
        register_stage(Stage("extra", "x:y", reads=("data",), depends=("training.no_such_field",)))
    assert "extra" not in STAGES


def test_a_new_stage_is_one_row(tmp_path: Path) -> None:
    from pae_lab.plan.graph import STAGES, Stage, register_stage

    register_stage(Stage("probe_extra", "tests:none", reads=("tokenizer",), depends=("metrics.seed",)))
    run = expand(study())[0]
    assert "probe_extra" in run.hashes and run.stage_paths["probe_extra"].endswith("/probe_extra")
    again = expand(study(metrics={"seed": 3}))[0]
    assert again.hashes["probe_extra"] != run.hashes["probe_extra"]
    assert again.hashes["tokenizer"] == run.hashes["tokenizer"]
    STAGES.unregister("probe_extra")


def test_a_guidance_sweep_reruns_only_the_guidance_stage() -> None:
    """cfg_grid and cfg_grid_samples are read by the guidance stage alone: generation keeps its samples."""
    grid = {"sampler": {"cfg_grid": [1.0, 2.0], "cfg_grid_samples": 32}}
    assert changed(study(), study(evaluation=grid)) == {"guidance"}
    assert changed(study(evaluation=grid), study(evaluation={"sampler": {"cfg_grid": [1.0, 2.0], "cfg_grid_samples": 64}})) == {"guidance"}
