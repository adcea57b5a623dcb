"""The one training loop every stage uses: resume, seeding, logging, progress, checkpoints, NaN guard.

A stage supplies `step_fn(step) -> {metric: float}` doing forward, backward and the optimizer step;
the loop owns everything around it, so the tokenizer, the refined prior and the generator resume,
log and fail the same way.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn

from pae_lab.stages.distributed import SINGLE, Dist
from pae_lab.fsutil import save_torch
from pae_lab.plan.layout import CHECKPOINT, RunLayout
from pae_lab.plan.progress import ProgressWriter
from pae_lab.tracking.store import RunLogger


class NonFiniteLoss(RuntimeError):
    """Raised when a loss turns NaN/inf: the run is marked failed, the other runs go on."""


class StopRequested(RuntimeError):
    """Raised when the driver asked a run to stop (an Optuna pruner, a user): recorded, not a crash."""


class Stateful(Protocol):
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> Any: ...


def resolve_device(name: str = "auto") -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device: cuda was asked for but torch sees no CUDA device")
        return torch.device("cuda")
    return torch.device("cpu")


def autocast(device: torch.device):
    """bf16 autocast on CUDA; full precision on the CPU (bf16 matmuls are slow there)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def batched(fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, device: torch.device,
            batch: int = 256) -> torch.Tensor:
    """`fn` over `inputs` (a tensor or any sliceable array, e.g. a DiskArray) in batches on `device`, outputs on the CPU."""
    return torch.cat([fn(torch.as_tensor(inputs[i:i + batch]).to(device)).cpu() for i in range(0, len(inputs), batch)])


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


def seed_step(seed: int, step: int) -> None:
    """Seed every RNG from (seed, step): a resumed run draws the same batches and noise."""
    s = (seed * 1_000_003 + step) % (2**31)
    torch.manual_seed(s)
    np.random.seed(s)
    random.seed(s)


def grad_norm(module: nn.Module) -> float:
    norms = [p.grad.detach().norm() for p in module.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


class TrainLoop:
    def __init__(
        self,
        stage: str,
        stage_dir: Path,
        state: dict[str, Stateful],
        total_steps: int,
        *,
        seed: int,
        checkpoint_every: int,
        log_every: int,
        items_per_step: int,
        logger: RunLogger | None = None,
        progress: ProgressWriter | None = None,
        after_step: Callable[[int], None] | None = None,
        dist: Dist = SINGLE,
        checkpoint: str = CHECKPOINT,
    ):
        self.stage, self.dir, self.state, self.checkpoint = stage, Path(stage_dir), state, checkpoint
        self.total, self.seed = total_steps, seed
        self.checkpoint_every, self.log_every, self.items_per_step = checkpoint_every, log_every, items_per_step
        self.logger, self.progress, self.after_step = logger, progress, after_step
        self.dist = dist  # several processes: metrics are averaged over ranks, rank 0 alone writes
        self.resumed_from = 0
        self._last: dict[str, float] = {}

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / self.checkpoint  # a stage training several models names one per model

    def _save(self, step: int, last: dict[str, float] | None = None) -> None:
        if not self.dist.is_main:
            return
        save_torch(self.checkpoint_path, {
            "step": step,
            "last": last or {},
            "state": {k: v.state_dict() for k, v in self.state.items()},
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        })

    def _resume(self) -> int:
        if not self.checkpoint_path.exists():
            return 0
        ckpt = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        for key, obj in self.state.items():
            obj.load_state_dict(ckpt["state"][key])
        torch.set_rng_state(ckpt["rng"]["torch"])
        np.random.set_state(ckpt["rng"]["numpy"])
        random.setstate(ckpt["rng"]["python"])
        self.resumed_from = int(ckpt["step"])
        self._last = dict(ckpt.get("last", {}))
        return self.resumed_from

    def run(self, step_fn: Callable[[int], dict[str, float]]) -> dict[str, float]:
        start = self._resume()
        if self.logger and start:
            self.logger.metrics(self.stage, {"resumed_from_step": start}, start)
        window: dict[str, list[float]] = defaultdict(list)
        last: dict[str, float] = dict(self._last)  # a run killed after its final checkpoint keeps its numbers
        t_window = time.perf_counter()
        stop_file = RunLayout(self.dir.parent).stop
        for step in range(start, self.total):
            if self.dist.any(stop_file.exists()):
                why = stop_file.read_text().strip() if stop_file.exists() else "asked on another rank"
                raise StopRequested(f"{self.stage}: stopped at step {step}: {why}")
            seed_step(self.seed, step)
            metrics = self.dist.mean(step_fn(step))  # every rank sees the same loss, so a NaN stops them all
            loss = metrics.get("loss/total", 0.0)
            if not math.isfinite(loss):
                raise NonFiniteLoss(f"{self.stage}: loss/total is {loss} at step {step}; terms: "
                                    + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k.startswith("loss/")))
            for k, v in metrics.items():
                window[k].append(float(v))
            done = step + 1
            if done % self.log_every == 0 or done == self.total:
                elapsed = time.perf_counter() - t_window
                last = {k: float(np.mean(v)) for k, v in window.items()}
                last["throughput/items_per_s"] = len(window["loss/total"] or [0]) * self.items_per_step / max(elapsed, 1e-9)
                if self.logger:
                    self.logger.metrics(self.stage, last, done)
                window.clear()
                t_window = time.perf_counter()
            if self.progress:
                self.progress.update(self.stage, done, self.total, loss=round(loss, 5))
            if done % self.checkpoint_every == 0 or done == self.total:
                self._save(done, last)
            if self.after_step:
                self.after_step(done)
        return last
