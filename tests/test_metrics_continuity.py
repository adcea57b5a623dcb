"""LPC and the Lipschitz estimators: known answers on constant and linear maps."""
import numpy as np
import pytest
import torch

from analysis.continuity import lpc
from analysis.lipschitz import lipschitz, lipschitz_jvp, lipschitz_power

torch.manual_seed(0)


def _l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).flatten(1).norm(dim=1)


def test_lpc_is_zero_for_a_constant_decoder():
    decode = lambda z: torch.full((len(z), 3, 8, 8), 0.5)  # noqa: E731
    res = lpc(decode, torch.randn(10, 4, 2, 2), _l2, distance_name="l2")
    assert res.value == 0.0
    assert all(res.extra[k] == 0.0 for k in ("lpc_rho0.1", "lpc_rho0.5", "lpc_rho1", "lpc_rho2"))
    assert res.protocol["distance"] == "l2" and res.protocol["n_samples"] == 10


def test_lpc_of_the_identity_with_l2_distance_is_the_weighted_scale():
    # D = identity, d = L2: each term is ||eps u|| = rho * ||z||, so LPC = sum_rho w_rho rho ||z||
    z = torch.randn(6, 3, 2, 2, dtype=torch.float64)
    rhos = (0.1, 0.5, 1.0, 2.0)
    res = lpc(lambda t: t, z, _l2, rhos=rhos, n_directions=2, batch_size=4)
    w = 1 / np.array(rhos) / (1 / np.array(rhos)).sum()
    norm = z.flatten(1).norm(dim=1).mean().item()
    assert res.value == pytest.approx(float((w * np.array(rhos)).sum() * norm))
    assert res.extra["lpc_rho0.5"] == pytest.approx(0.5 * norm)
    assert res.protocol["weights"] == pytest.approx(list(w))


def test_lpc_does_not_depend_on_batch_size():
    dec = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 12), torch.nn.Tanh())
    z = torch.randn(9, 4, 2, 2)
    a = lpc(dec, z, _l2, batch_size=2, seed=3)
    b = lpc(dec, z, _l2, batch_size=64, seed=3)
    assert a.value == pytest.approx(b.value, rel=1e-5)


def test_lpc_embeds_each_base_once_and_scores_as_the_plain_distance_does():
    from pae_lab.losses.perceptual import build_perceptual

    distance = build_perceptual("effnet_lite0")
    embedded = []
    embed = distance.embed
    distance.embed = lambda x: embedded.append(len(x)) or embed(x)  # count the images each pass sees
    dec = torch.nn.Sequential(torch.nn.Conv2d(4, 3, 1), torch.nn.Upsample(scale_factor=8), torch.nn.Sigmoid())
    z = torch.randn(6, 4, 4, 4)
    once = lpc(dec, z, distance, batch_size=4, seed=1)
    passes = list(embedded)
    plain = lpc(dec, z, lambda a, b: distance(a, b), batch_size=4, seed=1)
    assert once.value == plain.value and once.extra == plain.extra  # the same numbers, bit for bit
    # per batch: the base once, then each scale's +/- pair; the plain call embeds the base pair at every scale
    assert sum(passes) == 6 + 4 * 2 * 6 and sum(embedded) - sum(passes) == 2 * (4 * 2 * 6)


def _linear(out_dim: int = 5, in_dim: int = 7):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(out_dim, in_dim, generator=g, dtype=torch.float64)
    return w, (lambda x: x @ w.T), torch.linalg.matrix_norm(w, ord=2).item()


def test_power_iteration_matches_the_spectral_norm_of_a_linear_map():
    _, fn, spec = _linear()
    res = lipschitz_power(fn, torch.randn(8, 7, dtype=torch.float64), n_iter=50)
    assert res.value == pytest.approx(spec, rel=0.02)
    assert res.extra["max"] <= spec * (1 + 1e-6)


def test_finite_difference_agrees_with_jvp_and_stays_below_the_spectral_norm():
    w, fn, spec = _linear()
    x = torch.randn(16, 7, dtype=torch.float64)
    fd = lipschitz(fn, x, eps=1e-3, n_directions=32, seed=1)
    jvp = lipschitz_jvp(fn, x, n_directions=32, seed=1)
    assert fd.value == pytest.approx(jvp.value, rel=1e-6)
    assert fd.extra["max"] <= spec * (1 + 1e-6)
    # for a linear map the mean of ||W u|| over random unit u is about sqrt(trace(W^T W) / d)
    assert fd.value == pytest.approx(torch.linalg.matrix_norm(w).item() / 7**0.5, rel=0.15)


def test_finite_difference_and_jvp_agree_on_a_smooth_conv_net():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(4, 2, 3, padding=1)).double()
    x = torch.rand(4, 3, 6, 6, dtype=torch.float64)
    fd = lipschitz(net, x, eps=1e-5, n_directions=3)
    jvp = lipschitz_jvp(net, x, n_directions=3)
    power = lipschitz_power(net, x, n_iter=30)
    assert fd.value == pytest.approx(jvp.value, rel=1e-3)
    assert jvp.extra["max"] <= power.extra["max"] * (1 + 1e-3)
