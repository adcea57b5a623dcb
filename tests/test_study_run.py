"""End to end: a tiny study through every stage, tracked in MLflow, cached, resumable, failure-tolerant."""
from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from conftest import TINY
from pae_lab.config import StudyConfig
from pae_lab.fsutil import read_json
from pae_lab.study import Driver

ROOT = Path(__file__).resolve().parents[1]


def make_study(tmp: Path, **overrides) -> StudyConfig:
    cfg = copy.deepcopy(TINY)
    cfg.update({"name": "tiny", "output_dir": str(tmp / "study"), "variants": ["baseline", "ssr", "pae"]})
    cfg.update(overrides)
    return StudyConfig.model_validate(cfg)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    study = make_study(tmp)
    outcome = Driver(study, Console(quiet=True)).run()
    return study, outcome


def test_every_run_finishes_with_metrics(finished) -> None:
    study, outcome = finished
    assert outcome.failed == [] and outcome.launched == 3
    table = pd.read_csv(study.study_dir() / "results.csv")
    results = table[table["kind"] == "variant"]
    assert list(results["variant"]) == ["baseline", "ssr", "pae"]
    assert (results["status"] == "done").all()
    # the teacher's ceiling and the sampling floor are reference rows beside the runs
    refs = table[table["kind"] != "variant"].set_index("variant")
    assert set(refs.index) == {"teacher:raw_prior", "teacher:refined", "reference:pooled_pixels", "reference:heldout_real"}
    assert refs.loc[["teacher:raw_prior", "teacher:refined", "reference:pooled_pixels"], ["ssc", "gsq", "linprobe"]].notna().all().all()
    assert refs.loc["reference:heldout_real", "noise_fd_effnet_lite0"] > 0
    # learnability beside gFD, at the one N, with the chosen target named in results.csv and columns.csv
    for column in ("lfd_effnet_lite0", "lkd_effnet_lite0", "floor_fd_effnet_lite0", "gen_val_loss"):
        assert results[column].notna().all(), column
    assert (table["correlation_target"] == "lfd_effnet_lite0").all()
    columns = pd.read_csv(study.study_dir() / "columns.csv").set_index("column")
    assert columns.loc["lfd_effnet_lite0", "correlation_target"] and "reconstructions" in columns.loc["lfd_effnet_lite0", "meaning"]
    for column in ("psnr", "ssc", "lpc", "gsq", "linprobe", "erank", "rfd_effnet_lite0", "fd_effnet_lite0", "kd_effnet_lite0"):
        assert column in results and results[column].notna().all(), column
    correlations = pd.read_csv(study.study_dir() / "correlations.csv")
    assert {"lpc", "ssc", "gsq", "rfd_effnet_lite0", "floor_fd_effnet_lite0"} <= set(correlations["metric"])
    assert {"spearman_p_holm", "spearman_p_bh"} <= set(correlations.columns)
    convergence = pd.read_csv(study.study_dir() / "convergence.csv")
    assert sorted(convergence["step"].unique()) == [3, 6]


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


def test_rerun_retrains_nothing(finished) -> None:
    study, _ = finished
    before = {p: p.stat().st_mtime for p in study.study_dir().glob("runs/*/seed0/*/done.json")}
    outcome = Driver(study, Console(quiet=True)).run()
    assert outcome.launched == 0
    after = {p: p.stat().st_mtime for p in study.study_dir().glob("runs/*/seed0/*/done.json")}
    assert before == after


def test_failing_variant_is_recorded_and_others_finish(tmp_path: Path) -> None:
    import plugin_nan  # noqa: F401  registers the 'explodes' variant, as `plugins:` does for the CLI

    study = make_study(tmp_path, variants=["baseline", "explodes"], plugins=["plugin_nan"])

    outcome = Driver(study, Console(quiet=True)).run()
    assert outcome.failed == ["explodes/seed0"]
    failed = read_json(study.study_dir() / "runs" / "explodes" / "seed0" / "failed.json")
    assert failed["stage"] == "tokenizer" and "NonFiniteLoss" in failed["error"]
    results = pd.read_csv(study.study_dir() / "results.csv")
    assert dict(zip(results["variant"], results["status"])) == {"baseline": "done", "explodes": "failed"}


def test_local_launcher_runs_jobs_in_subprocesses(tmp_path: Path) -> None:
    study = make_study(tmp_path, variants=["baseline", "scr"], launcher={"name": "local", "max_parallel": 2})
    outcome = Driver(study, Console(quiet=True)).run()
    assert outcome.failed == []
    assert list((study.study_dir() / ".submitit").rglob("*_result.pkl"))


def test_killed_run_resumes_from_checkpoint(tmp_path: Path) -> None:
    """Kill the CLI during tokenizer training; the next `pae-lab run` resumes from the checkpoint."""
    cfg = tmp_path / "study.yaml"
    import yaml

    tiny = copy.deepcopy(TINY)
    tiny["training"].update(steps=60, checkpoint_every=5)
    cfg.write_text(yaml.safe_dump({**tiny, "name": "killme", "output_dir": str(tmp_path / "out"), "variants": ["baseline"]}))
    cmd = [sys.executable, "-m", "pae_lab", "run", str(cfg), "--no-report"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ckpt = tmp_path / "out" / "runs" / "baseline" / "seed0" / "tokenizer" / "checkpoint.pt"
    deadline = time.time() + 240
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), "no checkpoint written before the kill"
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=600)
    done = read_json(tmp_path / "out" / "runs" / "baseline" / "seed0" / "tokenizer" / "done.json")
    assert done["summary"]["resumed_from_step"] >= 5
