"""Many jobs logging to one tracking server at once: does MLflow end up holding every point?

Each writer is its own process logging through pae-lab's job-side RunLogger (MLflow + the JSON-lines
mirror), all starting together. Afterwards every run's mirror is compared with what MLflow holds.

    python benchmarks/bench_tracking_load.py                 # starts PostgreSQL + `pae-lab server` itself
    python benchmarks/bench_tracking_load.py --uri http://127.0.0.1:5000 --writers 16 --steps 1000

Prints points logged, points found, lost and seconds; exits 1 when a point is lost.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from pae_lab.tracking.sync import mirror_points, missing_points  # noqa: E402
from pae_lab.tracking.store import RunLogger, StudyTracker  # noqa: E402

START_TIMEOUT_S = 120


def writer(index: int, uri: str, run_id: str, folder: str, steps: int, keys: int, ready, go) -> None:
    logger = RunLogger(Path(folder), uri, run_id)
    ready.release()
    go.wait(START_TIMEOUT_S)
    for step in range(1, steps + 1):
        logger.metrics("load", {f"m{k}": index * 1e6 + step * 10 + k for k in range(keys)}, step)


def run_load(uri: str, folder: Path, writers: int, steps: int, keys: int) -> dict[str, float]:
    tracker = StudyTracker(uri, f"load-{uuid.uuid4().hex[:8]}")
    run_ids = [tracker.ensure_run(f"load:{i}", f"writer{i}", {"pae.kind": "load"}) for i in range(writers)]
    ctx = mp.get_context("spawn")  # separate interpreters, as separate jobs are
    ready, go = ctx.Semaphore(0), ctx.Event()
    procs = [ctx.Process(target=writer, args=(i, uri, run_ids[i], str(folder / f"writer{i}"), steps, keys, ready, go))
             for i in range(writers)]
    for p in procs:
        p.start()
    for _ in procs:
        if not ready.acquire(timeout=START_TIMEOUT_S):
            raise RuntimeError(f"writers did not start within {START_TIMEOUT_S} s")
    print(f"{writers} writers ready; logging {steps} steps x {keys} metrics each ...", flush=True)
    t0 = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
    seconds = time.perf_counter() - t0
    logged = lost = 0
    for i, run_id in enumerate(run_ids):
        points = mirror_points(folder / f"writer{i}")
        logged += len(points)
        lost += len(missing_points(tracker.client, run_id, points))
    failed = [p.exitcode for p in procs if p.exitcode]
    return {"writers": writers, "logged": logged, "found": logged - lost, "lost": lost, "seconds": seconds,
            "failed_writers": len(failed)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", help="A running tracking server; default: start PostgreSQL + `pae-lab server` here.")
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--steps", type=int, default=500, help="Steps each writer logs (one request per step).")
    parser.add_argument("--keys", type=int, default=4, help="Metrics per step.")
    parser.add_argument("--server-workers", type=int, default=4, help="Worker processes of a server started here.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        if args.uri:
            result = run_load(args.uri, Path(tmp), args.writers, args.steps, args.keys)
        else:
            from tracking_fixture import TrackingServer

            with TrackingServer(Path(tmp) / "server", workers=args.server_workers) as server:
                print(f"server {server.uri} on {server.pg_uri}/mlflow", flush=True)
                result = run_load(server.uri, Path(tmp), args.writers, args.steps, args.keys)
    rate = result["logged"] / result["seconds"] if result["seconds"] else 0.0
    print(f"writers {result['writers']}: points logged {result['logged']}, points found {result['found']}, "
          f"lost {result['lost']}, seconds {result['seconds']:.1f} ({rate:.0f} points/s); "
          f"writers that failed: {result['failed_writers']}")
    return 1 if result["lost"] or result["failed_writers"] else 0


if __name__ == "__main__":
    sys.exit(main())
