"""Tokenizer training throughput: pae-lab's stage (TrainLoop, logging to MLflow + JSONL, progress,
checkpoints) against a bare PyTorch loop over the same model, losses and batches.

    python benchmarks/bench_train_throughput.py [--variant pae] [--steps 40] [--batch 64]

Prints images/s for both and the ratio (target: pae-lab keeps >= 90% of the bare loop).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from pae_lab.config.schema import StudyConfig
from pae_lab.losses.perceptual import build_perceptual
from pae_lab.losses.reconstruction import reconstruction_terms
from pae_lab.losses.regularizers import RegContext
from pae_lab.models.tokenizer import Tokenizer
from pae_lab.plan.progress import ProgressWriter
from pae_lab.plan.layout import StudyLayout
from pae_lab.stages.context import StageContext
from pae_lab.stages.tokenizer import tokenizer_stage
from pae_lab.execution.driver import Driver
from pae_lab.tracking.store import RunLogger
from pae_lab.stages.training import resolve_device, seed_step
from pae_lab.variants import get_variant


def bare_loop(study: StudyConfig, ctx: StageContext, variant: str, steps: int) -> float:
    """The same work with nothing around it: no logging, progress, checkpoints or metrics."""
    cfg = study.training
    images = torch.from_numpy(np.asarray(ctx.split("train").images))  # in memory: the loop alone is timed
    targets = torch.from_numpy(np.asarray(ctx.array("refine", "targets_train.npy"), np.float32))
    vfm = torch.from_numpy(np.asarray(ctx.array("prior", "features_train.npy"), np.float32))
    torch.manual_seed(0)
    model = Tokenizer(study.tokenizer)
    perceptual = build_perceptual(cfg.perceptual.name, **cfg.perceptual.params)
    v = get_variant(variant)
    regs = v.build(latent_channels=study.tokenizer.latent_channels, vfm_dim=vfm.shape[1])
    params = list(model.parameters()) + list(regs.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    start = time.perf_counter()
    for step in range(steps):
        seed_step(0, step)
        idx = torch.randint(0, len(images), (cfg.batch_size,))
        x = images[idx].float() / 255
        z = model.encode(x)
        x_rec = model.decode(z)
        total, _, features = reconstruction_terms(x, x_rec, perceptual, l1_weight=cfg.l1_weight,
                                                  perceptual_weight=cfg.perceptual.weight)
        rctx = RegContext(x=x, z=z, x_rec=x_rec, decode=model.decode, target=targets[idx], vfm=vfm[idx],
                          perceptual=perceptual, step=step, x_rec_features=features)
        for name, reg in regs.items():
            total = total + v.weights[name] * reg(rctx)
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
    return steps * cfg.batch_size / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", default="pae")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        study = StudyConfig.model_validate({
            "name": "bench", "output_dir": tmp, "variants": [args.variant],
            "data": {"train_size": 512, "val_size": 64}, "refine": {"steps": 20},
            "training": {"steps": args.steps, "batch_size": args.batch, "log_every": 10, "checkpoint_every": 20}})
        driver = Driver(study, Console(quiet=True))
        tracker, parent = driver.prepare()
        driver.shared_stages(RunLogger(Path(tmp) / "shared", driver.uri, parent))
        driver.mlflow.register(tracker, parent)
        spec = driver.runs[0]
        ctx = StageContext("tokenizer", study, {s: spec.stage_dir(s) for s in ("data", "prior", "refine")},
                           StudyLayout(Path(tmp)), resolve_device("cpu"),
                           RunLogger(spec.run_dir, driver.uri, spec.mlflow_run_id), ProgressWriter(spec.run_dir), spec)
        bare = bare_loop(study, ctx, args.variant, args.steps)
        out = spec.stage_dir("tokenizer")
        out.mkdir(parents=True)
        start = time.perf_counter()
        tokenizer_stage(ctx, out)
        # the stage also encodes train+val and writes a grid after training: time training alone
        lab = float(np.mean([r["throughput/items_per_s"] for r in map(__import__("json").loads,
                     (out / "metrics.jsonl").read_text().splitlines()) if "throughput/items_per_s" in r]))
        total = time.perf_counter() - start
    print(f"variant {args.variant}, batch {args.batch}, {args.steps} steps, {args.threads} threads")
    print(f"bare PyTorch loop : {bare:8.1f} images/s")
    print(f"pae-lab stage     : {lab:8.1f} images/s  (stage wall time incl. encoding the splits: {total:.1f} s)")
    print(f"ratio             : {lab / bare:8.3f}  (target >= 0.90)")


if __name__ == "__main__":
    main()
