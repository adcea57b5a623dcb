"""A real shared tracking server: PostgreSQL (scripts/postgres.sh) behind `pae-lab server` (MLflow with
artifact proxying), both on loopback in a scratch folder and stopped by their PID files.

Used by tests/test_tracking_server.py, tests/test_tracking_outage.py and benchmarks/bench_tracking_load.py:
    with TrackingServer(folder) as server:   # server.uri = http://127.0.0.1:PORT, server.pg_uri
        ...
server.stop() and server.start() take the MLflow server away and bring it back on the same port
(PostgreSQL keeps running): an outage.
"""
from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from pae_lab.tracking.server import wait_healthy

ROOT = Path(__file__).resolve().parents[1]
POSTGRES = ROOT / "scripts" / "postgres.sh"
STOP_TIMEOUT_S = 30
SCRIPT_TIMEOUT_S = 120


def postgres_missing() -> str | None:
    """Why the server cannot start here, or None."""
    if not list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")):
        return "PostgreSQL not installed: run scripts/install_test_services.sh"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TrackingServer:
    def __init__(self, folder: Path, workers: int = 2):
        self.folder = Path(folder)
        self.workers = workers
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.pg_uri = ""
        self.pid_file = self.folder / "server.pid"
        self.log = self.folder / "server.log"
        self.artifacts = self.folder / "artifacts"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "TrackingServer":
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def _postgres(self, verb: str) -> None:
        done = subprocess.run(["bash", str(POSTGRES), verb, str(self.folder / "pg")], capture_output=True, text=True,
                              timeout=SCRIPT_TIMEOUT_S)
        if done.returncode:
            raise RuntimeError(f"scripts/postgres.sh {verb} failed: {done.stdout}{done.stderr}")

    def up(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._postgres("up")
        self.pg_uri = (self.folder / "pg" / "uri").read_text().strip()
        try:
            self.start()
        except BaseException:
            self._postgres("down")
            raise

    def start(self) -> None:
        """The MLflow server alone (again on the same port after stop())."""
        study = self.folder / "server.yaml"
        study.write_text(yaml.safe_dump({"name": "tracking-server", "output_dir": str(self.folder / "server-study"),
                                         "tracking": {"uri": self.uri}}))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        with open(self.log, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "pae_lab", "server", str(study), "--backend-store-uri",
                                     f"{self.pg_uri}/mlflow", "--artifacts-destination", str(self.artifacts),
                                     "--workers", str(self.workers)], cwd=self.folder, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.proc = proc
        self.pid_file.write_text(str(proc.pid))
        try:
            wait_healthy(self.uri, alive=lambda: proc.poll() is None)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{exc}; log {self.log}:\n{self.log.read_text()[-3000:]}") from None

    def stop(self) -> None:
        """SIGTERM to `pae-lab server` (it stops MLflow's process group), SIGKILL after the deadline."""
        if not self.pid_file.exists():
            return
        pid = int(self.pid_file.read_text())
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while self._running(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._running(pid):
            os.killpg(pid, signal.SIGKILL)
            if self.proc is not None:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        self.pid_file.unlink()
        self.proc = None

    def _running(self, pid: int) -> bool:
        if self.proc is not None:  # our child: poll() also reaps it
            return self.proc.poll() is None
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False

    def down(self) -> None:
        try:
            self.stop()
        finally:
            self._postgres("down")


def study_file(tmp: Path, name: str, uri: str, **overrides) -> Path:
    """A tiny study (tests/conftest.py TINY, variant pae unless `overrides` say) logging to `uri`, written
    to tmp/<name>.yaml."""
    from conftest import TINY

    cfg = copy.deepcopy(TINY)
    cfg["generator"]["eval_at"] = []
    cfg.update({"name": name, "output_dir": str(tmp / name), "variants": ["pae"], "tracking": {"uri": uri}, **overrides})
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def child_runs(mlflow_client, experiment: str):
    exp = mlflow_client.get_experiment_by_name(experiment)
    return [r for r in mlflow_client.search_runs([exp.experiment_id]) if r.data.tags.get("pae.kind") == "run"]


def store_against_mirror(mlflow_client, run_id: str, folder: Path) -> tuple[set, set, int]:
    """(points of the mirror the run lacks, points the run holds under the mirror's keys that the
    mirror does not, points the run holds more often than the mirror does): all empty when the
    store holds exactly what the folder's mirror holds, none twice."""
    from collections import Counter

    from pae_lab.tracking.mirror import identity, mirror_points

    mine = Counter(identity(p) for p in mirror_points(folder))
    held = Counter(identity((m.key, m.step, m.value, m.timestamp)) for key in sorted({k for k, _, _ in mine})
                   for m in mlflow_client.get_metric_history(run_id, key))
    return set(mine) - set(held), set(held) - set(mine), sum(n - mine[i] for i, n in held.items() if n > mine[i])
