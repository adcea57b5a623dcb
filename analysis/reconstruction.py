"""Reconstruction fidelity on [0, 1] images: PSNR and Gaussian-window SSIM."""
from __future__ import annotations

import torch
from torch import Tensor

from analysis.result import MetricResult, summarize


def _check(x: Tensor, y: Tensor) -> None:
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"expected two [B, C, H, W] image batches of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")


def psnr_per_image(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """[B] PSNR in dB; identical images give inf."""
    _check(x, y)
    mse = ((x.double() - y.double()) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse)


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> MetricResult:
    """Mean per-image PSNR (dB) of two [0, 1] image batches; inf when any pair is identical."""
    values = psnr_per_image(x, y, data_range).cpu().numpy()
    return summarize(values, {"metric": "psnr", "n_images": len(values), "data_range": data_range, "reduction": "mean of per-image"})


def _filter_matrix(n: int, size: int, sigma: float) -> Tensor:
    """[n - size + 1, n] matrix whose rows are the Gaussian taps shifted along: a 'valid' 1-D filter."""
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - (size - 1) / 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    m = torch.zeros(n - size + 1, n, dtype=torch.float64)
    for i in range(size):
        m.diagonal(i)[:] = g[i]
    return m


def _blur(t: Tensor, size: int, sigma: float) -> Tensor:
    """Separable Gaussian filter of [B, C, H, W], 'valid' region, as two float64 matmuls.

    Matmuls instead of a grouped conv: PyTorch's float64 depthwise conv is ~100x slower on CPU.
    """
    rows = _filter_matrix(t.shape[-2], size, sigma).to(t.device)
    cols = _filter_matrix(t.shape[-1], size, sigma).to(t.device)
    return rows @ t @ cols.T


def ssim_per_image(x: Tensor, y: Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> Tensor:
    """[B] SSIM (Wang et al. 2004): Gaussian window, K1 = 0.01, K2 = 0.03, per channel, valid region, mean.

    The window shrinks to the largest odd size that fits images smaller than it.
    """
    _check(x, y)
    size = min(window, x.shape[-1], x.shape[-2])
    size -= 1 - size % 2
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    x, y = x.double(), y.double()
    stats = _blur(torch.cat([x, y, x * x, y * y, x * y], 1), size, sigma)
    mx, my, xx, yy, xy = stats.chunk(5, dim=1)
    vx, vy, cov = xx - mx**2, yy - my**2, xy - mx * my
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def ssim(x: Tensor, y: Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> MetricResult:
    """Mean per-image SSIM of two [0, 1] image batches; 1 for identical images."""
    values = ssim_per_image(x, y, window, sigma, data_range).cpu().numpy()
    protocol = {"metric": "ssim", "n_images": len(values), "window": window, "sigma": sigma,
                "k1": 0.01, "k2": 0.03, "data_range": data_range, "region": "valid"}
    return summarize(values, protocol)
