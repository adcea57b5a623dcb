"""Data-parallel jobs: 2 gloo processes (the local launcher's `tasks_per_job: 2`) against 1 process.

The refined prior (a shared stage, then run as its own 2-process job), the tokenizer and the
generator all train under DDP. Each rank takes its slice of the same global batch and noise, so 2 processes train what 1 process
trains at the same global batch, up to float summation order. Stated tolerance: training losses
within 1e-5 relative, latents within 1e-4 absolute, every manifold metric within 1e-3 relative.
A 2-process run killed mid-training resumes from rank 0's checkpoint and ends bit-identical.
"""
from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import TINY
from pae_lab.fsutil import read_json
from pae_lab.plan.layout import StudyLayout
from pae_lab.tracking.store import iter_jsonl, mirror_path

ROOT = Path(__file__).resolve().parents[1]
RUN = ("runs", "killer", "seed0")
MANIFOLD = ("psnr", "ssim", "ssc", "lpc", "gsq", "lip_dec", "erank")


def study_file(tmp: Path, name: str, marker: Path, launcher: dict) -> Path:
    tiny = copy.deepcopy(TINY)
    tiny["training"].update(steps=12, checkpoint_every=5)
    tiny["generator"].update(class_dropout=0.0)  # per-rank dropout masks would differ from 1 process by design
    kill = {"kill_once": {"weight": 1.0, "at_step": 7, "marker": str(marker), "rank": 1}}
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump({**tiny, "name": name, "output_dir": str(tmp / name), "plugins": ["plugin_kill"],
                                   "variants": [{"name": "killer", "regularizers": kill}], "launcher": launcher}))
    return cfg


def pae_run(cfg: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    return subprocess.run([sys.executable, "-m", "pae_lab", "run", str(cfg), "--no-report"], cwd=ROOT, env=env,
                          text=True, capture_output=True, timeout=600)


def run_dir(cfg: Path) -> Path:
    return cfg.with_suffix("").joinpath(*RUN)


TWO = {"name": "local", "tasks_per_job": 2, "threads_per_job": 1}


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("ddp")
    spent = tmp / "spent"
    spent.write_text("no kill in these runs")
    one = study_file(tmp, "one", spent, {"name": "inline", "threads_per_job": 2})
    two = study_file(tmp, "two", spent, TWO)
    for cfg in (one, two):
        done = pae_run(cfg)
        assert done.returncode == 0, done.stdout + done.stderr
    return one, two


def shared_dir(cfg: Path, stage: str) -> Path:
    (folder,) = [p for p in cfg.with_suffix("").joinpath("shared", stage).iterdir() if p.is_dir()]  # one hash
    return folder


def test_two_processes_train_what_one_does_at_the_same_global_batch(one_and_two) -> None:
    one, two = (run_dir(c) for c in one_and_two)
    logged = {"refine": [c.with_suffix("") / "shared" for c in one_and_two], "tokenizer": [one, two],
              "generator": [one, two]}  # where each stage's loss curve is mirrored
    for stage, folders in logged.items():
        a, b = ([r["loss/total"] for r in iter_jsonl(mirror_path(d, stage))] for d in folders)
        assert len(a) == len(b) >= 1 and np.allclose(a, b, rtol=1e-5, atol=0), (stage, a, b)
    np.testing.assert_allclose(np.load(shared_dir(one_and_two[1], "refine") / "targets_val.npy").astype(np.float32),
                               np.load(shared_dir(one_and_two[0], "refine") / "targets_val.npy").astype(np.float32),
                               rtol=0, atol=2e-3)  # float16 files: one ulp near 1
    np.testing.assert_allclose(np.load(two / "tokenizer" / "latents_val.npy"),
                               np.load(one / "tokenizer" / "latents_val.npy"), rtol=0, atol=1e-4)
    m1, m2 = (read_json(d / "manifold" / "done.json")["summary"] for d in (one, two))
    for key in MANIFOLD:
        assert m2[key] == pytest.approx(m1[key], rel=1e-3), key


def test_two_processes_ran_and_only_rank_0_wrote(one_and_two) -> None:
    import mlflow

    cfg = one_and_two[1]
    logs = sorted(p.name for p in StudyLayout(cfg.with_suffix("")).submitit.rglob("*_log.out"))
    tasks: dict[str, list[str]] = {}
    for name in logs:  # <job id>_<task>_log.out
        job, task = name.rsplit("_", 2)[:2]
        tasks.setdefault(job, []).append(task)
    # two jobs of two tasks each: the shared stages (the refiner trains data-parallel) and the run
    assert sorted(tasks.values()) == [["0", "1"], ["0", "1"]], logs
    for where, stage in ((cfg.with_suffix("") / "shared", "refine"), (run_dir(cfg), "tokenizer")):
        steps = [r["step"] for r in iter_jsonl(mirror_path(where, stage))]
        assert steps and steps == sorted(set(steps)), (stage, steps)  # each logged step once: one writer
    rows = list(iter_jsonl(mirror_path(run_dir(cfg), "tokenizer")))
    steps = [r["step"] for r in rows]
    client = mlflow.MlflowClient(f"sqlite:///{cfg.with_suffix('') / 'mlflow.db'}")
    run = next(r for r in client.search_runs([client.get_experiment_by_name("two").experiment_id])
               if r.data.tags.get("pae.kind") == "run")
    assert run.data.tags["pae.processes_per_job"] == "2" and run.info.status == "FINISHED"
    history = [m.step for m in client.get_metric_history(run.info.run_id, "tokenizer/loss/total")]
    assert history == steps


def test_killed_two_process_run_fails_then_resumes_bit_identical(one_and_two, tmp_path: Path) -> None:
    marker = tmp_path / "killed.pid"
    cfg = study_file(tmp_path, "killed", marker, TWO)
    reference = run_dir(one_and_two[1])
    # the shared stages are those of the 2-process study (same hashes; their DDP run is the test above's):
    # only the run is trained, killed and resumed here
    shutil.copytree(one_and_two[1].with_suffix("") / "shared", cfg.with_suffix("") / "shared")
    first = pae_run(cfg)
    assert first.returncode == 1 and marker.exists(), first.stdout + first.stderr
    assert "killer/seed0" in first.stdout
    failed = read_json(run_dir(cfg) / "failed.json")
    assert failed["stage"] == "tokenizer", failed
    assert (run_dir(cfg) / "tokenizer" / "checkpoint.pt").exists()
    second = pae_run(cfg)
    assert second.returncode == 0, second.stdout + second.stderr
    assert read_json(run_dir(cfg) / "tokenizer" / "done.json")["summary"]["resumed_from_step"] == 5
    for stage, name in (("tokenizer", "latents_val.npy"), ("tokenizer", "latents_train.npy")):
        assert np.array_equal(np.load(run_dir(cfg) / stage / name), np.load(reference / stage / name)), name
    assert (read_json(run_dir(cfg) / "generation" / "done.json")["summary"]
            == read_json(reference / "generation" / "done.json")["summary"])


def test_failed_shared_job_stops_the_study_and_names_the_stage(tmp_path: Path) -> None:
    cfg = study_file(tmp_path, "diverges", tmp_path / "unused", TWO)
    study = yaml.safe_load(cfg.read_text())
    study["refine"]["lr"] = 1e38  # the refiner diverges on its first steps, on both ranks
    cfg.write_text(yaml.safe_dump(study))
    done = pae_run(cfg)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "shared stage refine failed in its 2-process job" in done.stdout + done.stderr, done.stdout + done.stderr
    assert not (cfg.with_suffix("") / "runs" / "killer" / "seed0" / "tokenizer").exists()  # no run started
