"""Many jobs logging to one tracking server at once: does MLflow end up holding every point?

Each writer is its own process logging through pae-lab's job-side RunLogger (MLflow + the JSON-lines
mirror), all starting together, and ending the way a job does (RunLogger.finish). Afterwards every
run's mirror is compared with what MLflow holds.

`--outage` adds a second case beside it: the same writers, each pausing `--pace-s` between steps
as a training job does, while the server is stopped once they have logged a third of their steps
and started again at once (it answers after its start-up). The writers keep logging to their
mirrors, try the server again on their back-off and send what it lacks when it answers; the case
reports the same comparison, how long the server was down, what the writers' outage records say
(points they sent on recovery, attempts and the seconds those cost) and the slowest single log
call (a writer must never wait on the server).

    python benchmarks/bench_tracking_load.py                 # starts PostgreSQL + `pae-lab server` itself
    python benchmarks/bench_tracking_load.py --outage --writers 4 --steps 300
    python benchmarks/bench_tracking_load.py --uri http://127.0.0.1:5000 --writers 16 --steps 1000

Prints points logged, points found, lost and seconds for each case; exits 1 when a point is lost.
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

from pae_lab.tracking.mirror import mirror_points, missing_points  # noqa: E402
from pae_lab.tracking.resume import read_record  # noqa: E402
from pae_lab.tracking.store import RunLogger, StudyTracker, mirror_path  # noqa: E402

START_TIMEOUT_S = 120
STAGE = "load"


def writer(index: int, uri: str, run_id: str, folder: str, steps: int, keys: int, pace_s: float, ready, go,
           slowest) -> None:
    logger = RunLogger(Path(folder), uri, run_id)
    ready.release()
    go.wait(START_TIMEOUT_S)
    worst = 0.0
    for step in range(1, steps + 1):
        t0 = time.perf_counter()
        logger.metrics(STAGE, {f"m{k}": index * 1e6 + step * 10 + k for k in range(keys)}, step)
        worst = max(worst, time.perf_counter() - t0)
        time.sleep(pace_s)
    logger.finish("FINISHED")
    slowest.put(worst)


def logged_steps(folders: list[Path]) -> int:
    """Records the writers' mirrors hold so far."""
    total = 0
    for folder in folders:
        path = mirror_path(folder, STAGE)
        total += path.read_bytes().count(b"\n") if path.is_file() else 0
    return total


def run_load(uri: str, folder: Path, writers: int, steps: int, keys: int, pace_s: float = 0.0,
             outage=None) -> dict[str, float]:
    """`outage`: the TrackingServer to stop once a third of the steps are logged, and start again."""
    tracker = StudyTracker(uri, f"load-{uuid.uuid4().hex[:8]}")
    run_ids = [tracker.ensure_run(f"load:{i}", f"writer{i}", {"pae.kind": "load"}) for i in range(writers)]
    ctx = mp.get_context("spawn")  # separate interpreters, as separate jobs are
    ready, go, slowest = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    dirs = [folder / f"writer{i}" for i in range(writers)]
    procs = [ctx.Process(target=writer, args=(i, uri, run_ids[i], str(dirs[i]), steps, keys, pace_s, ready, go, slowest))
             for i in range(writers)]
    for p in procs:
        p.start()
    for _ in procs:
        if not ready.acquire(timeout=START_TIMEOUT_S):
            raise RuntimeError(f"writers did not start within {START_TIMEOUT_S} s")
    print(f"{writers} writers ready; logging {steps} steps x {keys} metrics each"
          + (f", {pace_s:g} s apart; the server stops after a third of them" if outage else "") + " ...", flush=True)
    t0 = time.perf_counter()
    go.set()
    down_s = 0.0
    if outage is not None:
        while logged_steps(dirs) < writers * steps // 3 and any(p.is_alive() for p in procs):
            time.sleep(0.05)
        stopped = time.perf_counter()
        outage.stop()
        outage.start()  # returns once it answers /health again
        down_s = time.perf_counter() - stopped
    for p in procs:
        p.join()
    seconds = time.perf_counter() - t0
    logged = lost = 0
    for i, run_id in enumerate(run_ids):
        points = mirror_points(dirs[i])
        logged += len(points)
        lost += len(missing_points(tracker.client, run_id, points))
    failed = [p.exitcode for p in procs if p.exitcode]
    records = [read_record(d) for d in dirs]
    worst = [slowest.get(timeout=START_TIMEOUT_S) for p in procs if not p.exitcode]
    return {"writers": writers, "logged": logged, "found": logged - lost, "lost": lost, "seconds": seconds,
            "failed_writers": len(failed), "down_s": down_s, "slowest_call_s": max(worst, default=0.0),
            "replayed": sum(r.get("replayed", 0) for r in records),
            "attempts": sum(r.get("attempts", 0) for r in records),
            "attempt_seconds": sum(r.get("attempt_seconds", 0.0) for r in records),
            "outages": sum(r.get("outages", 0) for r in records)}


def report(case: str, result: dict[str, float]) -> str:
    rate = result["logged"] / result["seconds"] if result["seconds"] else 0.0
    line = (f"{case}writers {result['writers']}: points logged {result['logged']}, points found {result['found']}, "
            f"lost {result['lost']}, seconds {result['seconds']:.1f} ({rate:.0f} points/s); "
            f"writers that failed: {result['failed_writers']}")
    if case:
        line += (f"; server down {result['down_s']:.1f} s, outages seen {result['outages']}, points the writers "
                 f"sent on recovery {result['replayed']}, attempts {result['attempts']} "
                 f"({result['attempt_seconds']:.2f} s in all); slowest log call {result['slowest_call_s']:.2f} s")
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", help="A running tracking server; default: start PostgreSQL + `pae-lab server` here.")
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--steps", type=int, default=500, help="Steps each writer logs (one request per step).")
    parser.add_argument("--keys", type=int, default=4, help="Metrics per step.")
    parser.add_argument("--server-workers", type=int, default=4, help="Worker processes of a server started here.")
    parser.add_argument("--outage", action="store_true", help="Also the outage case (needs the server started here).")
    parser.add_argument("--pace-s", type=float, default=0.15, help="Outage case: seconds each writer waits between "
                        "steps; the writers must outlive the outage (a restart takes ~15 s here) to send what the "
                        "store lacks themselves, else what they leave is the driver's to reconcile")
    args = parser.parse_args()
    if args.outage and args.uri:
        parser.error("--outage stops and starts the server, so it needs the one this script starts: leave out --uri")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        if args.uri:
            results.append(("", run_load(args.uri, Path(tmp) / "load", args.writers, args.steps, args.keys)))
        else:
            from tracking_fixture import TrackingServer

            with TrackingServer(Path(tmp) / "server", workers=args.server_workers) as server:
                print(f"server {server.uri} on {server.pg_uri}/mlflow", flush=True)
                results.append(("", run_load(server.uri, Path(tmp) / "load", args.writers, args.steps, args.keys)))
                if args.outage:
                    results.append(("outage: ", run_load(server.uri, Path(tmp) / "outage", args.writers, args.steps,
                                                         args.keys, args.pace_s, outage=server)))
    for case, result in results:
        print(report(case, result))
    return 1 if any(r["lost"] or r["failed_writers"] for _, r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
