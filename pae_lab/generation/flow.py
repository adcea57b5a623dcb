"""Rectified-flow (linear-path) flow matching, the training objective of the latent generator.

Convention (SiT / LightningDiT): t = 0 is pure noise, t = 1 is data,
    x_t = (1 - t) * x0 + t * x1,   x0 ~ N(0, I),  x1 = data latents,
and the model regresses the constant velocity of that path, v = x1 - x0. Sampling integrates
dx/dt = v(x, t) from t = 0 to t = 1 (pae_lab.generation.samplers).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pae_lab.catalog import TIME_SAMPLING  # name -> fn(batch, generator, device, **params) -> t [batch] in [0, 1]


def _uniform(n: int, generator: torch.Generator | None, device: torch.device, **_: float) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device)


def _logit_normal(n: int, generator: torch.Generator | None, device: torch.device,
                  logit_mean: float = 0.0, logit_std: float = 1.0, **_: float) -> torch.Tensor:
    """sigmoid(N(m, s)): more training signal at mid t, where the velocity is hardest (SD3)."""
    return torch.sigmoid(logit_mean + logit_std * torch.randn(n, generator=generator, device=device))


TIME_SAMPLING.register("uniform", _uniform)
TIME_SAMPLING.register("logit_normal", _logit_normal)


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The point at time t [B] on the straight path from noise x0 to data x1."""
    t = t.view(-1, *([1] * (x1.dim() - 1)))
    return (1 - t) * x0 + t * x1


def draw_path(x1_shape: tuple[int, ...], device: torch.device | str, dtype: torch.dtype = torch.float32,
              generator: torch.Generator | None = None, time_sampling: str = "uniform",
              **time_params: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(t, x0) for a batch of data of `x1_shape`: drawn for the global batch, then sliced per rank."""
    t = TIME_SAMPLING.get(time_sampling)(x1_shape[0], generator, device, **time_params).to(dtype)
    return t, torch.randn(x1_shape, generator=generator, device=device, dtype=dtype)


def flow_matching_loss(model: nn.Module, x1: torch.Tensor, y: torch.Tensor,
                       generator: torch.Generator | None = None, time_sampling: str = "uniform",
                       path: tuple[torch.Tensor, torch.Tensor] | None = None, **time_params: float) -> torch.Tensor:
    """Mean squared error between model(x_t, t, y) and the path velocity x1 - x0.

    `path`: (t, x0) drawn beforehand (`draw_path`); else drawn here. `time_params` go to the time
    sampler (e.g. logit_mean, logit_std for "logit_normal").
    """
    t, x0 = path if path is not None else draw_path(tuple(x1.shape), x1.device, x1.dtype, generator,
                                                    time_sampling, **time_params)
    return F.mse_loss(model(interpolate(x0, x1, t), t, y), x1 - x0)


@torch.no_grad()
def validation_loss(model: nn.Module, x1: torch.Tensor, y: torch.Tensor, t_grid: list[float], *, seed: int = 0,
                    device: torch.device | str = "cpu", batch_size: int = 256) -> float:
    """Held-out flow-matching loss (LightningDiT-style): the mean over a fixed t-grid of the velocity
    MSE on held-out latents, with noise drawn once from `seed`, so checkpoints and runs are compared
    on identical (x0, t) pairs and the value moves only with the model."""
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(x1.shape, generator=gen)
    total, count = 0.0, 0
    for t_value in t_grid:
        for i in range(0, len(x1), batch_size):
            a, b, yy = x0[i:i + batch_size].to(device), x1[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            t = torch.full((len(b),), float(t_value), device=device)
            err = F.mse_loss(model(interpolate(a, b, t), t, yy).float(), (b - a).float(), reduction="sum")
            total, count = total + float(err), count + b.numel()
    return total / count
