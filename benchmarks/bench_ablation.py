"""Wall time of the whole 3-seed ablation against its goal (under 60 min on 2 CPU cores).

    python benchmarks/bench_ablation.py                      # runs studies/ablation_properties.yaml, then reports
    python benchmarks/bench_ablation.py --measure outputs/ablation_properties   # only report a finished study

Runs `pae-lab run STUDY --no-report` in a fresh output folder (unless --measure), prints the wall
time, the shared stages' and every run stage's summed seconds (from done.json), the CPU load while
it ran (the machine may be shared: a loaded machine inflates the figure), and the ratio to the goal.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

GOAL_MIN = 60.0
RUN_STAGES = ("tokenizer", "manifold", "generator", "generation", "controls")


def stage_seconds(root: Path) -> tuple[dict[str, float], dict[str, float], float | None]:
    shared = {p.parent.parent.name: json.loads(p.read_text())["seconds"] for p in root.glob("shared/*/*/done.json")}
    runs = {s: 0.0 for s in RUN_STAGES}
    for stage in RUN_STAGES:
        for done in root.glob(f"runs/*/seed*/{stage}/done.json"):
            runs[stage] += json.loads(done.read_text())["seconds"]
    stamps = [json.loads(p.read_text()).get("finished") for p in root.glob("**/done.json")]
    starts = [json.loads(p.read_text()).get("started") for p in root.glob("**/stage.json")]
    stamps, starts = [t for t in stamps if t], [t for t in starts if t]
    span = (max(stamps) - min(starts)) if stamps and starts else None
    return shared, runs, span


def report(root: Path, wall: float | None, load: tuple[float, float] | None) -> None:
    shared, runs, span = stage_seconds(root)
    if not runs["tokenizer"]:
        sys.exit(f"no finished run stages under {root}/runs")
    n_runs = len(list(root.glob("runs/*/seed*/generation/done.json")))
    minutes = (wall if wall is not None else span or float("nan")) / 60
    print(f"study: {root}  finished runs: {n_runs}")
    print(f"wall time: {minutes:.1f} min ({'measured' if wall is not None else 'first stage start to last stage end'})"
          f"  goal < {GOAL_MIN:.0f} min  ratio {minutes / GOAL_MIN:.2f}")
    print("shared stages: " + ", ".join(f"{k} {v:.0f}s" for k, v in sorted(shared.items())))
    print("run stages (summed over runs): " + ", ".join(f"{k} {v:.0f}s" for k, v in runs.items()))
    if load:
        print(f"load average (1 min) at start / end: {load[0]:.1f} / {load[1]:.1f} on {os.cpu_count()} cores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="studies/ablation_properties.yaml")
    parser.add_argument("--out", default="outputs/bench_ablation", help="fresh output folder for the timed run")
    parser.add_argument("--measure", default=None, help="only report this finished study folder")
    args = parser.parse_args()
    if args.measure:
        report(Path(args.measure), None, None)
        return
    out = Path(args.out).resolve()
    if out.exists() and any(out.iterdir()):
        sys.exit(f"{out} is not empty: pass --out to a fresh folder (a cached study would time nothing)")
    cli = Path(sys.executable).with_name("pae-lab")
    load0 = os.getloadavg()[0]
    start = time.perf_counter()
    subprocess.run([str(cli), "run", args.study, "--no-report", "--set", f"output_dir={out}"], check=True)
    wall = time.perf_counter() - start
    report(out, wall, (load0, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
