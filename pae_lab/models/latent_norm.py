"""Latent normalisation as a versioned artefact of the tokenizer run.

The same object (per-channel mean/std, fitted on the training latents or shipped with a
checkpoint) normalises latents for the generator and de-normalises its samples before decoding: a
mismatch here silently ruins gFID. `source` says where the numbers came from.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pae_lab.fsutil import read_json, write_json

FITTED = "fit: per-channel mean/std of the tokenizer's training latents"


@dataclass(frozen=True)
class LatentNorm:
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str = FITTED

    @classmethod
    def fit(cls, latents: torch.Tensor, eps: float = 1e-6) -> "LatentNorm":
        flat = latents.transpose(0, 1).reshape(latents.shape[1], -1).double()
        return cls(tuple(flat.mean(1).tolist()), tuple((flat.std(1) + eps).tolist()))

    @classmethod
    def fit_batches(cls, batches, eps: float = 1e-6) -> "LatentNorm":
        """The same statistics from latent batches [b, C, h, w] seen one at a time (float64 moments)."""
        count, s1, s2 = 0, 0.0, 0.0
        for z in batches:
            flat = z.transpose(0, 1).reshape(z.shape[1], -1).double()
            count, s1, s2 = count + flat.shape[1], s1 + flat.sum(1), s2 + flat.pow(2).sum(1)
        mean = s1 / count
        var = (s2 - count * mean.pow(2)).clamp_min(0) / max(count - 1, 1)  # unbiased, as torch.std
        return cls(tuple(mean.tolist()), tuple((var.sqrt() + eps).tolist()))

    @classmethod
    def from_scale(cls, channels: int, scaling_factor: float, shift_factor: float, source: str) -> "LatentNorm":
        """A diffusion model's `(z - shift) * scale` as per-channel statistics: mean = shift, std = 1 / scale."""
        return cls((float(shift_factor),) * channels, (1.0 / float(scaling_factor),) * channels, source)

    @classmethod
    def from_file(cls, path: Path, channels: int) -> "LatentNorm":
        """A shipped torch file {"mean", "std"} of C values each (any shape holding C, e.g. [1, C, 1, 1])."""
        stats = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(stats, dict) or not {"mean", "std"} <= stats.keys():
            found = sorted(stats) if isinstance(stats, dict) else type(stats).__name__
            raise ValueError(f"tokenizer.latent_stats: {path} needs keys 'mean' and 'std', found {found}")
        mean, std = (torch.as_tensor(stats[k]).double().flatten() for k in ("mean", "std"))
        if mean.numel() != channels or std.numel() != channels:
            raise ValueError(f"tokenizer.latent_stats: {path} holds {mean.numel()} means and {std.numel()} stds; "
                             f"latent_channels={channels}")
        return cls(tuple(mean.tolist()), tuple(std.tolist()), f"checkpoint: mean/std from {path}")

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1, 1, 1)
        return (torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(shape),
                torch.tensor(self.std, dtype=like.dtype, device=like.device).view(shape))

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(z)
        return (z - mean) / std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(z)
        return z * std + mean

    def save(self, path: Path) -> None:
        write_json(path, {"mean": list(self.mean), "std": list(self.std), "source": self.source})

    @classmethod
    def load(cls, path: Path) -> "LatentNorm":
        data = read_json(path)
        if data is None:
            raise FileNotFoundError(f"latent normalisation statistics missing: {path}")
        return cls(tuple(data["mean"]), tuple(data["std"]), data.get("source", FITTED))
