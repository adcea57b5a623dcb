"""`pae-lab server`: one MLflow tracking server that every job of a study logs to over HTTP.

Many writers on one SQLite file (or one on a network file system) race; a server in front of
PostgreSQL does not. Artifacts go through the server (`--serve-artifacts`), so a node needs only
the URL, no shared folder. The bind address comes from the study's `tracking.uri`, so the
address jobs use and the address the server listens on are written once.
"""
from __future__ import annotations

import ipaddress
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from pae_lab.config.errors import StudyError
from pae_lab.tracking.store import answers

HEALTH_TIMEOUT_S = 90
LOOPBACK_NAMES = ("localhost", "127.0.0.1")


def bind_address(uri: str | None, source: str | Path = "study") -> tuple[str, int]:
    """(host, port) of an http(s):// tracking URI; anything else is a user error naming the key."""
    parts = urlsplit(uri or "")
    if parts.scheme not in ("http", "https") or not parts.hostname or not parts.port:
        raise StudyError(f"{source}: tracking.uri: {uri!r} is not http://host:port; `pae-lab server` serves the "
                         "URI jobs log to, e.g. tracking.uri: http://127.0.0.1:5000")
    return parts.hostname, parts.port


def allowed_hosts(host: str, port: int) -> list[str]:
    """Host headers MLflow accepts: its defaults (loopback, private IPs) cover addresses, not names,
    so a URI naming a host (http://head-node:5000) must allow that name."""
    try:
        ipaddress.ip_address(host)
        return []
    except ValueError:
        names = dict.fromkeys((host, *LOOPBACK_NAMES))
        return ["--allowed-hosts", ",".join(x for name in names for x in (name, f"{name}:{port}"))]


def server_command(backend_uri: str, artifacts: Path, host: str, port: int, workers: int,
                   name: str | None = None) -> list[str]:
    """`name`: the host jobs address (the URI's), where it differs from the bind address."""
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
            "--serve-artifacts", "--artifacts-destination", str(Path(artifacts).resolve()),
            "--host", host, "--port", str(port), "--workers", str(workers), *allowed_hosts(name or host, port)]


def wait_healthy(url: str, timeout_s: float = HEALTH_TIMEOUT_S, alive=lambda: True) -> None:
    """Poll `<url>/health` until it answers; `alive()` false (the server process died) or the
    deadline passing raises instead of waiting on."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the MLflow server for {url} exited before it answered /health")
        if answers(url):
            return
        time.sleep(0.25)
    raise RuntimeError(f"the MLflow server for {url} did not answer /health within {timeout_s:.0f} s")


def serve(tracking_uri: str | None, source: str | Path, backend_uri: str, artifacts: Path, workers: int,
          console, host: str | None = None) -> int:
    """Serve `backend_uri` at the study's tracking URI (or on `host` at its port) until stopped."""
    from pae_lab.tracking.ui import run_foreground, warn_if_exposed

    uri_host, port = bind_address(tracking_uri, source)
    bind = host or uri_host
    warn_if_exposed(bind, port, console)
    Path(artifacts).mkdir(parents=True, exist_ok=True)
    console.print(f"MLflow tracking server: {tracking_uri}  (store {backend_uri}, artifacts {artifacts}, "
                  f"{workers} workers); Ctrl-C stops it", soft_wrap=True)
    return run_foreground(server_command(backend_uri, artifacts, bind, port, workers, uri_host), console, "MLflow tracking server")
