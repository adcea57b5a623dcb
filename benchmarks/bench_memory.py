"""Peak RSS per stage on a generated ImageFolder, at two image counts: memory must stay flat as data doubles.

    nice python benchmarks/bench_memory.py --counts 10000 20000 --out /tmp/bench_memory

Writes a flat ImageFolder of `scenes` images (64 px PNG, 10 classes) per count, runs a small study
on it (`pae-lab run`, inline launcher, one variant) in a child process, and samples the RSS of
that process (and, separately, the unique memory of its DataLoader workers) every 50 ms,
attributing each sample to the stage running then (the stage folder with a stage.json and no
done.json). One process runs every stage, so a stage's peak includes what earlier stages left
allocated; its rise (peak less the RSS when it began) is what the stage itself adds. Each study
folder is cleared first: a rerun over finished stages would run (and show) nothing. With
`--repeats R` every count runs R times, and `spread` is the largest difference between repeats
at one count: growth within it is run-to-run noise (allocator, thread timing), not data.
Prints peak and rise per stage and count, and the goals: whole run < 3 GB, no stage growing with
the image count.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import yaml
from PIL import Image

from pae_lab.plan.graph import ordered

STAGES = tuple(stage.name for stage in ordered())  # every stage of the graph, in run order
GOAL_GB = 3.0
ROOT = Path(__file__).resolve().parents[1]
Figures = dict[str, float]  # stage -> GB


def write_folder(root: Path, count: int, resolution: int = 64) -> None:
    """`count` scenes images as root/<class>/<i>.png (skipped when already there)."""
    if (root / "done").exists():
        return
    from pae_lab.data import build_dataset

    images = build_dataset("scenes", resolution=resolution, size=count, split="train", seed=1)  # once: 12 KB an image
    for i in range(count):
        folder = root / images.class_names[images.labels[i]]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images.images[i].transpose(1, 2, 0)).save(folder / f"{i:06d}.png")
        if (i + 1) % 2000 == 0:
            print(f"  wrote {i + 1}/{count} images", flush=True)
    (root / "done").touch()


def study_file(out: Path, count: int, images: Path) -> Path:
    study = {
        "name": f"mem{count}", "output_dir": str(out / f"study{count}"), "seeds": [0], "variants": ["pae"], "device": "cpu",
        "data": {"name": "imagefolder", "resolution": 64, "train_size": count, "val_size": 512, "workers": 2,
                 "params": {"root": str(images), "val_fraction": 0.05}},
        "prior": {"params": {"input_resolution": 32, "block": 4}, "batch_size": 256},  # cheap: the bench is about memory
        "refine": {"steps": 20, "batch_size": 64},
        "tokenizer": {"base_channels": 16, "channel_mult": [1, 2], "latent_channels": 8, "downsample": 4},
        "training": {"steps": 30, "batch_size": 16, "log_every": 10, "checkpoint_every": 30},
        "metrics": {"n_images": 128},
        "generator": {"width": 64, "depth": 2, "heads": 2, "patch": 2, "steps": 30, "batch_size": 64, "eval_at": [30]},
        "evaluation": {"num_samples": 256, "sampler": {"steps": 4}},
        "tracking": {"log_images": False},
    }
    path = out / f"mem{count}.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def running_stage(study_dir: Path) -> str | None:
    for stage in STAGES:
        for folder in list(study_dir.glob(f"shared/{stage}/*")) + list(study_dir.glob(f"runs/*/seed*/{stage}")):
            if (folder / "stage.json").exists() and not (folder / "done.json").exists():
                return stage
    return None


def workers_uss(handle: psutil.Process) -> int:
    """Unique memory of the child processes (forked DataLoader workers); one that exits while it is read counts 0."""
    total = 0
    for child in handle.children(recursive=True):
        try:
            total += child.memory_full_info().uss
        except psutil.Error:
            pass
    return total


def measure(path: Path, study_dir: Path) -> dict:
    """Run the study from scratch (a cached stage would run nothing and show no figure) and sample its memory:
    {"peak": Figures, "rise": Figures, "workers": GB, "whole run": GB (peak + workers), "seconds": s}."""
    shutil.rmtree(study_dir, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "pae_lab", "run", str(path), "--no-report"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak: Figures = {}
    start: Figures = {}
    workers, t0 = 0.0, time.time()
    handle = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            rss, kids = handle.memory_info().rss / 2**30, workers_uss(handle) / 2**30
        except psutil.Error:  # the study process itself has exited
            break
        stage = running_stage(study_dir) or "other"
        start.setdefault(stage, rss)
        peak[stage], workers = max(peak.get(stage, 0), rss), max(workers, kids)
        time.sleep(0.05)
    if proc.wait() != 0:
        sys.exit(f"study {path} failed:\n{proc.stderr.read()[-3000:]}")
    rise = {stage: peak[stage] - start[stage] for stage in peak}
    return {"peak": peak, "rise": rise, "workers": workers, "whole run": max(peak.values()) + workers,
            "seconds": time.time() - t0}


def table(title: str, counts: list[int], runs: dict[int, list[dict]], figure) -> None:
    """One row per stage: the mean over repeats per count, its growth from the first count to the last, and
    the spread (largest max - min over the repeats of one count)."""
    print(f"\n{title}")
    print(f"{'stage':<12}" + "".join(f"{c:>10}" for c in counts) + f"{'growth':>10}{'spread':>10}")
    for stage in (*STAGES, "other", "workers", "whole run"):
        values = [[figure(run, stage) for run in runs[c]] for c in counts]
        if any(v is None for row in values for v in row):
            continue
        means = [float(np.mean(row)) for row in values]
        spread = max(max(row) - min(row) for row in values)
        print(f"{stage:<12}" + "".join(f"{m:>10.2f}" for m in means) + f"{means[-1] - means[0]:>+10.2f}{spread:>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10000, 20000])
    parser.add_argument("--repeats", type=int, default=1, help="runs per count, to show run-to-run spread")
    parser.add_argument("--out", type=Path, default=Path("/tmp/pae_lab_bench_memory"))
    args = parser.parse_args()
    runs: dict[int, list[dict]] = {}
    for count in args.counts:
        images = args.out / f"images{count}"
        print(f"{count} images: writing the folder ...", flush=True)
        write_folder(images, count)
        for r in range(args.repeats):
            print(f"{count} images: running the study ({r + 1}/{args.repeats}) ...", flush=True)
            runs.setdefault(count, []).append(measure(study_file(args.out, count, images), args.out / f"study{count}"))
            print(f"  done in {runs[count][-1]['seconds']:.0f} s", flush=True)

    def peak(run: dict, stage: str) -> float | None:
        return run[stage] if stage in ("workers", "whole run") else run["peak"].get(stage)

    table("peak RSS in GB of the study process (DataLoader workers apart; whole run adds them), 64 px images",
          args.counts, runs, peak)
    table("rise in GB: a stage's peak less the RSS when it began (what the stage itself adds)", args.counts, runs,
          lambda run, stage: run["rise"].get(stage))
    whole = max(peak(run, "whole run") for row in runs.values() for run in row)
    print(f"\nwhole run at most {whole:.2f} GB, goal < {GOAL_GB:.1f} GB: " + ("met" if whole < GOAL_GB else "MISSED"))
    print("seconds     " + "".join(f"{np.mean([r['seconds'] for r in runs[c]]):>10.0f}" for c in args.counts))


if __name__ == "__main__":
    main()
