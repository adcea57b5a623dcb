"""A tracking server that goes away mid-study heals itself: jobs keep training and send the store
what it lacks once it answers again, the driver reconciles at the end, `status` says what the store
lacks (without hanging on a server that is down) and `sync` makes it whole when it never came back.

Real PostgreSQL behind a real `pae-lab server` (tests/tracking_fixture.py), stopped and started by
PID; the study's jobs hold at chosen steps (tests/plugin_hold.py) so the outage falls mid-training.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY
from pae_lab.tracking.resume import Backoff, read_record
from pae_lab.tracking.held import call, forget, held_calls, hold
from pae_lab.tracking.store import RunLogger, StudyTracker, answers, client
from tracking_fixture import TrackingServer, child_runs, postgres_missing, store_against_mirror, study_file

ROOT = Path(__file__).resolve().parents[1]
WHOLE = (set(), set(), 0)  # store_against_mirror of a run the store holds exactly, no point twice
pytestmark = pytest.mark.skipif(postgres_missing() is not None, reason=str(postgres_missing()))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with TrackingServer(tmp_path_factory.mktemp("outage"), workers=1) as running:
        yield running


@pytest.fixture
def restartable(server):
    """The server; up again after the test, whatever the test did to it."""
    yield server
    if not answers(server.uri):
        server.start()


def log(logger: RunLogger, steps) -> None:
    for step in steps:
        logger.metrics("tokenizer", {"loss": 1.0 / step, "psnr": 20.0 + step}, step)


@pytest.mark.timeout(180)
def test_a_job_logs_on_through_an_outage_and_sends_what_the_store_lacks(restartable, tmp_path) -> None:
    server = restartable
    tracker = StudyTracker(server.uri, "resume")
    run_id = tracker.ensure_run("resume:job", "job", {"pae.kind": "run"})
    policy = Backoff(first_s=0.5, max_s=1.0, attempts=200, budget_s=60.0)
    logger = RunLogger(tmp_path, server.uri, run_id, backoff=policy)
    log(logger, range(1, 11))
    server.stop()
    with pytest.warns(UserWarning, match=r"(?s)MLflow logging failed.*JSON-lines mirror.*answers again"):
        log(logger, range(11, 31))  # training goes on: every point to the mirror, none to the store
    down = read_record(tmp_path)
    assert down["state"] == "down" and down["outages"] == 1 and down["unsent_since"], down
    made = tmp_path / "made.json"
    made.write_text("{}")
    logger.artifact(made, "files")  # a file and a tag the store cannot take now: kept in the folder, in order
    logger.tags({"pae.note": 7})
    assert [c["kind"] for c in held_calls(tmp_path)] == ["artifact", "tags"]
    server.start()
    step, deadline = 31, time.monotonic() + 60
    while read_record(tmp_path)["state"] != "up":  # the logger tries on its own back-off as training logs
        assert time.monotonic() < deadline, read_record(tmp_path)
        log(logger, [step])
        step += 1
        time.sleep(0.1)
    log(logger, range(step, step + 10))  # and then logs straight to the store again
    up = read_record(tmp_path)
    assert up["outages"] == 1 and up["unsent_since"] is None, up
    assert 1 <= up["attempts"] <= policy.attempts and up["attempt_seconds"] <= policy.budget_s, up
    assert up["replayed"] >= 2 * 20, up  # steps 11-30 at least, two keys each
    assert store_against_mirror(tracker.client, run_id, tmp_path) == WHOLE
    tags = tracker.client.get_run(run_id).data.tags
    assert tags["pae.tracking.outages"] == "1" and int(tags["pae.tracking.replayed"]) == up["replayed"], tags
    assert held_calls(tmp_path) == [] and tags["pae.note"] == "7"  # sent on recovery, then forgotten
    assert [a.path for a in tracker.client.list_artifacts(run_id, "files")] == ["files/made.json"]


@pytest.mark.timeout(120)
def test_the_reconcile_sends_what_jobs_left_and_creates_the_run_that_was_never_created(restartable, tmp_path) -> None:
    """At the end of a run the store lacks the last points of seed0 (its job ended while the server
    was away) and has no run at all for seed1 (the server was down when the driver registered it)."""
    from rich.console import Console

    from pae_lab.fsutil import read_json, write_json
    from pae_lab.plan.preflight import load_study
    from pae_lab.plan.runs import expand
    from pae_lab.tracking.lag import store_lag
    from pae_lab.tracking.outage import reconcile, study_folders
    from pae_lab.tracking.study_runs import StudyRuns

    server = restartable
    study = load_study(study_file(tmp_path, "left", server.uri, seeds=[0, 1]))
    seed0, seed1 = runs = expand(study)
    mlflow = StudyRuns(study, runs)
    tracker = mlflow.tracker()
    parent = mlflow.ensure_parent(tracker)
    mlflow.register(tracker, parent, [seed0])
    write_json(seed1.layout.run_json, seed1.to_file())  # no run id
    log(RunLogger(seed0.run_dir, server.uri, seed0.mlflow_run_id), range(1, 3))
    for spec in runs:
        log(RunLogger(spec.run_dir, None, None), range(3, 6))  # the mirror alone
    log(RunLogger(seed1.run_dir, None, None), range(1, 3))
    RunLogger(seed1.run_dir, server.uri, None).tags({"pae.held": "yes"})  # its job had no run id: the tag waits in the folder
    before = store_lag(server.uri, study_folders(study))
    assert before.asked and before.lagging() == {seed0.run_dir: 6, seed1.run_dir: 10}, before
    after = reconcile(study, parent, Console(quiet=True))
    assert after.asked and after.total == 0, after
    created = read_json(seed1.layout.run_json)["mlflow_run_id"]
    assert tracker.client.get_run(created).data.tags["pae.held"] == "yes" and held_calls(seed1.run_dir) == []
    assert created and tracker.client.get_run(created).data.tags["pae.key"].startswith(seed1.key)
    for run_id, spec in ((seed0.mlflow_run_id, seed0), (created, seed1)):
        assert store_against_mirror(tracker.client, run_id, spec.run_dir) == WHOLE


def test_held_calls_outlive_their_job_and_a_refused_one_is_dropped(restartable, tmp_path) -> None:
    """What a dead job held (here: a tag, a call the store refuses, a file) is sent by the next job's first
    call, in order, the refused one dropped with a warning; a job whose run has no id holds every call."""
    server = restartable
    tracker = StudyTracker(server.uri, "held")
    run_id = tracker.ensure_run("held:job", "job", {"pae.kind": "run"})
    note = tmp_path / "note.txt"
    note.write_text("kept")
    for kind, args in (("tags", {"tags": {"pae.first": "1"}}), ("tags", {"tags": {"bad\nkey": "x"}}),
                       ("artifact", {"path": str(note), "artifact_path": "files"})):
        hold(tmp_path, call(tmp_path, kind, **args))
    assert held_calls(tmp_path)[2]["args"]["path"] == "note.txt"  # relative to the folder: a moved study still sends it
    with pytest.warns(UserWarning, match="held tags call can never be sent"):
        RunLogger(tmp_path, server.uri, run_id).tags({"pae.second": "2"})
    tags = tracker.client.get_run(run_id).data.tags
    assert held_calls(tmp_path) == [] and tags["pae.first"] == "1" and tags["pae.second"] == "2"
    assert [a.path for a in tracker.client.list_artifacts(run_id, "files")] == ["files/note.txt"]
    orphan = tmp_path / "orphan"
    RunLogger(orphan, server.uri, None).tags({"pae.later": "3"})  # no run id yet: kept for the reconcile or sync
    assert [c["kind"] for c in held_calls(orphan)] == ["tags"]


def test_held_calls_from_many_processes_are_all_kept(tmp_path) -> None:
    """Appends and removals lock the folder's file: calls held by several processes at once are all kept
    (without the lock this loses calls)."""
    import multiprocessing

    from held_writer import hold_many

    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(4) as pool:
        start = manager.Barrier(4)
        pool.starmap(hold_many, [(tmp_path, worker, start, 60) for worker in range(4)])
    assert sorted(c["args"]["tags"]["n"] for c in held_calls(tmp_path)) == sorted(f"{w}.{i}" for w in range(4) for i in range(60))


class _Store:
    """Stands in for the store's answers alone (the policy under test is which calls are kept): each
    tag call raises what its value names, or is taken."""

    def __init__(self) -> None:
        self.taken: list[str] = []

    def log_batch(self, run_id, tags=()):
        import requests
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, PERMISSION_DENIED, TEMPORARILY_UNAVAILABLE

        (tag,) = tags
        answers = {"503": MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE),
                   "400": MlflowException("bad key", error_code=INVALID_PARAMETER_VALUE),
                   "403": MlflowException("who are you", error_code=PERMISSION_DENIED)}
        if tag.value in answers:
            raise answers[tag.value]
        if tag.value.startswith("http"):
            response = requests.Response()
            response.status_code = int(tag.value[4:])
            raise requests.HTTPError(response=response)
        self.taken.append(tag.value)


def test_only_a_call_the_store_will_never_take_is_dropped_and_a_stuck_one_keeps_the_rest(tmp_path) -> None:
    from pae_lab.tracking.held import send_held

    def held(*values: str) -> None:
        for value in values:
            hold(tmp_path, call(tmp_path, "tags", tags={"v": value}))

    store = _Store()
    held("a", "400", "http413", "b")
    hold(tmp_path, call(tmp_path, "artifact", path=str(tmp_path / "gone.png"), artifact_path=None))
    with pytest.warns(UserWarning, match="can never be sent"):
        out = send_held(store, "run", tmp_path)
    assert (out.sent, out.dropped, out.left, store.taken, held_calls(tmp_path)) == (2, 3, 0, ["a", "b"], [])
    for stuck in ("503", "403", "http503", "http429"):
        held(stuck, "c")
        with pytest.warns(UserWarning, match="the 1 after it are kept"):
            out = send_held(store, "run", tmp_path)
        assert (out.sent, out.left) == (0, 2) and [c["args"]["tags"]["v"] for c in held_calls(tmp_path)] == [stuck, "c"], stuck
        for record in held_calls(tmp_path):
            forget(tmp_path, record)


def outage_study(tmp: Path, name: str, uri: str, hold_steps: str) -> tuple[Path, dict[str, str], Path]:
    """Two jobs at once (local launcher), logging every step, each holding at `hold_steps` until the
    test lets it go: (study file, environment, hold folder)."""
    hold = tmp / f"{name}-hold"
    hold.mkdir()
    path = study_file(tmp, name, uri, variants=["holds"], seeds=[0, 1], plugins=["plugin_hold"],
                      training={**TINY["training"], "log_every": 1},
                      launcher={"name": "local", "max_parallel": 2, "threads_per_job": 1})
    env = {**os.environ, "PAE_TEST_HOLD_DIR": str(hold), "PAE_TEST_HOLD_STEPS": hold_steps,
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    return path, env, hold


def pae_lab(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pae_lab", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=timeout)


def start_run(path: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pae_lab", "run", str(path), "--no-report"], cwd=ROOT, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def wait_arrived(hold: Path, step: int, jobs: int, proc: subprocess.Popen, timeout: float) -> None:
    """Until `jobs` jobs hold at `step`; the driver must not have ended meanwhile."""
    deadline = time.monotonic() + timeout
    while len(list(hold.glob(f"at{step}.*"))) < jobs:
        assert proc.poll() is None, f"`pae-lab run` ended ({proc.returncode}) before its jobs reached step {step}:\n{proc.stdout.read()}"
        assert time.monotonic() < deadline, f"{jobs} jobs did not reach step {step} within {timeout} s"
        time.sleep(0.1)


def finish(proc: subprocess.Popen, timeout: float) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return out


@contextlib.contextmanager
def run_losing_the_server(tmp: Path, name: str, server, hold_steps: str):
    """`pae-lab run` of an outage study whose server stops once both jobs hold at step 2; yields
    (study file, environment, hold folder, process, what it printed: filled in on exit)."""
    path, env, hold = outage_study(tmp, name, server.uri, hold_steps)
    proc, printed = start_run(path, env), []
    try:
        wait_arrived(hold, 2, 2, proc, 300)
        server.stop()
        (hold / "go2").touch()
        yield path, env, hold, proc, printed
    finally:
        printed.append(finish(proc, 300))


def folders(study_dir: Path, mlflow_client, experiment: str) -> dict[str, Path]:
    """Every run id of the study -> its folder: the two runs and the parent (shared stages)."""
    out = {r.info.run_id: study_dir / "runs" / "holds" / f"seed{r.data.tags['seed']}" for r in child_runs(mlflow_client, experiment)}
    exp = mlflow_client.get_experiment_by_name(experiment)
    (parent,) = [r for r in mlflow_client.search_runs([exp.experiment_id]) if r.data.tags.get("pae.kind") == "study"]
    return {**out, parent.info.run_id: study_dir / "shared"}


@pytest.mark.timeout(540)
def test_a_run_through_a_server_restart_ends_with_every_run_whole_without_sync(restartable, tmp_path) -> None:
    """The server stops while both jobs train and comes back before they end: each job sends what
    the store lacks itself; when `pae-lab run` returns the store holds every mirror, none twice."""
    server = restartable
    with run_losing_the_server(tmp_path, "restart", server, "2,4") as (path, env, hold, proc, printed):
        wait_arrived(hold, 4, 2, proc, 120)  # steps 2 and 3 were logged while the server was down
        server.start()
        (hold / "go4").touch()
    out = printed[0]
    assert proc.returncode == 0, out
    mlflow_client = client(server.uri)
    runs = folders(tmp_path / "restart", mlflow_client, "restart")
    assert len(runs) == 3
    for run_id, folder in runs.items():
        assert store_against_mirror(mlflow_client, run_id, folder) == WHOLE, folder
    for run in child_runs(mlflow_client, "restart"):
        assert held_calls(runs[run.info.run_id]) == []  # the files and tags it held went too
        record = read_record(runs[run.info.run_id])
        # the job itself caught up (the driver found nothing left to send), and recorded what it cost
        assert record["outages"] == 1 and record["state"] == "up" and record["replayed"] > 0, record
        assert run.data.tags["pae.tracking.outages"] == "1" and run.info.status == "FINISHED", run.data.tags
    assert "sending them from the mirrors" not in out and "lacks" not in out, out


@pytest.mark.timeout(540)
def test_a_server_that_never_comes_back_is_named_shown_and_synced(restartable, tmp_path) -> None:
    """The run finishes while the server is down; its last line names the runs and points the store
    lacks, `status` shows them without waiting on the server, and `sync` later makes the store whole."""
    server = restartable
    with run_losing_the_server(tmp_path, "gone", server, "2") as (path, env, hold, proc, printed):
        pass  # the server stays down
    out = printed[0]
    assert proc.returncode == 0, out
    last = "\n".join(out.strip().splitlines()[-3:])  # the driver's last lines (an exiting worker may add one)
    said = re.search(r"lacks (\d+) point\(s\) and (\d+) held call\(s\) \(files, tags, lineage\) of (\d+) run\(s\) "
                     r"\(([^)]*)\).*`pae-lab sync (\S+)` will add them", last)
    assert said and said[3] == "2" and set(said[4].split(", ")) == {"holds/seed0", "holds/seed1"}, out
    lacking, calls = int(said[1]), int(said[2])

    status = pae_lab(["status", str(path)], env, timeout=60)  # the server is still down: no hang
    assert status.returncode == 0 and "store unreachable" in " ".join(status.stdout.split()), status.stdout
    unsent = [int(n) for n in re.findall(r"(\d+) unsent", status.stdout)]
    assert len(unsent) == 2 and sum(unsent) == lacking, status.stdout
    # what the jobs sent besides points (files, tags, lineage) waits in their folders, and status says so
    held = {seed: held_calls(tmp_path / "gone" / "runs" / "holds" / f"seed{seed}") for seed in (0, 1)}
    assert all({"artifact", "model"} <= {c["kind"] for c in calls} for calls in held.values()), held  # inputs went before it stopped
    assert [int(n) for n in re.findall(r"(\d+) held", status.stdout)] == [len(held[0]), len(held[1])], status.stdout
    assert calls == len(held[0]) + len(held[1])

    server.start()
    mlflow_client = client(server.uri)
    runs = folders(tmp_path / "gone", mlflow_client, "gone")
    assert sum(len(store_against_mirror(mlflow_client, run_id, folder)[0]) for run_id, folder in runs.items()) == lacking
    synced = pae_lab(["sync", str(path)], env, timeout=120)
    assert synced.returncode == 0 and f"{lacking} point(s) added" in synced.stdout, synced.stdout + synced.stderr
    assert f"{len(held[0]) + len(held[1])} held call(s) sent" in " ".join(synced.stdout.split()), synced.stdout
    for run_id, folder in runs.items():
        assert store_against_mirror(mlflow_client, run_id, folder) == WHOLE, folder
    for found in child_runs(mlflow_client, "gone"):  # the runs' files and lineage reached the store after all
        run_id = found.info.run_id
        run = mlflow_client.get_run(run_id)
        assert held_calls(runs[run_id]) == [] and {a.path for a in mlflow_client.list_artifacts(run_id)} >= {"manifold", "generation"}
        assert len(run.outputs.model_outputs) == 1
        assert "reference" in {d.dataset.name for d in run.inputs.dataset_inputs}  # sent before the server stopped
    assert {r.info.status for r in child_runs(mlflow_client, "gone")} == {"FINISHED"}
    again = pae_lab(["status", str(path)], env, timeout=60)
    assert again.stdout.count("complete") == 2 and "unreachable" not in again.stdout, again.stdout


def test_a_half_made_logged_model_is_replaced_and_a_ready_one_linked_once(tmp_path) -> None:
    """A job that died between creating the tokenizer's logged model and finishing it leaves it PENDING,
    without its files: the next job replaces it; a READY one is kept and the run links it once."""
    import mlflow
    from mlflow.entities import LoggedModelStatus

    from pae_lab.tracking.lineage import log_tokenizer

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("lineage", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    dead = client.create_logged_model(experiment, name="tokenizer-pae-seed0", source_run_id=run_id).model_id
    files = [tmp_path / "model.pt", tmp_path / "latent_norm.json"]
    for path in files:
        path.write_text(path.name)
    first = log_tokenizer(client, run_id, "tokenizer-pae-seed0", files, {"trained": True}, 6)
    again = log_tokenizer(client, run_id, "tokenizer-pae-seed0", files, {"trained": True}, 6)
    (model,) = client.search_logged_models([experiment], filter_string=f"source_run_id = '{run_id}'")
    assert first == again == model.model_id != dead and model.status == LoggedModelStatus.READY
    assert [o.model_id for o in client.get_run(run_id).outputs.model_outputs] == [first]


@pytest.mark.timeout(120)
def test_jobs_logging_the_same_new_dataset_at_once_each_get_it(server, tmp_path) -> None:
    """MLflow's SQL store looks a dataset up and then inserts it, so two jobs starting together race on
    the shared reference set: the loser's insert broke the unique key, came back as BAD_REQUEST and its
    run lost its lineage (seen once in a full suite). Eight runs at a barrier, five fresh datasets."""
    import threading

    from pae_lab.tracking.held import send

    tracker = StudyTracker(server.uri, "same-dataset")
    mlflow_client = client(server.uri)
    for round_ in range(5):
        runs = [tracker.ensure_run(f"same:{round_}:{i}", f"run{i}", {"pae.kind": "run"}) for i in range(8)]
        datasets = [{"name": "reference", "uri": tmp_path.as_uri(), "digest": f"r{round_}", "context": "evaluation",
                     "profile": {"num_images": 8}}]
        barrier, errors = threading.Barrier(len(runs)), []

        def log_inputs(run_id: str) -> None:
            barrier.wait()
            try:
                send(mlflow_client, run_id, call(tmp_path, "inputs", datasets=datasets), tmp_path)
            except Exception as exc:  # noqa: BLE001  (reported below, with the run)
                errors.append((run_id, exc))

        threads = [threading.Thread(target=log_inputs, args=(r,)) for r in runs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        for run_id in runs:
            assert [d.dataset.name for d in mlflow_client.get_run(run_id).inputs.dataset_inputs] == ["reference"], run_id
