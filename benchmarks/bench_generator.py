"""Throughput of the default latent generator on an 8x8x16 latent: training and sampling.

    python benchmarks/bench_generator.py [--train-steps 20] [--sample-steps 50] [--samples 64] [--threads N]

Prints latents/s for flow-matching training steps (default GeneratorConfig: batch, model, AdamW,
EMA update, grad clipping) and images/s for sampling with Euler, Heun and guided Euler. Each
figure comes with the process CPU seconds it took: on a shared machine wall-clock rates move
with other people's load, CPU seconds much less.
"""
from __future__ import annotations

import argparse
import time

import torch

from pae_lab.generation import SamplerConfig, flow_matching_loss, generate_latents
from pae_lab.models.ema import EMA
from pae_lab.models.generator import build_generator
from pae_lab.config.schema import GeneratorConfig

LATENT = (16, 8, 8)
NUM_CLASSES = 10


class Timer:
    """Wall-clock and process-CPU seconds of a block."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self) -> "Timer":
        _sync(self.device)
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        _sync(self.device)
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def bench_training(cfg: GeneratorConfig, steps: int, device: torch.device) -> Timer:
    model = build_generator(cfg, LATENT[0], LATENT[1], NUM_CLASSES).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    ema = EMA(model, cfg.ema_decay)
    x1 = torch.randn(cfg.batch_size, *LATENT, device=device)
    y = torch.randint(0, NUM_CLASSES, (cfg.batch_size,), device=device)

    def step() -> None:
        loss = flow_matching_loss(model, x1, y, time_sampling=cfg.time_sampling, logit_mean=cfg.logit_mean,
                                  logit_std=cfg.logit_std)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or float("inf"))
        opt.step()
        ema.update(model)

    for _ in range(3):  # warm-up: allocator, lazy imports
        step()
    with Timer(device) as timer:
        for _ in range(steps):
            step()
    return timer


def bench_sampling(cfg: GeneratorConfig, sampler: SamplerConfig, n: int, device: torch.device) -> Timer:
    model = build_generator(cfg, LATENT[0], LATENT[1], NUM_CLASSES).to(device).eval()
    generate_latents(model, min(n, 8), LATENT, sampler.model_copy(update={"steps": 2}), device=device)
    with Timer(device) as timer:
        generate_latents(model, n, LATENT, sampler, device=device)
    return timer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--sample-steps", type=int, default=50)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = GeneratorConfig()
    params = sum(p.numel() for p in build_generator(cfg, LATENT[0], LATENT[1], NUM_CLASSES).parameters())
    print(f"device {device}, torch threads {torch.get_num_threads()}, latent {LATENT}, "
          f"model width {cfg.width} depth {cfg.depth} patch {cfg.patch} ({params / 1e6:.2f}M params)")

    t = bench_training(cfg, args.train_steps, device)
    per_step = t.wall / args.train_steps
    print(f"train   batch {cfg.batch_size}: {cfg.batch_size / per_step:8.1f} latents/s  ({per_step * 1e3:6.1f} ms/step, "
          f"{t.cpu / args.train_steps:5.2f} cpu-s/step; default {cfg.steps} steps ~ {cfg.steps * per_step:5.1f} s)")
    for label, sampler in [
        ("euler", SamplerConfig(method="euler", steps=args.sample_steps)),
        ("heun", SamplerConfig(method="heun", steps=args.sample_steps)),
        ("euler+cfg", SamplerConfig(method="euler", steps=args.sample_steps, cfg_scale=2.0)),
    ]:
        t = bench_sampling(cfg, sampler, args.samples, device)
        print(f"sample  {label:9s} {args.sample_steps} steps, {args.samples} latents: {args.samples / t.wall:8.1f} images/s "
              f"({t.cpu / args.samples * 1e3:6.1f} cpu-ms/image)")


if __name__ == "__main__":
    main()
