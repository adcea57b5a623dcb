"""The slurm launcher against a real single-node SLURM cluster started by the test (no accounting,
so job states come from scontrol): same results as inline, the shared stages as a job of their
own, concurrent array tasks, scancel recorded as failed, requeue resumed bit-exactly from the
checkpoint."""
from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import TINY
from pae_lab.fsutil import read_json
import slurm_fixture

ROOT = Path(__file__).resolve().parents[1]
slurm_cluster = slurm_fixture.slurm_cluster  # the module-scoped cluster fixture, used by name
SLURM = {"name": "slurm", "threads_per_job": 1, "gpus_per_node": 0, "cpus_per_task": 1, "mem_gb": 1, "timeout_min": 10,
         "lost_after_s": 120}
COMPARED = ("psnr", "ssc", "lpc", "gsq", "train_loss", "fd_effnet_lite0_96")


def write_study(tmp: Path, name: str, seeds: list[int], launcher: dict, **training) -> Path:
    cfg = copy.deepcopy(TINY)
    cfg["training"].update(training)
    cfg.update(name=name, output_dir=str(tmp / name), seeds=seeds, variants=["waits"], plugins=["plugin_block"],
               launcher=launcher)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def start(path: Path, block: Path | None = None, **env) -> subprocess.Popen:
    full = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    if block is not None:
        block.mkdir(exist_ok=True)
        full["PAE_TEST_BLOCK_DIR"] = str(block)
    full.update(env)
    return subprocess.Popen([sys.executable, "-m", "pae_lab", "run", str(path), "--no-report"], cwd=ROOT, env=full,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 400) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
        return out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"driver exited ({proc.returncode}) before {path.name} appeared:\n{proc.stdout.read()}"
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.1)
    return path.read_text()


def results(tmp: Path, name: str) -> pd.DataFrame:
    table = pd.read_csv(tmp / name / "results.csv")
    return table[table["kind"] == "variant"].astype({"seed": int}).set_index("seed")


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory) -> Path:
    """seed 0 of the same study, inline and uninterrupted. Its driver runs the shared stages at one
    thread, as the SLURM studies' shared job does (`threads_per_job: 1`): FD features extracted at
    another thread count differ in the 7th digit."""
    tmp = tmp_path_factory.mktemp("inline")
    out = finish(start(write_study(tmp, "ref", [0], {"name": "inline", "threads_per_job": 1}), OMP_NUM_THREADS="1"))
    assert "runs already finished" not in out
    return tmp / "ref"


@pytest.fixture(scope="module")
def reference(reference_dir) -> pd.DataFrame:
    return results(reference_dir.parent, reference_dir.name)


def reuse_shared(reference_dir: Path, path: Path) -> Path:
    """A study whose shared stages are the reference's (same hashes): only its runs go to the cluster.
    The shared stages as a SLURM job of their own are the concurrency and 2-task tests' part."""
    shutil.copytree(reference_dir / "shared", path.with_suffix("") / "shared")
    return path


def job_tasks(study_dir: Path) -> list[list[str]]:
    """The task ranks of every SLURM job of a study, from submitit's logs
    (<job id>_<array index>_<task>_log.out or <job id>_<task>_log.out)."""
    jobs: dict[str, list[str]] = {}
    for log in sorted((study_dir / ".submitit").rglob("*_log.out")):
        *job, task = log.name.removesuffix("_log.out").split("_")
        jobs.setdefault("_".join(job), []).append(task)
    return sorted(jobs.values())


def same(a: pd.Series, b: pd.Series) -> None:
    for col in COMPARED:
        assert a[col] == b[col], (col, a[col], b[col])


@pytest.mark.timeout(900)
def test_array_tasks_run_concurrently_with_inline_results(slurm_cluster, reference, tmp_path) -> None:
    """Each job waits at a barrier of 2: the study only finishes if both array tasks ran at once.
    The shared stages ran before them as a job of their own, not in the driver (the login node)."""
    proc = start(write_study(tmp_path, "conc", [0, 1], SLURM), tmp_path / "block", PAE_TEST_BARRIER="2")
    out = finish(proc)
    assert proc.returncode == 0, out
    assert len(list((tmp_path / "block").glob("arrived.*"))) == 2
    assert job_tasks(tmp_path / "conc") == [["0"], ["0"], ["0"]]  # the shared stages + 2 array tasks
    assert "shared stages: one slurm job, 1 process(es)" in out, out
    got = results(tmp_path, "conc")
    assert (got["status"] == "done").all()
    same(got.loc[0], reference.loc[0])


