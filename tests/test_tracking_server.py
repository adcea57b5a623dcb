"""A tracking server many jobs share: real PostgreSQL behind a real `pae-lab server` (MLflow, artifacts
proxied), a tiny study logged through it, offline jobs replayed by `pae-lab sync`, many writers at
once, and Optuna's RDB storage on the same PostgreSQL with two trials in parallel."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from pae_lab.fsutil import read_json
from pae_lab.plan.layout import RunLayout
from pae_lab.plan.preflight import load_study
from pae_lab.execution.driver import Driver
from pae_lab.tracking.mirror import identity, mirror_points, missing_points, replay
from pae_lab.tracking.sync import sync_study
from pae_lab.tracking.store import RunLogger, StudyTracker, client
from tracking_fixture import TrackingServer, child_runs, free_port, postgres_missing, study_file

ROOT = Path(__file__).resolve().parents[1]
QUIET = Console(quiet=True)
pytestmark = pytest.mark.skipif(postgres_missing() is not None, reason=str(postgres_missing()))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with TrackingServer(tmp_path_factory.mktemp("tracking"), workers=1) as running:
        yield running


@pytest.fixture(scope="module")
def tuned(server, tmp_path_factory):
    """A search whose two trials run at once as local jobs, logging to the server; Optuna's storage is
    the same PostgreSQL."""
    from pae_lab.tuning.driver import TuneDriver

    search = {"params": {"regularizers.ssr.weight": {"type": "float", "low": 0.0, "high": 1.0}},
              "parallel": 2, "n_trials": 2, "storage": f"{server.pg_uri}/optuna", "sampler": {"name": "random", "seed": 1}}
    path = study_file(tmp_path_factory.mktemp("tuned"), "rdb", server.uri, search=search,
                      launcher={"name": "local", "max_parallel": 2, "threads_per_job": 1})
    study = load_study(path)
    return study, path, TuneDriver(study, QUIET).run()


@pytest.mark.timeout(400)
def test_jobs_log_runs_metrics_and_artifacts_through_the_server(server, tuned, tmp_path) -> None:
    import psycopg

    study, _, outcome = tuned
    assert outcome.states == {"COMPLETE": 2}
    mlflow_client = client(server.uri)
    runs = child_runs(mlflow_client, "rdb")
    assert sorted(r.data.tags["variant"] for r in runs) == ["trial-0000", "trial-0001"]
    for run in runs:
        assert run.info.status == "FINISHED"
        run_dir = study.study_dir() / "runs" / run.data.tags["variant"] / "seed0"
        points = mirror_points(run_dir)
        assert any(p[0].startswith("tokenizer/loss") for p in points)
        assert missing_points(mlflow_client, run.info.run_id, points) == []
        with psycopg.connect(f"{server.pg_uri}/mlflow") as con:  # the points live in PostgreSQL, not in a file
            (stored,) = con.execute("SELECT count(*) FROM metrics WHERE run_uuid = %s", (run.info.run_id,)).fetchone()
        assert stored >= len({identity(p) for p in points})
        # artifacts went through the server's proxy into its own folder, and come back byte for byte
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        local = RunLayout(run_dir).image("reconstructions")
        (kept,) = list(server.artifacts.rglob(f"{run.info.run_id}/artifacts/images/{local.name}"))
        fetched = Path(mlflow_client.download_artifacts(run.info.run_id, f"images/{local.name}", str(tmp_path)))
        assert fetched.read_bytes() == kept.read_bytes() == local.read_bytes()


@pytest.mark.timeout(60)
def test_optuna_rdb_storage_on_postgres_held_two_parallel_trials(server, tuned) -> None:
    import optuna

    study, _, _ = tuned
    stored = optuna.load_study(study_name="rdb", storage=f"{server.pg_uri}/optuna")
    assert sorted(t.state.name for t in stored.trials) == ["COMPLETE", "COMPLETE"]
    assert all(t.values for t in stored.trials)
    spans = [job_span(study.study_dir() / "runs" / f"trial-{n:04d}" / "seed0") for n in (0, 1)]
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], spans  # the two trial jobs overlapped
    assert read_json(study.study_dir() / "study.json")["optuna"]["storage"] == f"{server.pg_uri}/optuna"


def job_span(run_dir: Path) -> tuple[float, float]:
    """(first stage started, last stage done) of a run, from its stage files."""
    from pae_lab.plan.layout import STAGE_DONE, STAGE_STARTED
    from pae_lab.plan.runs import run_stage_names

    folders = [RunLayout(run_dir).stage(name) for name in run_stage_names()]
    return (min(read_json(f / STAGE_STARTED)["started"] for f in folders),
            max(read_json(f / STAGE_DONE)["finished"] for f in folders))


@pytest.mark.timeout(120)
def test_an_offline_job_loses_nothing_and_sync_replays_it(server, tmp_path) -> None:
    tracker = StudyTracker(server.uri, "offline")
    run_id = tracker.ensure_run("offline:job", "job", {"pae.kind": "run"})
    with pytest.warns(UserWarning, match="does not answer.*JSON-lines mirror"):
        offline = RunLogger(tmp_path, f"http://127.0.0.1:{free_port()}", run_id)  # the node cannot reach the server
        for step in range(1, 21):
            offline.metrics("tokenizer", {"loss": 1.0 / step, "psnr": 20.0 + step}, step)
    assert mlflow_history(tracker, run_id, "tokenizer/loss") == []
    assert replay(tracker.client, run_id, tmp_path) == (40, 0)
    assert replay(tracker.client, run_id, tmp_path) == (0, 40)  # idempotent
    assert mlflow_history(tracker, run_id, "tokenizer/loss") == [(s, 1.0 / s) for s in range(1, 21)]


def mlflow_history(tracker: StudyTracker, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in tracker.client.get_metric_history(run_id, key))


@pytest.mark.timeout(120)
def test_cli_sync_fills_an_empty_store_once(server, tuned) -> None:
    study, path, _ = tuned
    cfg = yaml.safe_load(path.read_text())
    cfg["tracking"]["experiment"] = "synced"  # the same folders, a store that holds none of their runs
    synced = path.with_name("synced.yaml")
    synced.write_text(yaml.safe_dump(cfg))
    first = pae_lab("sync", str(synced))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "synced 3 run(s)" in first.stdout and " 0 already there" in first.stdout, first.stdout
    mlflow_client = client(server.uri)
    runs = child_runs(mlflow_client, "synced")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        points = mirror_points(study.study_dir() / "runs" / run.data.tags["variant"] / "seed0")
        assert points and missing_points(mlflow_client, run.info.run_id, points) == []
    again = sync_study(load_study(synced), QUIET)
    assert again.added == 0 and again.present > 0


def pae_lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pae_lab", *args], capture_output=True, text=True, timeout=110,
                          cwd=ROOT)


@pytest.mark.timeout(240)
def test_many_writers_lose_no_point(server) -> None:
    bench = ROOT / "benchmarks" / "bench_tracking_load.py"
    done = subprocess.run([sys.executable, str(bench), "--uri", server.uri, "--writers", "4", "--steps", "50"],
                          capture_output=True, text=True, timeout=230, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "points logged 800, points found 800, lost 0" in done.stdout


@pytest.mark.timeout(60)
@pytest.mark.parametrize("uri, expect", [
    (None, "tracking.uri: None is not http://host:port"),
    ("sqlite:///x.db", "tracking.uri: 'sqlite:///x.db' is not http://host:port"),
])
def test_server_needs_an_http_tracking_uri(tmp_path, uri, expect) -> None:
    from typer.testing import CliRunner

    from pae_lab.cli import app

    path = study_file(tmp_path, "noserver", uri)
    result = CliRunner().invoke(app, ["server", str(path)])
    assert result.exit_code == 2 and expect in " ".join(result.output.split()), result.output
    assert str(path) in " ".join(result.output.split())


@pytest.mark.timeout(60)
def test_run_stops_at_once_when_the_server_does_not_answer(tmp_path) -> None:
    from pae_lab.config.errors import StudyError

    study = load_study(study_file(tmp_path, "down", f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(StudyError, match=r"tracking.uri: http://127.0.0.1:\d+ does not answer"):
        Driver(study, QUIET).run()
