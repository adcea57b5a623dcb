"""Peak RSS per stage on a generated ImageFolder, at two image counts: memory must stay flat as data doubles.

    nice python benchmarks/bench_memory.py --counts 10000 20000 --out /tmp/bench_memory

Writes a flat ImageFolder of `scenes` images (64 px PNG, 10 classes) per count, runs a small study
on it (`pae-lab run`, inline launcher, one variant) in a child process, and samples the RSS of
that process (and, separately, the unique memory of its DataLoader workers) every 50 ms,
attributing each sample to the stage running then (the stage folder with a stage.json and no
done.json). One process runs every stage, so a stage's figure is the peak so far while it runs. Each count's
study folder is cleared first: a rerun over finished stages would run (and show) nothing.
Prints peak RSS per stage and count, and the goals: whole run < 3 GB, no stage growing with the
image count.
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

STAGES = ("data", "prior", "refine", "tokenizer", "manifold", "generator", "generation")
GOAL_GB = 3.0
ROOT = Path(__file__).resolve().parents[1]


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


def measure(path: Path, study_dir: Path) -> tuple[dict[str, float], dict[str, float], float]:
    """Run the study from scratch (a cached stage would run nothing and show no figure) and sample its memory."""
    shutil.rmtree(study_dir, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "pae_lab", "run", str(path), "--no-report"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    main, workers, t0 = {}, {}, time.time()
    handle = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            rss, kids = handle.memory_info().rss, workers_uss(handle)
        except psutil.Error:  # the study process itself has exited
            break
        stage = running_stage(study_dir) or "other"
        main[stage] = max(main.get(stage, 0), rss / 2**30)
        workers[stage] = max(workers.get(stage, 0), kids / 2**30)
        time.sleep(0.05)
    if proc.wait() != 0:
        sys.exit(f"study {path} failed:\n{proc.stderr.read()[-3000:]}")
    return main, workers, time.time() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10000, 20000])
    parser.add_argument("--out", type=Path, default=Path("/tmp/pae_lab_bench_memory"))
    args = parser.parse_args()
    results = {}
    for count in args.counts:
        images = args.out / f"images{count}"
        print(f"{count} images: writing the folder ...", flush=True)
        write_folder(images, count)
        print(f"{count} images: running the study ...", flush=True)
        results[count] = measure(study_file(args.out, count, images), args.out / f"study{count}")
        print(f"  done in {results[count][2]:.0f} s", flush=True)
    print("\npeak RSS in GB of the study process (DataLoader workers apart), per stage; 64 px images")
    print(f"{'stage':<12}" + "".join(f"{c:>10}" for c in args.counts) + f"{'growth':>10}")
    for stage in (*STAGES, "other"):
        peaks = [results[c][0].get(stage, float("nan")) for c in args.counts]
        print(f"{stage:<12}" + "".join(f"{p:>10.2f}" for p in peaks) + f"{peaks[-1] - peaks[0]:>+10.2f}")
    workers = [max(results[c][1].values()) for c in args.counts]
    print(f"{'workers':<12}" + "".join(f"{w:>10.2f}" for w in workers) + f"{workers[-1] - workers[0]:>+10.2f}")
    whole = [max(results[c][0].values()) + max(results[c][1].values()) for c in args.counts]
    print(f"{'whole run':<12}" + "".join(f"{w:>10.2f}" for w in whole) + f"   goal < {GOAL_GB:.1f} GB: "
          + ("met" if max(whole) < GOAL_GB else "MISSED"))
    print("seconds     " + "".join(f"{results[c][2]:>10.0f}" for c in args.counts))


if __name__ == "__main__":
    main()
