"""Test plugin: a tiny randomly initialised autoencoder standing in for a user's own pretrained tokenizer."""
import torch
from torch import nn


class TinyAE(nn.Module):
    """Patchify conv encoder and transposed-conv decoder with the pae-lab contract (images in [0, 1])."""

    def __init__(self, channels: int = 6, factor: int = 4):
        super().__init__()
        self.enc = nn.Conv2d(3, channels, factor, stride=factor)
        self.dec = nn.ConvTranspose2d(channels, 3, factor, stride=factor)

    @torch.jit.export
    def encode(self, x01: torch.Tensor) -> torch.Tensor:
        return self.enc(x01 * 2.0 - 1.0)

    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z) * 0.5 + 0.5

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x01))


def make(seed: int = 0, channels: int = 6) -> TinyAE:
    """A `python`-adapter factory: builds the model itself (seeded), nothing to load."""
    torch.manual_seed(seed)
    return TinyAE(channels)
