"""A job that dies outside Python is recorded as failed, and the local launcher keeps jobs in memory."""
from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from conftest import TINY
from pae_lab.fsutil import read_json
from pae_lab.execution.launchers.memguard import GB, admits

ROOT = Path(__file__).resolve().parents[1]


def wait_for(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"driver exited ({proc.returncode}) before {path} appeared:\n{proc.stdout.read()}"
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.1)


def test_admission_reserves_what_running_jobs_may_still_grow_by() -> None:
    est = 2 * GB
    assert admits(10 * GB, est, [])  # nothing running: always one
    assert admits(10 * GB, est, [GB])  # 10 - 1 reserved >= 2.2
    assert not admits(5 * GB, est, [0, 0])  # 5 - 4 reserved < 2.2
    assert admits(5 * GB, est, [2 * GB, 2 * GB])  # both at their peak already: nothing reserved
    assert admits(1 * GB, 0, [GB])  # no estimate: no cap


@pytest.mark.timeout(420)
def test_sigkilled_local_job_is_recorded_failed_and_run_exits_nonzero(tmp_path: Path) -> None:
    """seed0's job waits in its first tokenizer step; the test SIGKILLs it. The memory guard holds
    seed1 back meanwhile (one job's estimate is most of the free memory), then runs it to the end."""
    block = tmp_path / "block"
    block.mkdir()
    study = {**copy.deepcopy(TINY), "name": "deaths", "output_dir": str(tmp_path / "out"), "seeds": [0, 1],
             "variants": ["waits"], "plugins": ["plugin_block"],
             "launcher": {"name": "local", "max_parallel": 2, "threads_per_job": 1,
                          "mem_gb_per_job": round(psutil.virtual_memory().available * 0.7 / GB, 2)}}
    cfg = tmp_path / "study.yaml"
    cfg.write_text(yaml.safe_dump(study))
    env = {**os.environ, "PAE_TEST_BLOCK_DIR": str(block),
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    cli = [sys.executable, "-m", "pae_lab"]
    proc = subprocess.Popen([*cli, "run", str(cfg), "--no-report"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(block / "pid", proc, 240)
        pid = int((block / "pid").read_text())
        assert pid != proc.pid
        os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, out
    assert "1 run(s) failed" in out and "waits/seed0" in out, out
    assert "running at most 1 at once" in out, out
    run0, run1 = (tmp_path / "out" / "runs" / "waits" / f"seed{s}" for s in (0, 1))
    failed = read_json(run0 / "failed.json")
    assert failed["stage"] == "tokenizer" and failed["launcher"] == "local" and failed["killed"]
    assert "SIGKILL" in failed["error"] and str(pid) in failed["error"]
    assert (run1 / "result.json").exists() and not (run1 / "failed.json").exists()

    status = subprocess.run([*cli, "status", str(cfg)], cwd=ROOT, env=env, text=True, capture_output=True, timeout=120)
    row0 = next(line for line in status.stdout.splitlines() if "waits" in line and " 0 " in line)
    assert "failed" in row0 and "running" not in row0, status.stdout

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("deaths").experiment_id])
    by_seed = {r.data.tags.get("seed"): r for r in runs if r.data.tags.get("pae.kind") == "run"}
    assert by_seed["0"].info.status == "KILLED" and "SIGKILL" in by_seed["0"].data.tags["pae.error"]
    assert by_seed["1"].info.status == "FINISHED"


def test_launcher_registry_and_readers_do_not_import_the_job_or_submitit() -> None:
    code = ("import sys, pae_lab.execution.launchers.inline, pae_lab.execution.launchers.local, "
            "pae_lab.execution.launchers.slurm, pae_lab.plan.status, pae_lab.results.aggregate, pae_lab.tuning.driver; "
            "print(sorted(m for m in ('submitit', 'pae_lab.execution.job') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.timeout(120)
def test_a_finished_jobs_outcome_is_read_while_its_process_still_exits(tmp_path: Path) -> None:
    """The local launcher takes a job's result as soon as submitit has written it, not after the process's
    teardown (seconds for a real job), so the next job starts meanwhile. The job here lingers at exit."""
    from pae_lab.execution.launchers.local import LocalConfig, LocalLauncher

    launcher = LocalLauncher(LocalConfig(max_parallel=1, threads_per_job=1), tmp_path)
    lingers = "__import__('atexit').register(__import__('time').sleep, 60) and {'status': 'done'}"
    job = launcher.executor().submit(eval, lingers)
    try:
        deadline = time.monotonic() + 90
        while (outcome := launcher.outcome(job)) is None:
            assert time.monotonic() < deadline, "no outcome within 90 s"
            time.sleep(0.2)
        assert outcome == {"status": "done"}
        assert job._process.poll() is None  # still sleeping in its atexit handler
    finally:
        job.cancel(check=False)
        job._process.wait(timeout=30)


def test_an_older_jobs_result_in_a_reused_folder_is_not_taken_and_a_gpu_job_is_waited_for(tmp_path: Path) -> None:
    """A local job's id is its pid: a reused pid finds an older job's result file, which is not this job's
    outcome. A job that holds a GPU (or runs several ranks) is done only once its process has exited."""
    from types import SimpleNamespace

    from submitit.core.utils import cloudpickle_dump

    from pae_lab.execution.launchers.base import SubmititLauncher

    class Watched(SubmititLauncher):
        alive = True

        def ended(self, job):
            return None if self.alive else "exited"

    paths = SimpleNamespace(result_pickle=tmp_path / "result.pkl", submitted_pickle=tmp_path / "submitted.pkl")
    job = SimpleNamespace(job_id="7", num_tasks=1, paths=paths, stderr=lambda: "")
    launcher = Watched(None, tmp_path)
    cloudpickle_dump(("success", {"status": "done", "holds_gpu": False}), paths.result_pickle)
    os.utime(paths.result_pickle, (1, 1))
    paths.submitted_pickle.write_bytes(b"")  # this submission, after the older job's result
    assert launcher.outcome(job) is None
    cloudpickle_dump(("success", {"status": "done", "holds_gpu": True}), paths.result_pickle)
    assert launcher.outcome(job) is None  # this job's result, but its process still holds the GPU
    launcher.alive = False
    assert launcher.outcome(job) == {"status": "done", "holds_gpu": True}