@pytest.mark.timeout(900)
def test_scancel_of_one_task_is_recorded_failed_and_the_other_finishes(slurm_cluster, reference_dir, tmp_path) -> None:
    block = tmp_path / "block"
    proc = start(reuse_shared(reference_dir, write_study(tmp_path, "cancel", [0, 1], SLURM)), block)
    job = wait_for(block / "jobid", proc)
    subprocess.run(["scancel", job], check=True, timeout=30)
    out = finish(proc)
    assert proc.returncode == 1, out
    frame = results(tmp_path, "cancel")
    assert sorted(frame["status"]) == ["done", "failed"], out
    seed = int(frame.index[frame["status"] == "failed"][0])
    assert f"waits/seed{seed}" in out
    failed = read_json(tmp_path / "cancel" / "runs" / "waits" / f"seed{seed}" / "failed.json")
    assert failed["launcher"] == "slurm" and failed["stage"] == "tokenizer"
    assert f"SLURM job {job} ended CANCELLED" in failed["error"]


@pytest.mark.timeout(900)
def test_requeued_task_resumes_from_its_checkpoint_bit_exactly(slurm_cluster, reference_dir, reference, tmp_path) -> None:
    """The job waits at step 4 (after the checkpoint of step 3); `scontrol requeue` kills and
    restarts it; the restarted job passes through and resumes from step 3."""
    block = tmp_path / "block"
    proc = start(reuse_shared(reference_dir, write_study(tmp_path, "requeue", [0], SLURM)), block, PAE_TEST_BLOCK_STEP="4")
    job = wait_for(block / "jobid", proc)
    ckpt = tmp_path / "requeue" / "runs" / "waits" / "seed0" / "tokenizer" / "checkpoint.pt"
    assert ckpt.exists()
    subprocess.run(["scontrol", "requeue", job], check=True, timeout=30)
    out = finish(proc)
    assert proc.returncode == 0, out
    done = read_json(tmp_path / "requeue" / "runs" / "waits" / "seed0" / "tokenizer" / "done.json")
    assert done["summary"]["resumed_from_step"] == 3
    same(results(tmp_path, "requeue").loc[0], reference.loc[0])


def test_two_tasks_per_node_form_one_process_group(slurm_cluster, tmp_path, monkeypatch) -> None:
    """`tasks_per_node: 2` reaches sbatch, and the two tasks find each other from submitit's environment."""
    from ddp_probe import probe
    from pae_lab.config.launchers import validate_launcher
    from pae_lab.execution.launchers.slurm import SlurmLauncher

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    cfg = validate_launcher({**SLURM, "nodes": 1, "tasks_per_node": 2})
    job = SlurmLauncher(cfg, tmp_path / "jobs").executor().submit(probe)
    deadline = time.monotonic() + 120
    while not job.done():
        assert time.monotonic() < deadline, f"2-task job {job.job_id} did not finish: {job.state}"
        time.sleep(0.5)
    assert sorted(job.results()) == [(0, 2, 1.0), (1, 2, 1.0)]


@pytest.mark.timeout(600)
def test_two_task_study_trains_refine_and_run_data_parallel(slurm_cluster, reference, tmp_path) -> None:
    """A study with `tasks_per_node: 2`: the shared stages and the run are each one 2-task SLURM job;
    the tokenizer's metrics match the 1-process reference up to float summation order."""
    two = {**SLURM, "nodes": 1, "tasks_per_node": 2}
    proc = start(write_study(tmp_path, "ddp", [0], two))
    out = finish(proc)
    assert proc.returncode == 0, out
    assert job_tasks(tmp_path / "ddp") == [["0", "1"], ["0", "1"]]  # shared stages + the run
    row, ref = results(tmp_path, "ddp").loc[0], reference.loc[0]
    for col in ("psnr", "ssc", "lpc", "gsq"):
        assert row[col] == pytest.approx(ref[col], rel=1e-3), col
