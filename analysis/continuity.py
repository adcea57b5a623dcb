"""LPC, local perceptual continuity: how far the decoded image moves when the latent is nudged."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

from analysis.panel_config import DEFAULT_RHOS
from analysis.result import MetricResult
from analysis.tensors import per_sample_norm, unit_directions

Distance = Callable[[Tensor, Tensor], Tensor]


def nn_angles(z: Tensor) -> Tensor:
    """Degrees from each latent (flattened) to its nearest other latent of the set [B] (B >= 2).

    Per-token rotation by angle a moves the flattened latent by exactly a as well (every token keeps
    its norm and turns by a toward an orthogonal direction), so this is the scale MCR's angles compare to.
    """
    flat = torch.nn.functional.normalize(z.detach().flatten(1).float(), dim=1)
    cos = flat @ flat.T
    cos.fill_diagonal_(-1.0)
    return torch.rad2deg(torch.arccos(cos.max(dim=1).values.clamp(-1.0, 1.0)))


def rho_key(rho: float) -> str:
    """Name of the per-scale extra: 0.1 -> "lpc_rho0.1", 1.0 -> "lpc_rho1"."""
    return f"lpc_rho{rho:g}"


def against(distance: Distance, reference: Tensor, repeats: int = 1) -> Callable[[Tensor], Tensor]:
    """a -> distance(a, reference repeated `repeats` times along the batch), for many `a` scored against one
    reference. A distance that is exactly compare(embed(a), embed(b)) (pae_lab's PerceptualDistance, when it
    `embeds_separately`) embeds the reference once here, not at every call: LPC's four scales halve their
    network passes, with the same values."""
    if getattr(distance, "embeds_separately", False):
        fixed = [torch.cat([f] * repeats) for f in distance.embed(reference)]
        return lambda a: distance.compare(distance.embed(a), fixed)
    repeated = torch.cat([reference] * repeats)
    return lambda a: distance(a, repeated)


@torch.no_grad()
def lpc(
    decode: Callable[[Tensor], Tensor],
    latents: Tensor,
    distance: Distance,
    rhos: tuple[float, ...] = DEFAULT_RHOS,
    n_directions: int = 1,
    batch_size: int = 64,
    seed: int = 0,
    *,
    distance_name: str | None = None,
) -> MetricResult:
    """Local perceptual continuity (lower is better).

    For each latent z, random unit direction u (same shape as z, one per sample and direction)
    and scale rho: eps = rho * ||z|| (L2 over the whole latent), score
    [d(D(z + eps u), D(z)) + d(D(z - eps u), D(z))] / 2. LPC_rho is the mean over samples and
    directions; LPC = sum_rho w_rho LPC_rho with w_rho proportional to 1 / rho, summing to 1.
    Directions are drawn before batching, so the value does not depend on `batch_size`.
    """
    if not rhos or any(r <= 0 for r in rhos):
        raise ValueError(f"rhos must be positive scales, got {rhos}")
    dirs = unit_directions(latents, n_directions, seed)  # [n_dir, N, ...]
    per_rho = np.zeros((len(rhos), n_directions, len(latents)))
    for start in range(0, len(latents), batch_size):
        z = latents[start : start + batch_size]
        from_base = against(distance, decode(z), repeats=2)  # z + step and z - step, in one batch
        norm = per_sample_norm(z)[(...,) + (None,) * (z.dim() - 1)]
        for di in range(n_directions):
            u = dirs[di, start : start + batch_size]
            for ri, rho in enumerate(rhos):
                step = rho * norm * u
                both = decode(torch.cat([z + step, z - step]))
                d = from_base(both).reshape(2, -1).mean(0)
                per_rho[ri, di, start : start + len(z)] = d.double().cpu().numpy()
    weights = 1.0 / np.asarray(rhos, dtype=np.float64)
    weights /= weights.sum()
    per_sample = np.tensordot(weights, per_rho.mean(1), axes=1)  # [N]
    protocol = {
        "metric": "lpc", "n_samples": len(latents), "rhos": list(rhos), "weights": weights.tolist(),
        "n_directions": n_directions, "eps": "rho * ||z||_2 per sample", "symmetric": True,
        "distance": distance_name or getattr(distance, "__name__", type(distance).__name__), "seed": seed,
    }
    extra = {rho_key(r): float(per_rho[i].mean()) for i, r in enumerate(rhos)}
    return MetricResult(float(per_sample.mean()), protocol, {"std": float(per_sample.std()), **extra})
