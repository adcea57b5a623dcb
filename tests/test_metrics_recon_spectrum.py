"""PSNR, SSIM, eRank (closed forms, an independent scipy reference) and MetricResult."""
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from analysis.reconstruction import psnr, ssim, ssim_per_image
from analysis.result import MetricResult
from analysis.spectrum import erank


def test_psnr_identical_is_inf_and_known_offset():
    x = torch.rand(3, 3, 8, 8)
    assert psnr(x, x).value == math.inf
    y = torch.zeros(2, 3, 4, 4)
    res = psnr(y + 0.1, y)  # mse 0.01 -> 20 dB
    assert res.value == pytest.approx(20.0) and res.protocol["n_images"] == 2


def test_ssim_identical_is_one():
    x = torch.rand(2, 3, 16, 16)
    assert ssim(x, x).value == pytest.approx(1.0)


def test_ssim_of_constant_images_has_the_closed_form():
    a, b = 0.3, 0.6
    c1 = 0.01**2
    res = ssim(torch.full((1, 3, 12, 12), a), torch.full((1, 3, 12, 12), b))
    assert res.value == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1))


def _reference_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """skimage-style Gaussian SSIM via scipy.ndimage (sigma 1.5, 11 taps, valid region)."""
    f = lambda t: gaussian_filter(t, 1.5, truncate=3.5, mode="constant")  # noqa: E731
    mx, my = f(x), f(y)
    vx, vy, cov = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s[5:-5, 5:-5].mean())


def test_ssim_matches_an_independent_implementation():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 24, 20, generator=g, dtype=torch.float64)
    y = (x + 0.2 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    ours = ssim_per_image(x, y).item()
    assert ours == pytest.approx(_reference_ssim(x[0, 0].numpy(), y[0, 0].numpy()), rel=1e-9)
    assert 0 < ours < 1
    assert ssim_per_image(y, x).item() == pytest.approx(ours)


def test_ssim_shrinks_the_window_for_tiny_images():
    x = torch.rand(1, 3, 6, 6)
    assert ssim_per_image(x, x).item() == pytest.approx(1.0)


def test_reconstruction_metrics_reject_shape_mismatch():
    with pytest.raises(ValueError, match="one shape"):
        psnr(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 5))


def test_erank_known_answers():
    c = 8
    full = torch.eye(c).repeat(4, 1)  # 32 pooled vectors using all channels equally
    assert erank(full).value == pytest.approx(1.0)
    rank_one = torch.ones(32, c) * torch.rand(32, 1)
    assert erank(rank_one).value == pytest.approx(1 / c)
    two = torch.zeros(10, c)
    two[:5, 0], two[5:, 1] = 1.0, 1.0
    res = erank(two[:, :, None, None].expand(-1, -1, 3, 3))
    assert res.value == pytest.approx(2 / c) and res.extra["effective_channels"] == pytest.approx(2.0)


def test_metric_result_flattens_for_tables():
    res = MetricResult(0.2, {"metric": "lpc"}, {"std": 0.01, "lpc_rho0.1": 0.05})
    assert res.flat("lpc") == {"lpc": 0.2, "lpc_std": 0.01, "lpc_rho0.1": 0.05}
    assert res.to_dict()["protocol"] == {"metric": "lpc"}
