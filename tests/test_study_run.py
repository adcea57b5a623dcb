"""End to end: a tiny study through every stage, tracked in MLflow, cached, resumable, failure-tolerant."""
from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from conftest import TINY
from pae_lab.config.schema import StudyConfig
from pae_lab.fsutil import read_json
from pae_lab.execution.driver import Driver

ROOT = Path(__file__).resolve().parents[1]


def make_study(tmp: Path, **overrides) -> StudyConfig:
    cfg = copy.deepcopy(TINY)
    cfg.update({"name": "tiny", "output_dir": str(tmp / "study"), "variants": ["baseline", "ssr", "pae"]})
    cfg.update(overrides)
    return StudyConfig.model_validate(cfg)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    study = make_study(tmp, tracking={"system_metrics": "on", "system_metrics_interval": 0.5})
    outcome = Driver(study, Console(quiet=True)).run()
    return study, outcome


def test_a_runs_samples_score_again_outside_the_study_as_it_scored_them(finished, tmp_path) -> None:
    """samples.npz (ADM's format) against the study's reference.npz through `pae-lab evaluate`: the
    run's gFD, precision and IS again, from the files alone."""
    study, _ = finished
    root = study.study_dir()
    (reference,) = root.glob("shared/reference/*/reference.npz")
    samples = root / "runs" / "pae" / "seed0" / "generation" / "samples.npz"
    with np.load(samples) as raw:
        assert raw["arr_0"].shape == (24, 16, 16, 3) and raw["arr_0"].dtype == np.uint8 and len(raw["arr_1"]) == 24
    out = subprocess.run([sys.executable, "-m", "pae_lab", "evaluate", str(samples), "--reference", str(reference),
                          "--extractor", "effnet-lite0-96", "--json", str(tmp_path / "scores.json")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    results = pd.read_csv(root / "results.csv").set_index("variant")
    scores = read_json(tmp_path / "scores.json")["scores"]
    assert scores["fd_effnet_lite0_96"] == pytest.approx(results.loc["pae", "fd_effnet_lite0_96"], rel=1e-4)
    assert scores["precision_effnet_lite0_96"] == pytest.approx(results.loc["pae", "precision_effnet_lite0_96"], abs=1e-9)
    # IS, named after its network (float32 logits, extracted in other batch sizes: equal to 1e-5)
    assert scores["is_effnet_lite0_96"] == pytest.approx(results.loc["pae", "is_effnet_lite0_96"], rel=1e-5)
    assert "sfid" not in results and "fd_dinov2" not in results  # no Inception / DINOv2 weights here: skipped, not faked


def reuse_shared(finished, output_dir: Path) -> None:
    """Seed a study folder with the finished study's shared stages (data, prior, refine, reference,
    teacher: same config, same hashes), for tests about the runs: they train only their runs."""
    shutil.copytree(finished[0].study_dir() / "shared", output_dir / "shared")


def test_dinov2_weights_add_fd_dinov2_that_evaluate_scores_again(finished, tmp_path: Path) -> None:
    """With DINOv2 weights named (a tiny random timm ViT in their place: same code path), the reference
    stage keeps the reference's DINOv2 features, the run's row gains fd_dinov2, `pae-lab evaluate` on its
    samples.npz gives the same number, and sFID is skipped in one line (no Inception here)."""
    from typer.testing import CliRunner
    from weights_fixture import TINY_VIT, random_vit_weights

    from pae_lab.cli import app

    vit = tmp_path / "vit.pth"
    random_vit_weights(vit)
    study = make_study(tmp_path, variants=["baseline"],
                       evaluation={**TINY["evaluation"], "dinov2_weights": str(vit), "dinov2_model": TINY_VIT})
    shutil.copytree(finished[0].study_dir(), study.study_dir())  # its tokenizers and generators: only the scores run again
    assert Driver(study, Console(quiet=True)).run().failed == []
    results = pd.read_csv(study.study_dir() / "results.csv").set_index("variant")
    (kept,) = study.study_dir().glob("shared/reference/*/features_reference_dinov2.npy")  # the redone reference stage's
    samples = study.study_dir() / "runs" / "baseline" / "seed0" / "generation" / "samples.npz"
    out = CliRunner().invoke(app, ["evaluate", str(samples), "--reference", str(kept.parent / "reference.npz"), "--extractor",
                                   "effnet-lite0-96", "--dinov2-weights", str(vit), "--dinov2-model", TINY_VIT,
                                   "--kid-subsets", "10", "--json", str(tmp_path / "scores.json")])
    assert out.exit_code == 0, out.output
    assert read_json(tmp_path / "scores.json")["scores"]["fd_dinov2"] == pytest.approx(results.loc["baseline", "fd_dinov2"], rel=1e-9)
    assert results.loc["baseline", "fd_dinov2"] > 0 and "sfid" not in results
    suite = read_json(kept.parent / "protocol.json")["suite"]
    assert suite["dinov2_model"] == TINY_VIT and [line.split(" ")[0] for line in suite["skipped"]] == ["fd_dinov2", "sFID"]  # a ViT-S stands in: said, as sFID without Inception
    # FD-DINOv2 is under the controls, against the reference stage's DINOv2 features (fd_n = num_samples here)
    controls = pd.read_csv(study.study_dir() / "controls.csv")
    mine = controls[controls["column"] == "fd_dinov2"].set_index("control")
    assert set(mine.index) == {"actual", "blur", "constant", "floor", "modes"}
    assert mine.loc["actual", "value"] == pytest.approx(results.loc["baseline", "fd_dinov2"], rel=1e-6)
    assert pd.read_csv(study.study_dir() / "columns.csv").set_index("column").loc["fd_dinov2", "passes_controls"] in (True, False)


def test_every_run_finishes_with_metrics(finished) -> None:
    study, outcome = finished
    assert outcome.failed == [] and outcome.launched == 3
    table = pd.read_csv(study.study_dir() / "results.csv")
    results = table[table["kind"] == "variant"]
    assert list(results["variant"]) == ["baseline", "ssr", "pae"]
    assert (results["status"] == "done").all()
    # the teacher's ceiling and the sampling floor are reference rows beside the runs
    refs = table[table["kind"] != "variant"].set_index("variant")
    assert set(refs.index) == {"teacher:raw_prior", "teacher:refined", "reference:pooled_pixels", "reference:pixel_patches",
                               "reference:gradient_energy", "reference:position", "reference:heldout_real"}
    assert refs.loc[["teacher:raw_prior", "teacher:refined", "reference:pooled_pixels"], ["ssc", "gsq", "linprobe"]].notna().all().all()
    assert refs.loc["reference:heldout_real", "noise_fd_effnet_lite0_96"] > 0
    # learnability beside gFD, at the one N, with the chosen target named in results.csv and columns.csv
    for column in ("lfd_effnet_lite0_96", "lkd_effnet_lite0_96", "floor_fd_effnet_lite0_96", "gen_val_loss"):
        assert results[column].notna().all(), column
    # the default target, the frontier distance, needs baselines at 2 widths: this study reads gFD and
    # says why; gFD passed its controls (lFD, asked for elsewhere, fails them: test_controls.py)
    assert (table["correlation_target"] == "fd_effnet_lite0_96").all()
    assert table["target_controls"].str.contains("in place of the frontier distance").all()
    columns = pd.read_csv(study.study_dir() / "columns.csv").set_index("column")
    assert columns.loc["fd_effnet_lite0_96", "correlation_target"] and "no width arm" in columns.loc["fd_effnet_lite0_96", "note"]
    assert "reconstructions" in columns.loc["lfd_effnet_lite0_96", "meaning"]
    assert any("no width arm" in note for note in read_json(study.study_dir() / "study.json")["notes"])
    assert not columns.loc["lfd_effnet_lite0_96", "passes_controls"]
    assert "a constant decoder does not make it worse" in columns.loc["lfd_effnet_lite0_96", "failed_controls"]
    controls = pd.read_csv(study.study_dir() / "controls.csv")
    assert set(controls["variant"]) == {"baseline"}  # only runs without regularizers are controlled
    assert {"actual", "blur", "constant", "modes", "floor"} <= set(controls["control"])
    # the scores beside FD too (IS here): every control, the unchanged set scored as the generation stage scored it
    for seed, mine in controls[controls["column"] == "is_effnet_lite0_96"].groupby("seed"):
        mine = mine.set_index("control")
        assert set(mine.index) == {"actual", "blur", "constant", "floor", "modes"}
        assert mine.loc["actual", "value"] == pytest.approx(results.set_index(["variant", "seed"]).loc[("baseline", seed), "is_effnet_lite0_96"], rel=1e-6)
        assert mine.loc["constant", "value"] == pytest.approx(1.0)
    assert columns.loc["is_effnet_lite0_96", "passes_controls"] in (True, False)
    for column in ("precision_effnet_lite0_96", "recall_effnet_lite0_96", "lcoverage_effnet_lite0_96"):
        assert results[column].between(0, 1).all(), column
    for column in ("psnr", "ssc", "lpc", "gsq", "linprobe", "erank", "rfd_effnet_lite0_96", "fd_effnet_lite0_96", "kd_effnet_lite0_96"):
        assert column in results and results[column].notna().all(), column
    correlations = pd.read_csv(study.study_dir() / "correlations.csv")
    assert {"lpc", "ssc", "gsq", "rfd_effnet_lite0_96", "floor_fd_effnet_lite0_96"} <= set(correlations["metric"])
    assert {"spearman_p_holm", "spearman_p_bh"} <= set(correlations.columns)
    convergence = pd.read_csv(study.study_dir() / "convergence.csv")
    assert sorted(convergence["step"].unique()) == [3, 6]
    # the held-out flow loss beside its Gaussian baseline, the gap between them and the null-label loss
    gauss = convergence["gen_val_loss_gauss"]
    last = convergence["step"] == convergence["step"].max()
    assert (gauss > 0).all() and convergence.loc[last, "gen_val_loss_null"].notna().all()
    assert convergence.loc[~last, "gen_val_loss_null"].isna().all()  # the null label at the last checkpoint only
    assert np.allclose(convergence["gen_val_loss"] - gauss, convergence["gen_val_loss_gap"])
    speed = pd.read_csv(study.study_dir() / "speedups.csv")
    assert {"speedup", "steps_to_baseline", "speedup_lo", "speedup_hi", "censored"} <= set(speed.columns)
    # study.json carries how each number was measured, from the stages that declare a protocol file
    protocols = read_json(study.study_dir() / "study.json")["protocols"]
    assert {"ssc", "gsq", "fidelity", "generation", "controls"} <= set(protocols)
    assert read_json(study.study_dir() / "study.json")["declared_target"] == "frontier_fd_effnet_lite0_96"
    assert protocols["generation"]["sampler"]["steps"] == study.evaluation.sampler.steps


def test_mlflow_holds_parent_and_children_with_loss_curves(finished) -> None:
    import mlflow

    study, outcome = finished
    client = mlflow.MlflowClient(f"sqlite:///{study.study_dir() / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("pae.kind") == "study"]
    children = [r for r in runs if r.data.tags.get("pae.kind") == "run"]
    assert len(parents) == 1 and len(children) == 3
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    child = next(c for c in children if c.data.tags["variant"] == "pae")
    assert child.info.status == "FINISHED"
    history = client.get_metric_history(child.info.run_id, "tokenizer/loss/ssr")
    assert [m.step for m in history] == [2, 4, 6]
    assert "tokenizer/grad_norm/encoder" in child.data.metrics
    assert child.data.tags["config_hash"]
    mirror = (Path(study.study_dir()) / "runs" / "pae" / "seed0" / "tokenizer" / "metrics.jsonl").read_text().splitlines()
    assert len(mirror) == 3


def test_mlflow_holds_each_runs_lineage_and_system_metrics(finished) -> None:
    """Dataset inputs (the splits and the reference, with the digests of the shared stages that wrote them),
    the tokenizer as a logged model with its latent statistics, and the job's system/* curves."""
    import mlflow

    from pae_lab.plan.graph import stage_hashes

    study, _ = finished
    client = mlflow.MlflowClient(f"sqlite:///{study.study_dir() / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    child = next(r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("variant") == "pae")
    inputs = {d.dataset.name: d for d in child.inputs.dataset_inputs}
    assert set(inputs) == {"scenes:train", "scenes:val", "reference"}
    hashes = stage_hashes(study)
    assert inputs["scenes:train"].dataset.digest == hashes["data"][:16] and inputs["reference"].dataset.digest == hashes["reference"][:16]
    assert {t.value for t in inputs["scenes:val"].tags} == {"validation"}
    (model,) = client.search_logged_models([exp.experiment_id], filter_string=f"source_run_id = '{child.info.run_id}'")
    assert model.name == "tokenizer-pae-seed0" and model.status.to_int() == mlflow.entities.LoggedModelStatus.READY.to_int()
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model.artifact_location, tracking_uri=client.tracking_uri))
    assert {p.name for p in local.iterdir()} == {"model.pt", "latent_norm.json"}
    assert [o.model_id for o in child.outputs.model_outputs] == [model.model_id]
    assert any(k.startswith("system/cpu_utilization_percentage") for k in child.data.metrics)


def test_rerun_retrains_nothing(finished) -> None:
    study, _ = finished
    before = {p: p.stat().st_mtime for p in study.study_dir().glob("runs/*/seed0/*/done.json")}
    outcome = Driver(study, Console(quiet=True)).run()
    assert outcome.launched == 0
    after = {p: p.stat().st_mtime for p in study.study_dir().glob("runs/*/seed0/*/done.json")}
    assert before == after


def test_rerun_with_nothing_to_do_stops_before_mlflow(finished, tmp_path: Path) -> None:
    """A finished study whose results are current: `pae-lab run` prints the status and imports no
    MLflow, pandas or torch; any changed input (here the training steps) takes the driver's path."""
    import yaml

    from pae_lab.plan.settled import is_settled

    study, _ = finished
    assert is_settled(study)
    changed = StudyConfig.model_validate({**study.model_dump(mode="json"), "training": {**study.training.model_dump(), "steps": 8}})
    assert not is_settled(changed)
    from pae_lab.plan import settled

    with pytest.MonkeyPatch.context() as patch:  # edited aggregating code re-aggregates, without a version bump
        patch.setattr(settled, "aggregation_source", lambda: "edited")
        assert not is_settled(study)
    assert is_settled(study)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(study.model_dump(mode="json")))
    results = study.study_dir() / "results.csv"
    before = results.stat().st_mtime_ns
    code = ("import sys; from typer.testing import CliRunner; from pae_lab.cli import app; "
            f"r = CliRunner().invoke(app, ['run', {str(path)!r}, '--no-report']); print(r.exit_code, r.output); "
            "print(sorted(m for m in ('torch', 'mlflow', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.startswith("0 ") and "nothing to train, aggregate or log" in out, out
    assert out.strip().endswith("[]"), out
    assert results.stat().st_mtime_ns == before


def test_mlflow_shows_what_a_researcher_compares(finished) -> None:
    """After a run and a rerun: runs view, hyper-parameters, weights once (0 when off), headline
    metrics logged once under their results.csv names, study-level results on the parent."""
    import mlflow

    study, _ = finished
    client = mlflow.MlflowClient(f"sqlite:///{study.study_dir() / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([exp.experiment_id])
    children = {r.data.tags["variant"]: r for r in runs if r.data.tags.get("pae.kind") == "run"}
    parent = next(r for r in runs if r.data.tags.get("pae.kind") == "study")
    base, pae = children["baseline"].data, children["pae"].data
    assert {k: base.params[k] for k in ("weight.ssr", "weight.mcr", "weight.scr")} == \
        {"weight.ssr": "0.0", "weight.mcr": "0.0", "weight.scr": "0.0"}
    assert float(pae.params["weight.ssr"]) > 0 and not [k for k in pae.params if k.endswith(".weight") and not k.startswith("training.")]
    assert base.params["training.lr"] == str(study.training.lr) and "training.log_every" not in base.params
    assert not [k for k in pae.params if k.startswith("protocol.")]
    for metric in ("fd_effnet_lite0_96", "lfd_effnet_lite0_96", "psnr", "ssc", "lpc", "gsq", "rfd_effnet_lite0_96"):
        assert metric in pae.metrics, metric
    assert len(client.get_metric_history(children["pae"].info.run_id, "psnr")) == 1  # not re-logged by the rerun
    assert [m.step for m in client.get_metric_history(children["pae"].info.run_id, "fd_effnet_lite0_96")] == [3, 6]
    assert "best.fd_effnet_lite0_96" in parent.data.metrics and parent.data.metrics["runs_done"] == 3  # the accepted target
    assert parent.data.tags["best_variant"] in children
    assert not [k for k in parent.data.metrics if k.split("/")[0] in children]


def test_a_width_arm_draws_the_frontier_that_becomes_the_target(finished, tmp_path: Path) -> None:
    """Unregularized baselines at 2 latent widths: every run gets its frontier distance, frontier.csv one
    row per variant, the distance is the target, and the arm stays out of the on/off design."""
    width = {"name": "baseline_w2", "base": "baseline", "tokenizer": {**TINY["tokenizer"], "latent_channels": 2}}
    study = make_study(tmp_path, variants=["baseline", width, "ssr"], seeds=[0, 1])
    # the finished study's folder: its baseline and ssr seed-0 runs are this study's too (same config, same
    # hashes); the width arm and the seed-1 runs train here, and everything aggregates again
    shutil.copytree(finished[0].study_dir(), study.study_dir())
    outcome = Driver(study, Console(quiet=True)).run()
    assert outcome.failed == [] and outcome.launched == 4
    results = pd.read_csv(study.study_dir() / "results.csv")
    runs = results[results["kind"] == "variant"]
    assert runs["frontier_fd_effnet_lite0_96"].notna().all() and (results["correlation_target"] == "frontier_fd_effnet_lite0_96").all()
    frontier = pd.read_csv(study.study_dir() / "frontier.csv").set_index("variant")
    assert set(frontier.index) == {"baseline", "baseline_w2", "ssr"} and frontier.loc[["baseline", "baseline_w2"], "baseline"].all()
    assert (frontier["lo"] <= frontier["distance"]).all() and (frontier["distance"] <= frontier["hi"]).all()
    info = read_json(study.study_dir() / "study.json")
    assert info["frontier"]["baselines"] == ["baseline", "baseline_w2"] and info["target"] == "frontier_fd_effnet_lite0_96"
    # one note, the target's controls; none on the design: the arm left out, baseline and ssr form a one-factor design
    assert len(info["notes"]) == 1 and info["notes"][0].startswith("frontier_fd_effnet_lite0_96 is gFD at equal reconstruction")
    effects = pd.read_csv(study.study_dir() / "effects.csv")
    assert set(effects["effect"]) == {"ssr"}
    # the frontier distance is already at equal PSNR: adjusting it again would cancel the frontier's slope
    assert effects.loc[effects["response"] == "frontier_fd_effnet_lite0_96", "adjusted_for"].fillna("").eq("").all()
    assert (effects.loc[effects["response"] == "fd_effnet_lite0_96", "adjusted_for"] == "psnr").all()


def test_failing_variant_is_recorded_and_others_finish(finished, tmp_path: Path) -> None:
    import plugin_nan  # noqa: F401  registers the 'explodes' variant, as `plugins:` does for the CLI

    study = make_study(tmp_path, variants=["baseline", "explodes"], plugins=["plugin_nan"])
    reuse_shared(finished, study.study_dir())

    outcome = Driver(study, Console(quiet=True)).run()
    assert outcome.failed == ["explodes/seed0"]
    failed = read_json(study.study_dir() / "runs" / "explodes" / "seed0" / "failed.json")
    assert failed["stage"] == "tokenizer" and "NonFiniteLoss" in failed["error"]
    results = pd.read_csv(study.study_dir() / "results.csv")
    runs = results[results["kind"] == "variant"]
    assert dict(zip(runs["variant"], runs["status"])) == {"baseline": "done", "explodes": "failed"}


def test_local_launcher_runs_jobs_in_subprocesses(finished, tmp_path: Path) -> None:
    study = make_study(tmp_path, variants=["baseline", "scr"], launcher={"name": "local", "max_parallel": 2})
    reuse_shared(finished, study.study_dir())
    outcome = Driver(study, Console(quiet=True)).run()
    assert outcome.failed == []
    assert list((study.study_dir() / ".submitit").rglob("*_result.pkl"))


def test_killed_run_resumes_from_checkpoint(finished, tmp_path: Path) -> None:
    """The CLI is SIGKILLed during tokenizer training (step 7, after the step-5 checkpoint); the next
    `pae-lab run` resumes from the checkpoint, finishes, and leaves no MLflow run RUNNING."""
    import mlflow
    import yaml

    cfg = tmp_path / "study.yaml"
    tiny = copy.deepcopy(TINY)
    tiny["training"].update(steps=12, checkpoint_every=5)
    marker = tmp_path / "killed.pid"
    variant = {"name": "killed", "regularizers": {"kill_once": {"weight": 1.0, "at_step": 7, "marker": str(marker)}}}
    cfg.write_text(yaml.safe_dump({**tiny, "name": "killme", "output_dir": str(tmp_path / "out"),
                                   "variants": [variant], "plugins": ["plugin_kill"]}))
    reuse_shared(finished, tmp_path / "out")
    cmd = [sys.executable, "-m", "pae_lab", "run", str(cfg), "--no-report"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=600)
    assert first.returncode == -signal.SIGKILL and marker.exists()
    run_dir = tmp_path / "out" / "runs" / "killed" / "seed0"
    assert (run_dir / "tokenizer" / "checkpoint.pt").exists() and not (run_dir / "tokenizer" / "done.json").exists()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    done = read_json(run_dir / "tokenizer" / "done.json")
    assert done["summary"]["resumed_from_step"] == 5
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("killme").experiment_id])
    assert runs and {r.info.status for r in runs} == {"FINISHED"}


def test_rerun_after_a_logging_change_retrains_nothing(finished) -> None:
    study, _ = finished
    quieter = StudyConfig.model_validate({**study.model_dump(mode="json"), "training": {
        **study.training.model_dump(mode="json"), "log_every": 3, "checkpoint_every": 4}})
    assert Driver(quieter, Console(quiet=True)).run().launched == 0


def test_sampler_seed_reruns_exactly_the_stages_that_draw_samples(finished, tmp_path: Path) -> None:
    """On a copy of the finished study (mtimes kept), so the fixture's study stays as it was."""
    study, _ = finished
    folder = Path(shutil.copytree(study.study_dir(), tmp_path / "copy"))
    stamps = lambda: {p: p.stat().st_mtime_ns for p in folder.glob("runs/*/seed0/*/done.json")}  # noqa: E731
    before = stamps()
    reseeded = StudyConfig.model_validate({**study.model_dump(mode="json"), "output_dir": str(folder), "evaluation": {
        **study.evaluation.model_dump(mode="json"), "sampler": {**study.evaluation.sampler.model_dump(mode="json"),
                                                               "seed": 9}}})
    assert Driver(reseeded, Console(quiet=True)).run().launched == 3
    rerun = {p.parent.name for p, t in stamps().items() if before.get(p) != t}
    assert rerun == {"manifold", "generation", "controls", "guidance", "refit"}  # controls, guidance and the refit read the samples


def test_copied_study_folder_writes_only_into_itself(finished, tmp_path: Path) -> None:
    """A study folder copied elsewhere resumes there: run.json paths and MLflow artifacts follow it."""
    import shutil

    import mlflow

    study, _ = finished
    copy_dir = tmp_path / "copied"
    shutil.copytree(study.study_dir(), copy_dir)
    moved = StudyConfig.model_validate({**study.model_dump(mode="json"), "output_dir": str(copy_dir)})
    original = {p: p.stat().st_mtime_ns for p in study.study_dir().rglob("*") if p.is_file()}
    outcome = Driver(moved, Console(quiet=True)).run()
    assert outcome.launched == 0
    assert {p: p.stat().st_mtime_ns for p in study.study_dir().rglob("*") if p.is_file()} == original
    client = mlflow.MlflowClient(f"sqlite:///{copy_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    assert exp.artifact_location == (copy_dir / "mlartifacts").resolve().as_uri()
    assert all(r.info.artifact_uri.startswith(exp.artifact_location) for r in client.search_runs([exp.experiment_id]))


def test_a_named_reference_file_and_statistics_replace_the_train_split(finished, tmp_path) -> None:
    """evaluation.reference_images / reference_stats (ADM's formats): gFD from the named mu / sigma,
    the k-NN scores against the named images; num_samples above val_size still generates num_samples,
    while the held-out scores carry their own N and the study says so."""
    import torch

    from analysis.adm_files import load_images, save_images, save_statistics
    from analysis.fidelity import frechet_distance_to_statistics
    from analysis.knn_scores import knn_scores
    from pae_lab.plan import layout

    done = finished[0].study_dir()
    images, labels = load_images(next(done.glob("shared/reference/*/reference.npz")))
    named_images = save_images(tmp_path / "ref_images.npz", images[:20], labels[:20])
    wider = torch.from_numpy(np.load(next(done.glob(f"shared/reference/*/{layout.HELDOUT_FEATURES}"))))
    named_stats = save_statistics(tmp_path / "ref_stats.npz", wider, "effnet-lite0-96")
    output = tmp_path / "named"
    shutil.copytree(finished[0].study_dir(), output)  # its tokenizers and generators: only the scores run again
    study = make_study(tmp_path, output_dir=str(output), variants=["baseline"],
                       evaluation={**TINY["evaluation"], "num_samples": 64, "reference_images": str(named_images),
                                   "reference_stats": str(named_stats)})
    assert Driver(study, Console(quiet=True)).run().failed == []
    gen_dir = output / "runs" / "baseline" / "seed0" / "generation"
    assert len(load_images(gen_dir / layout.SAMPLES)[0]) == 64  # num_samples, not min(num_samples, val_size = 48)
    generated = torch.from_numpy(np.load(gen_dir / layout.SAMPLE_FEATURES)).double()
    from pae_lab.plan.graph import stage_hashes
    from pae_lab.plan.layout import StudyLayout

    ref_dir = StudyLayout(output).shared("reference", stage_hashes(study)["reference"])
    reference = torch.from_numpy(np.load(ref_dir / layout.REFERENCE_FEATURES)).double()
    assert len(reference) == 20
    table = pd.read_csv(output / "results.csv").set_index("variant")
    mu, sigma = wider.mean(0), torch.from_numpy(np.cov(wider.numpy(), rowvar=False))
    assert table.loc["baseline", "fd_effnet_lite0_96"] == pytest.approx(frechet_distance_to_statistics(generated, mu, sigma), rel=1e-6)
    held = torch.from_numpy(np.load(ref_dir / layout.HELDOUT_FEATURES)).double()
    assert table.loc["reference:heldout_real", "n_images"] == 48
    assert table.loc["reference:heldout_real", "noise_fd_effnet_lite0_96"] == pytest.approx(
        frechet_distance_to_statistics(held, mu, sigma), abs=1e-4)  # the held-out set against the same statistics: 0
    assert table.loc["baseline", "precision_effnet_lite0_96"] == pytest.approx(knn_scores(generated, reference, 3)["precision"])
    protocol = read_json(ref_dir / layout.FIDELITY_PROTOCOL)
    assert (protocol["n"], protocol["n_reference"], protocol["n_heldout"]) == (64, 20, 48)
    assert "reference_stats" in protocol["fd_against"] and "ref_images.npz" in protocol["reference"]
    assert any("holds 20 images, fewer than the 64 generated" in n for n in protocol["reference_notes"])
    generation = read_json(gen_dir / layout.CONVERGENCE)["protocol"]  # the reference's own N reaches every stage
    assert (generation["n_reference"], generation["kid_subset_size"]) == (20, 10)
    assert any("held-out set (rFD, floors) 48" in n for n in read_json(output / "study.json")["notes"])


def test_a_guidance_sweep_runs_only_its_own_stage_and_scores_the_best_scale_at_full_n(finished, tmp_path) -> None:
    """evaluation.sampler.cfg_grid on a finished study: every other stage keeps its hash (nothing retrains or
    resamples); per variant the best scale of the sweep, gFD at it and without guidance at the full N, and
    the correlations against both."""
    from pae_lab.plan import layout

    swept_dir = tmp_path / "swept"
    shutil.copytree(finished[0].study_dir(), swept_dir)
    sampler = {**TINY["evaluation"]["sampler"], "cfg_grid": [1.0, 4.0], "cfg_grid_samples": 16}
    swept = make_study(tmp_path, output_dir=str(swept_dir), evaluation={**TINY["evaluation"], "sampler": sampler})
    others = lambda: {p: p.stat().st_mtime_ns for p in swept_dir.glob("runs/*/seed0/*/done.json")  # noqa: E731
                      if p.parent.name != "guidance"}
    before = others()
    assert Driver(swept, Console(quiet=True)).run().failed == []
    assert others() == before
    table = pd.read_csv(swept_dir / "results.csv").set_index("variant")
    runs = table[table["kind"] == "variant"]
    assert set(runs["cfg_best"]) <= {1.0, 4.0} and runs["fd_effnet_lite0_96_cfg"].notna().all()
    # unguided = the generation stage's own score: it sampled the same checkpoint at scale 1
    assert np.allclose(runs["fd_effnet_lite0_96_nocfg"], runs["fd_effnet_lite0_96"])
    for variant in runs.index:
        sweep = read_json(swept_dir / "runs" / variant / "seed0" / "guidance" / layout.GUIDANCE)
        assert [r["cfg_scale"] for r in sweep["rows"]] == [1.0, 4.0] and sweep["protocol"]["grid_samples"] == 16
        assert sweep["best"] == min(sweep["rows"], key=lambda r: r["fd_effnet_lite0_96"])["cfg_scale"]
        if sweep["best"] == 1.0:  # the same scale, noise and labels as the generation stage: the same images
            assert runs.loc[variant, "fd_effnet_lite0_96_cfg"] == pytest.approx(runs.loc[variant, "fd_effnet_lite0_96"])
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{swept_dir / 'mlflow.db'}")
    children = [r for r in client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
                if r.data.tags.get("pae.kind") == "run"]
    assert len(children) == 6  # the sweep is a new run identity: its runs reuse the cached tokenizers...
    assert all(c.outputs.model_outputs for c in children)  # ...and still hold them as logged models
    swept_runs = [c for c in children if "cfg_best" in c.data.metrics]  # the sweep's results as metrics too
    assert len(swept_runs) == 3 and all("fd_effnet_lite0_96_cfg" in c.data.metrics for c in swept_runs)
    assert any("cfg_grid_samples: 16 images for 1280-d features" in n for n in read_json(swept_dir / "study.json")["notes"])
    guidance = pd.read_csv(swept_dir / "correlations_guidance.csv")
    assert set(guidance["target"]) == {"fd_effnet_lite0_96_cfg", "fd_effnet_lite0_96_nocfg"} and "gsq" in set(guidance["metric"])
    from pae_lab.results import plots
    from pae_lab.results.study_data import load_study

    report = load_study(swept_dir)  # the report's guidance figure: one line per variant over the grid
    assert sorted(report.guidance["cfg_scale"].unique()) == [1.0, 4.0] and set(report.guidance["variant"]) == set(runs.index)
    assert len(plots.guidance_curves(report.guidance, report.generation).axes[0].lines) == 3
    assert load_study(finished[0].study_dir()).guidance is None
    unswept = read_json(finished[0].study_dir() / "runs" / "pae" / "seed0" / "guidance" / layout.GUIDANCE)
    assert unswept["protocol"] == {"measured": False, "why": "evaluation.sampler.cfg_grid is not set"}


def test_changed_config_gets_new_child_runs_and_old_ones_keep_theirs(finished) -> None:
    """`--set training.steps=...`: new child runs whose params and config hash describe the new config."""
    import mlflow

    study, first = finished
    client = mlflow.MlflowClient(f"sqlite:///{study.study_dir() / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny").experiment_id
    before = [r for r in client.search_runs([experiment]) if r.data.tags.get("pae.kind") == "run"]
    changed = StudyConfig.model_validate({**study.model_dump(mode="json"), "training": {
        **study.training.model_dump(mode="json"), "steps": 8}})
    outcome = Driver(changed, Console(quiet=True)).run()
    assert outcome.failed == [] and outcome.launched == 3
    runs = client.search_runs([experiment])
    children = [r for r in runs if r.data.tags.get("pae.kind") == "run"]
    assert len(children) == len(before) + 3 and {r.info.status for r in runs} == {"FINISHED"}
    new_ids = {r.mlflow_run_id for r in outcome.runs}
    assert new_ids.isdisjoint({r.mlflow_run_id for r in first.runs})
    for spec in outcome.runs + first.runs:
        assert client.get_run(spec.mlflow_run_id).data.tags["config_hash"] == spec.identity
    history = client.get_metric_history(next(iter(new_ids)), "tokenizer/loss/total")
    assert [m.step for m in history] == [2, 4, 6, 8]  # the new run's own curve, not appended to the old one  # last: the fixture's study now holds the changed config
