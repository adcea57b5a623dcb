"""The everyday loop: start-up of the CLI commands and a rerun of a finished study, against the goals.

    python benchmarks/bench_everyday_loop.py            # a tiny study, trained once first (~1 min)
    python benchmarks/bench_everyday_loop.py --study studies/smoke.yaml   # your own (trained if needed)

Goals: `--help`, `status`, `variants`, `registry`, `schema` and a config error each under 1.5 s;
a rerun of a finished study (report inputs unchanged) under 5 s. Each command runs in a fresh
process, best of --repeat, as a user would type it.
"""
from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def timed(cmd: list[str], repeat: int, ok_codes: tuple[int, ...] = (0,)) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        best = min(best, time.perf_counter() - t0)
        if proc.returncode not in ok_codes:
            sys.exit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--study", type=Path, help="a study file; default: a tiny two-variant study in a temp folder")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cli = [sys.executable, "-m", "pae_lab"]
    with tempfile.TemporaryDirectory() as tmp:
        study = args.study
        if study is None:
            from conftest import TINY

            study = Path(tmp) / "tiny.yaml"
            cfg = {**copy.deepcopy(TINY), "name": "everyday", "output_dir": str(Path(tmp) / "out"),
                   "variants": ["baseline", "pae"]}
            study.write_text(yaml.safe_dump(cfg))
        broken = Path(tmp) / "broken.yaml"
        broken.write_text("name: broken\ntraining: {steps: -3}\n")
        print(f"training {study} once (skipped when already finished) ...", flush=True)
        subprocess.run([*cli, "run", str(study)], cwd=ROOT, check=True, capture_output=True)
        from pae_lab.plan.layout import StudyLayout
        from pae_lab.plan.preflight import load_study

        report = StudyLayout(load_study(study, preflight=False).study_dir()).report.html
        built = report.stat().st_mtime_ns if report.exists() else None
        rows = [
            ("pae-lab --help", timed([*cli, "--help"], args.repeat), 1.5),
            ("pae-lab schema", timed([*cli, "schema"], args.repeat), 1.5),
            ("config error", timed([*cli, "run", str(broken)], args.repeat, ok_codes=(2,)), 1.5),
            ("pae-lab status", timed([*cli, "status", str(study)], args.repeat), 1.5),
            ("pae-lab variants", timed([*cli, "variants"], args.repeat), 1.5),
            ("pae-lab registry", timed([*cli, "registry"], args.repeat), 1.5),
            ("rerun of the finished study", timed([*cli, "run", str(study)], args.repeat), 5.0),
        ]
        rebuilt = (report.stat().st_mtime_ns if report.exists() else None) != built
    print(f"\n{'command':<30}{'seconds':>9}{'goal':>7}{'ratio':>8}")
    for name, seconds, goal in rows:
        flag = "" if seconds <= goal else "  over goal"
        print(f"{name:<30}{seconds:>9.2f}{goal:>7.1f}{seconds / goal:>8.2f}{flag}")
    print(f"report rebuilt by the reruns (inputs unchanged, goal: no): {'yes  over goal' if rebuilt else 'no'}")


if __name__ == "__main__":
    main()
