"""Time `compute_panel` on a randomly initialised tokenizer: 256 images 32x32, 8x8x16 latents.

    python benchmarks/bench_metrics.py [--n 256] [--threads 2] [--distance effnet_lite0|l2]

Prints seconds per metric and in total. Uses pae_lab's Tokenizer and perceptual distances when
they import, else a tiny conv encoder/decoder and a pixel L2 distance.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from analysis.panel import PanelConfig, compute_panel


def tiny_tokenizer(channels: int = 16) -> tuple[nn.Module, nn.Module]:
    enc = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.SiLU(), nn.Conv2d(32, channels, 3, 2, 1))
    dec = nn.Sequential(nn.Upsample(scale_factor=4), nn.Conv2d(channels, 32, 3, 1, 1), nn.SiLU(), nn.Conv2d(32, 3, 3, 1, 1))
    return enc.eval(), dec.eval()


def build(distance: str) -> tuple:
    try:
        from pae_lab.losses.perceptual import build_perceptual
        from pae_lab.models.tokenizer import Tokenizer

        model = Tokenizer(latent_channels=16, channel_mult=[1, 2], downsample=4).eval()
        dist = build_perceptual(distance).eval()
        return model.encode, model.decode, dist, f"pae_lab Tokenizer + {distance}"
    except ImportError:
        enc, dec = tiny_tokenizer()
        return enc, dec, lambda a, b: (a - b).flatten(1).pow(2).mean(1), "tiny conv net + pixel L2"


def synthetic(n: int, size: int, classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class-coloured backgrounds with one random rectangle each; the rectangle is segment 1."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    palette = torch.rand(classes, 3, generator=g)
    images = palette[labels][:, :, None, None].expand(-1, -1, size, size).clone()
    segments = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        y0, x0 = torch.randint(0, size // 2, (2,), generator=g).tolist()
        h, w = torch.randint(size // 4, size // 2, (2,), generator=g).tolist()
        images[i, :, y0 : y0 + h, x0 : x0 + w] = torch.rand(3, 1, 1, generator=g)
        segments[i, y0 : y0 + h, x0 : x0 + w] = 1
    return (images + 0.05 * torch.randn(images.shape, generator=g)).clamp(0, 1), labels, segments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--distance", default="effnet_lite0")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    encode, decode, distance, what = build(args.distance)
    images, labels, segments = synthetic(args.n, args.size)
    train_images, train_labels, _ = synthetic(args.n, args.size, seed=1)
    with torch.no_grad():
        grid = tuple(encode(images[:1]).shape[1:])
    print(f"{what}; {args.n} images {args.size}x{args.size}, latent {grid}, {args.threads} threads")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    results = compute_panel(encode, decode, images, labels, segments, distance=distance, distance_name=args.distance,
                            config=PanelConfig(n_images=args.n), train_images=train_images,
                            train_labels=train_labels, timings=timings)
    total = time.perf_counter() - start
    for name, seconds in timings.items():
        value = f"{results[name].value:10.4f}" if name in results else " " * 10
        print(f"{name:>10s} {value} {seconds:8.2f} s")
    print(f"{'total':>10s} {'':10s} {total:8.2f} s")


if __name__ == "__main__":
    main()
