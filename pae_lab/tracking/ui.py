"""`pae-lab ui`: MLflow's UI over a study's store, opened on the study's experiment.

The server runs in its own process group, so Ctrl-C (or SIGTERM) stops it and every worker it
started, and `pae-lab ui` then exits 0: stopping the UI is how a user is meant to leave it.
"""
from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys

from rich.console import Console

STOP_TIMEOUT_S = 15


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def server_command(uri: str, host: str, port: int) -> list[str]:
    """One worker: a researcher's UI, not a production tracking server (less memory, faster start)."""
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host,
            "--port", str(port), "--workers", "1"]


# MLflow 3's server also starts a job runner (GenAI jobs: issue detection, trace roll-ups) that
# waits 10 s for its queue before the UI answers; a study's runs table needs none of it.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def experiment_url(uri: str, experiment: str, host: str, port: int) -> tuple[str, bool]:
    """(URL of the experiment's page, whether the experiment exists yet)."""
    from pae_lab.tracking.view import VIEW_KEY
    from pae_lab.tracking.store import client

    shown = socket.getfqdn() if host in ("0.0.0.0", "::") else host
    base = f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}"
    exp = client(uri).get_experiment_by_name(experiment)
    return (f"{base}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}", True) if exp else (base, False)


def warn_if_exposed(host: str, port: int, console: Console) -> None:
    if not is_loopback(host):
        console.print(f"[yellow]warning:[/] --host {host} is not loopback: anyone who can reach this machine "
                      f"on port {port} can read and change the study's runs (MLflow has no login here); "
                      "prefer an SSH tunnel to 127.0.0.1")


def serve(uri: str, experiment: str, host: str, port: int, console: Console) -> int:
    """Run the server until it exits or the user stops it; 0 when stopped by Ctrl-C / SIGTERM."""
    warn_if_exposed(host, port, console)
    # looked up before the server starts: a look-up racing the server's own start on the same SQLite
    # file was seen to miss the experiment
    url, exists = experiment_url(uri, experiment, host, port)
    if not exists:
        console.print(f"[yellow]warning:[/] no experiment {experiment!r} in {uri} yet: run the study first")
    console.print(f"MLflow UI: {url}  (store {uri}); Ctrl-C stops it", soft_wrap=True)
    return run_foreground(server_command(uri, host, port), console, "MLflow UI")


def run_foreground(cmd: list[str], console: Console, what: str) -> int:
    """Run a server in its own process group until it exits or the user stops it; 0 when stopped
    by Ctrl-C / SIGTERM."""
    proc = subprocess.Popen(cmd, start_new_session=True, env={**os.environ, **SERVER_ENV})
    # Ctrl-C and SIGTERM both stop cleanly, even where a shell started us with SIGINT ignored
    previous = {sig: signal.signal(sig, signal.default_int_handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return proc.wait()
    except KeyboardInterrupt:
        stop(proc)
        console.print(f"{what} stopped")
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop(proc: subprocess.Popen) -> None:
    """SIGINT to the server's process group; SIGKILL if it has not gone within STOP_TIMEOUT_S."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
