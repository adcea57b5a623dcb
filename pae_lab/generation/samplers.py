"""ODE samplers for the flow-matching generator, with classifier-free guidance in a time interval.

Solvers live in the `SAMPLERS` registry as one-step functions
`step(velocity, x, t, t_next) -> x_next`, where `velocity(x, t)` already includes guidance; add
a solver with `SAMPLERS.register("name", fn)`. Time runs from t = 0 (noise) to t = 1 (data), the
convention of pae_lab.generation.flow. Every knob that changes gFID is an argument here and a
field of `SamplerConfig`, so it can be stored beside the metric.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from pae_lab.catalog import SAMPLERS
from pae_lab.config.schema import SamplerConfig

VelocityFn = Callable[[torch.Tensor, float], torch.Tensor]
StepFn = Callable[[VelocityFn, torch.Tensor, float, float], torch.Tensor]


@SAMPLERS.decorator("euler")
def euler_step(velocity: VelocityFn, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """First order: one model evaluation per step."""
    return x + (t_next - t) * velocity(x, t)


@SAMPLERS.decorator("heun")
def heun_step(velocity: VelocityFn, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """Second order (explicit trapezoid): two model evaluations per step."""
    dt = t_next - t
    v0 = velocity(x, t)
    v1 = velocity(x + dt * v0, t_next)
    return x + dt * 0.5 * (v0 + v1)


def time_grid(steps: int, time_shift: float = 1.0, device: torch.device | str = "cpu") -> torch.Tensor:
    """steps + 1 times from 0 to 1. With noise level s = 1 - t, shift a maps s -> a s / (1 + (a - 1) s)
    (SD3's shift): a > 1 spends more steps near the noise end, a = 1 is the uniform grid."""
    if steps < 1:
        raise ValueError(f"sampler steps must be >= 1, got {steps}")
    if time_shift <= 0:
        raise ValueError(f"time_shift must be > 0, got {time_shift}")
    s = 1.0 - torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64, device=device)
    return 1.0 - time_shift * s / (1.0 + (time_shift - 1.0) * s)


@torch.no_grad()
def guided_velocity(model: nn.Module, x: torch.Tensor, t: float, labels: torch.Tensor, *,
                    cfg_scale: float = 1.0, cfg_interval: tuple[float, float] = (0.0, 1.0),
                    null_class: int | None = None) -> torch.Tensor:
    """v_u + s (v_c - v_u) when t lies in cfg_interval and s != 1, else the conditional v_c.

    The conditional and unconditional halves go through the model as one batch.
    """
    tt = torch.full((x.shape[0],), float(t), device=x.device, dtype=x.dtype)
    lo, hi = cfg_interval
    if cfg_scale == 1.0 or not lo <= t <= hi:
        return model(x, tt, labels)
    null = _null_class(model, null_class)
    v = model(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([labels, torch.full_like(labels, null)]))
    v_cond, v_uncond = v.chunk(2)
    return v_uncond + cfg_scale * (v_cond - v_uncond)


@torch.no_grad()
def sample(model: nn.Module, shape: tuple[int, ...] | torch.Size, labels: torch.Tensor, *,
           method: str = "euler", steps: int = 50, cfg_scale: float = 1.0,
           cfg_interval: tuple[float, float] = (0.0, 1.0), null_class: int | None = None,
           generator: torch.Generator | None = None, time_shift: float = 1.0,
           noise: torch.Tensor | None = None) -> torch.Tensor:
    """Integrate the learned flow from Gaussian noise (t = 0) to latents (t = 1).

    shape is [B, C, h, w]; labels [B] long. `null_class` defaults to `model.null_class`. Pass
    `noise` to start from given x0 (e.g. to compare solvers on one set of starting points). The
    model runs in eval mode (no label dropout) and is restored to its previous mode afterwards.
    """
    step = SAMPLERS.get(method)
    device = labels.device
    if noise is None:
        noise = torch.randn(tuple(shape), generator=generator, device=device)
    elif tuple(noise.shape) != tuple(shape):
        raise ValueError(f"noise has shape {tuple(noise.shape)} but shape={tuple(shape)} was asked for")
    if labels.shape != (noise.shape[0],):
        raise ValueError(f"labels must have shape [{noise.shape[0]}], got {tuple(labels.shape)}")

    def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
        return guided_velocity(model, x, t, labels, cfg_scale=cfg_scale, cfg_interval=cfg_interval,
                               null_class=null_class)

    was_training = model.training
    model.eval()
    try:
        x = noise
        times = time_grid(steps, time_shift).tolist()
        for t, t_next in zip(times[:-1], times[1:]):
            x = step(velocity, x, t, t_next)
    finally:
        model.train(was_training)
    return x


def generate_latents(model: nn.Module, n: int, latent_shape: tuple[int, int, int], config: SamplerConfig,
                     *, num_classes: int | None = None, device: torch.device | str = "cpu"
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """n latents [n, C, h, w] (on CPU) and their class-balanced labels, sampled in batches.

    Noise and labels come from `config.seed` and are drawn for the whole set up front, so the
    result does not depend on `config.batch_size` or the device's random stream.
    """
    num_classes = int(num_classes if num_classes is not None else model.num_classes)
    labels = balanced_labels(n, num_classes, config.seed)
    noise = torch.randn((n, *latent_shape), generator=torch.Generator().manual_seed(config.seed))
    out = []
    for start in range(0, n, config.batch_size):
        sl = slice(start, start + config.batch_size)
        x0, y = noise[sl].to(device), labels[sl].to(device)
        out.append(sample(model, x0.shape, y, noise=x0, **config.sample_kwargs()).cpu())
    return torch.cat(out), labels


def balanced_labels(n: int, num_classes: int, seed: int = 0) -> torch.Tensor:
    """n labels with every class count within one of n / num_classes, in a seeded random order."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return torch.arange(n)[order] % num_classes


def _null_class(model: nn.Module, null_class: int | None) -> int:
    if null_class is not None:
        return null_class
    if hasattr(model, "null_class"):
        return int(model.null_class)
    raise ValueError("classifier-free guidance needs the null label: pass null_class= or give the model a "
                     "`null_class` attribute (LatentDiT has one)")


