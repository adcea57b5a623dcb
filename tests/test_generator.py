"""Latent generator: DiT shapes and init, EMA math, flow-matching loss, ODE samplers and CFG.

Solver accuracy is checked twice: against the closed-form flow of a Gaussian (a known answer)
and on a LatentDiT trained for a few hundred steps on a 4-mode 2-D Gaussian mixture.
"""
from __future__ import annotations

import math

import pydantic
import pytest
import torch
from torch import nn

from pae_lab.generation import (SAMPLERS, SamplerConfig, balanced_labels, flow_matching_loss, generate_latents,
                                guided_velocity, interpolate, sample, time_grid)
from pae_lab.models.ema import EMA
from pae_lab.models.generator import LatentDiT, build_generator, sincos_2d
from pae_lab.config.schema import GeneratorConfig

MODES = torch.tensor([[1.5, 1.5], [-1.5, 1.5], [-1.5, -1.5], [1.5, -1.5]])
MODE_STD = 0.15


# ---------------------------------------------------------------- LatentDiT

@pytest.mark.parametrize("patch", [1, 2])
def test_latent_dit_shapes_and_zero_init(patch):
    model = LatentDiT(16, 8, patch=patch, width=32, depth=2, heads=2, num_classes=10)
    x = torch.randn(3, 16, 8, 8)
    out = model(x, torch.rand(3), torch.tensor([0, 5, 9]))
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(out))  # adaLN-Zero: every block identity, output layer zero
    assert model.null_class == 10 and model.y_embed.table.num_embeddings == 11


def test_latent_dit_learns_away_from_zero_init():
    torch.manual_seed(0)
    model = LatentDiT(4, 4, width=16, depth=1, heads=2, num_classes=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = flow_matching_loss(model, torch.randn(8, 4, 4, 4), torch.randint(0, 3, (8,)))
    loss.backward()
    assert model.final.linear.weight.grad.abs().sum() > 0
    opt.step()
    assert model(torch.randn(2, 4, 4, 4), torch.rand(2), torch.tensor([0, 1])).abs().sum() > 0


def test_unpatchify_matches_dit_reference_layout():
    model = LatentDiT(3, 4, patch=2, width=16, depth=1, heads=2)
    tokens = torch.randn(2, 4, 2 * 2 * 3)
    n, p, c = 2, 2, 3
    ref = torch.einsum("nhwpqc->nchpwq", tokens.reshape(2, n, n, p, p, c)).reshape(2, c, n * p, n * p)
    assert torch.equal(model.unpatchify(tokens), ref)


def test_sincos_positions_are_distinct_and_bounded():
    pos = sincos_2d(32, 4)
    assert pos.shape == (16, 32) and pos.abs().max() <= 1.0
    assert torch.cdist(pos, pos).add(torch.eye(16)).min() > 0.1  # no two positions share an embedding


def _randomised_dit(class_dropout: float) -> LatentDiT:
    torch.manual_seed(1)
    model = LatentDiT(2, 2, width=16, depth=1, heads=2, num_classes=3, class_dropout=class_dropout)
    for p in model.parameters():  # leave zero-init so that the output depends on the label
        nn.init.normal_(p, std=0.3)
    return model


def test_label_dropout_replaces_labels_by_the_null_class():
    x, t, y = torch.randn(4, 2, 2, 2), torch.rand(4), torch.tensor([0, 1, 2, 0])
    model = _randomised_dit(class_dropout=1.0)
    dropped = model.train()(x, t, y)
    model.eval()
    assert torch.allclose(dropped, model(x, t, torch.full_like(y, model.null_class)))
    assert not torch.allclose(dropped, model(x, t, y))  # eval mode never drops


def test_no_label_dropout_when_probability_is_zero():
    x, t, y = torch.randn(4, 2, 2, 2), torch.rand(4), torch.tensor([0, 1, 2, 0])
    model = _randomised_dit(class_dropout=0.0)
    assert torch.allclose(model.train()(x, t, y), model.eval()(x, t, y))


def test_latent_dit_rejects_bad_geometry():
    with pytest.raises(ValueError, match="not divisible by patch"):
        LatentDiT(4, 5, patch=2)
    with pytest.raises(ValueError, match=r"expects latents \[B, 4, 4, 4\]"):
        LatentDiT(4, 4, width=16, heads=2)(torch.randn(1, 3, 4, 4), torch.rand(1), torch.zeros(1, dtype=torch.long))


# ---------------------------------------------------------------- GeneratorConfig

def test_generator_config_documents_every_field_and_forbids_extras():
    for name, field in GeneratorConfig.model_fields.items():
        assert field.description, f"GeneratorConfig.{name} has no description"
    with pytest.raises(pydantic.ValidationError):
        GeneratorConfig(widht=64)
    with pytest.raises(pydantic.ValidationError, match="divisible"):
        GeneratorConfig(width=130, heads=4)
    with pytest.raises(pydantic.ValidationError, match="outside"):
        GeneratorConfig(steps=100, eval_at=[50, 200])


def test_generator_config_schedule_and_build():
    cfg = GeneratorConfig(steps=300, eval_at=[200, 100, 100], width=32, depth=2, heads=2, patch=2)
    assert cfg.eval_schedule() == [100, 200, 300]
    model = build_generator(cfg, in_channels=16, grid=8, num_classes=7)
    assert model.null_class == 7 and len(model.blocks) == 2 and model.patch == 2
    assert model(torch.randn(2, 16, 8, 8), torch.rand(2), torch.tensor([0, 6])).shape == (2, 16, 8, 8)


# ---------------------------------------------------------------- EMA

def test_ema_follows_the_closed_form_average():
    live = nn.Linear(3, 2)
    w0 = live.weight.detach().clone()
    ema = EMA(live, decay=0.9, warmup=False)
    with torch.no_grad():
        live.weight.fill_(1.0)
    ema.update(live)
    assert torch.allclose(ema.module.weight, 0.9 * w0 + 0.1)
    ema.update(live)
    assert torch.allclose(ema.module.weight, 0.81 * w0 + 0.19)
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_warmup_decay_and_integer_buffers():
    live = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = EMA(live, decay=0.999)
    assert ema.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    live.train()(torch.randn(8, 2))  # bumps num_batches_tracked
    ema.update(live)
    assert ema.current_decay() == pytest.approx(2 / 11)
    assert int(ema.module[1].num_batches_tracked) == 1
    assert EMA(live, 0.999).num_updates == 0 and ema.num_updates == 1


def test_ema_state_round_trip_and_copy_to():
    live = nn.Linear(2, 2)
    ema = EMA(live, decay=0.5, warmup=False)
    with torch.no_grad():
        live.weight.add_(1.0)
    ema.update(live)
    other = EMA(nn.Linear(2, 2), decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.5 and other.num_updates == 1 and not other.warmup
    assert torch.equal(other.module.weight, ema.module.weight)
    target = nn.Linear(2, 2)
    ema.copy_to(target)
    assert torch.equal(target.weight, ema.module.weight)
    with pytest.raises(ValueError, match="decay"):
        EMA(live, decay=1.5)


# ---------------------------------------------------------------- flow matching

class Recorder(nn.Module):
    """A velocity 'model' that returns a fixed affine function of x and remembers its inputs."""

    def forward(self, x, t, y):
        self.seen = (x.clone(), t.clone())
        return 0.5 * x


@pytest.mark.parametrize("time_sampling", ["uniform", "logit_normal"])
def test_flow_matching_loss_is_the_velocity_regression(time_sampling):
    x1 = torch.randn(64, 2, 3, 3)
    model = Recorder()
    loss = flow_matching_loss(model, x1, torch.zeros(64, dtype=torch.long),
                              generator=torch.Generator().manual_seed(0), time_sampling=time_sampling)
    xt, t = model.seen
    assert t.min() >= 0 and t.max() <= 1 and t.std() > 0.1
    x0 = (xt - t.view(-1, 1, 1, 1) * x1) / (1 - t.view(-1, 1, 1, 1))  # invert the path
    assert x0.std().item() == pytest.approx(1.0, abs=0.1)  # the start point is standard noise
    assert torch.allclose(interpolate(x0, x1, t), xt, atol=1e-5)
    assert loss.item() == pytest.approx(((0.5 * xt - (x1 - x0)) ** 2).mean().item(), rel=1e-4)


def test_logit_normal_concentrates_on_mid_times():
    model = Recorder()
    flow_matching_loss(model, torch.randn(4000, 1, 1, 1), torch.zeros(4000, dtype=torch.long),
                       generator=torch.Generator().manual_seed(0), time_sampling="logit_normal")
    t = model.seen[1]
    assert t.median().item() == pytest.approx(0.5, abs=0.03)
    assert ((t > 0.25) & (t < 0.75)).float().mean() > 0.6  # uniform would give 0.5


def test_unknown_time_sampling_names_the_known_ones():
    with pytest.raises(KeyError, match="logit_normal, uniform"):
        flow_matching_loss(Recorder(), torch.randn(2, 1, 1, 1), torch.zeros(2, dtype=torch.long), time_sampling="cosine")


# ---------------------------------------------------------------- samplers, known answers

class GaussianFlow(nn.Module):
    """The exact velocity of the linear path from N(0, I) to N(mu, s^2 I):
    v(x, t) = mu + (t s^2 - (1 - t)) / V(t) * (x - t mu), V(t) = (1 - t)^2 + t^2 s^2.
    Its flow maps x0 to mu + s * x0 at t = 1."""

    null_class = 0

    def __init__(self, mu: float = 2.0, s: float = 0.5):
        super().__init__()
        self.mu, self.s = mu, s

    def forward(self, x, t, y):
        t = t.view(-1, *([1] * (x.dim() - 1)))
        var = (1 - t) ** 2 + t ** 2 * self.s ** 2
        return self.mu + (t * self.s ** 2 - (1 - t)) / var * (x - t * self.mu)


def test_solvers_converge_to_the_closed_form_flow():
    model, x0 = GaussianFlow(), torch.randn(256, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    exact = 2.0 + 0.5 * x0
    labels = torch.zeros(256, dtype=torch.long)
    err = {(m, k): (sample(model, x0.shape, labels, method=m, steps=k, noise=x0) - exact).abs().max().item()
           for m in ("euler", "heun") for k in (4, 8, 16, 32, 64)}
    assert err["heun", 64] < 1e-3
    assert err["euler", 64] < err["euler", 16] < err["euler", 4]
    for k in (4, 8, 16):  # equal model evaluations: Heun(k) vs Euler(2k)
        assert err["heun", k] <= err["euler", 2 * k]
    assert err["heun", 16] < err["heun", 8] / 2.5  # second order: halving h cuts error ~4x


def test_euler_and_heun_single_step_values():
    class Identity(nn.Module):  # v(x, t) = x: exact solution e * x0
        def forward(self, x, t, y):
            return x

    x0, y = torch.ones(1, 1, 1, 1), torch.zeros(1, dtype=torch.long)
    assert sample(Identity(), x0.shape, y, method="euler", steps=1, noise=x0).item() == pytest.approx(2.0)
    assert sample(Identity(), x0.shape, y, method="heun", steps=1, noise=x0).item() == pytest.approx(2.5)
    assert sample(Identity(), x0.shape, y, method="euler", steps=100, noise=x0).item() == pytest.approx(
        1.01 ** 100)
    h = 1 / 20  # Heun's growth factor per step on v = x is 1 + h + h^2 / 2
    assert sample(Identity(), x0.shape, y, method="heun", steps=20, noise=x0).item() == pytest.approx(
        (1 + h + h * h / 2) ** 20)
    assert abs((1 + h + h * h / 2) ** 20 - math.e) < abs(1.05 ** 20 - math.e) / 10


def test_time_grid_and_shift():
    assert torch.allclose(time_grid(4), torch.tensor([0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    shifted = time_grid(4, time_shift=3.0)
    assert shifted[0] == 0 and shifted[-1] == 1 and torch.all(shifted[1:-1] < time_grid(4)[1:-1])
    with pytest.raises(ValueError):
        time_grid(0)


def test_guidance_formula_interval_and_batched_null_labels():
    model = _randomised_dit(class_dropout=0.0).eval()
    x, y = torch.randn(3, 2, 2, 2), torch.tensor([0, 1, 2])
    t = torch.full((3,), 0.4)
    cond, uncond = model(x, t, y), model(x, t, torch.full_like(y, model.null_class))
    assert torch.allclose(guided_velocity(model, x, 0.4, y, cfg_scale=1.0), cond)
    assert torch.allclose(guided_velocity(model, x, 0.4, y, cfg_scale=2.5), uncond + 2.5 * (cond - uncond), atol=1e-5)
    assert torch.allclose(guided_velocity(model, x, 0.4, y, cfg_scale=2.5, cfg_interval=(0.5, 1.0)), cond)
    with pytest.raises(ValueError, match="null_class"):
        guided_velocity(Recorder(), x, 0.4, y, cfg_scale=2.0)


def test_sample_restores_training_mode_and_checks_shapes():
    model = _randomised_dit(class_dropout=1.0).train()
    a = sample(model, (2, 2, 2, 2), torch.tensor([0, 1]), steps=3, generator=torch.Generator().manual_seed(0))
    b = sample(model, (2, 2, 2, 2), torch.tensor([0, 1]), steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and model.training
    with pytest.raises(ValueError, match="labels"):
        sample(model, (2, 2, 2, 2), torch.tensor([0, 1, 2]))


def test_balanced_labels():
    labels = balanced_labels(103, 10, seed=3)
    counts = torch.bincount(labels, minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 103
    assert torch.equal(labels, balanced_labels(103, 10, seed=3))
    assert not torch.equal(labels, balanced_labels(103, 10, seed=4))


def test_sampler_config_validation():
    assert set(SAMPLERS.names()) >= {"euler", "heun"}
    for field in SamplerConfig.model_fields.values():
        assert field.description
    with pytest.raises(pydantic.ValidationError, match="lo <= hi"):
        SamplerConfig(cfg_interval=(0.8, 0.2))
    with pytest.raises(pydantic.ValidationError):
        SamplerConfig(step=10)
    assert SamplerConfig(method="heun", steps=7).sample_kwargs()["steps"] == 7


def test_generate_latents_does_not_depend_on_batch_size():
    model = GaussianFlow()
    model.num_classes = 3
    a, la = generate_latents(model, 10, (1, 2, 2), SamplerConfig(steps=4, batch_size=3))
    b, lb = generate_latents(model, 10, (1, 2, 2), SamplerConfig(steps=4, batch_size=10))
    assert torch.allclose(a, b) and torch.equal(la, lb) and a.shape == (10, 1, 2, 2)


# ---------------------------------------------------------------- a trained toy generator

def _mixture(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.randint(0, 4, (n,), generator=g)
    x = MODES[y] + MODE_STD * torch.randn(n, 2, generator=g)
    return x.view(n, 2, 1, 1), y


@pytest.fixture(scope="module")
def toy_generator() -> nn.Module:
    """LatentDiT on a 1x1 'latent' with C=2, trained 300 steps on 4 labelled Gaussians (~5 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread avoids oversubscription on a shared 2-core box
    try:
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(0)
        model = LatentDiT(2, 1, width=32, depth=2, heads=2, num_classes=4, class_dropout=0.5)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        ema = EMA(model, decay=0.99)
        for _ in range(300):
            x, y = _mixture(256, g)
            loss = flow_matching_loss(model, x, y, generator=g)
            opt.zero_grad()
            loss.backward()
            opt.step()
            ema.update(model)
        yield ema.module
    finally:
        torch.set_num_threads(threads)


def _nearest_mode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dist, idx = torch.cdist(x.view(-1, 2), MODES).min(dim=1)
    return dist, idx


N_TOY = 512
NOISE = torch.randn(N_TOY, 2, 1, 1, generator=torch.Generator().manual_seed(1))


def test_unconditional_samples_land_on_all_modes(toy_generator):
    labels = torch.full((N_TOY,), toy_generator.null_class)
    dist, idx = _nearest_mode(sample(toy_generator, NOISE.shape, labels, steps=20, noise=NOISE))
    assert (dist < 4 * MODE_STD).float().mean() > 0.8
    assert torch.bincount(idx, minlength=4).min() > 0.15 * N_TOY  # every mode covered


def test_conditional_samples_land_on_their_class_mode(toy_generator):
    labels = balanced_labels(N_TOY, 4, seed=0)
    dist, idx = _nearest_mode(sample(toy_generator, NOISE.shape, labels, steps=20, noise=NOISE))
    assert ((dist < 4 * MODE_STD) & (idx == labels)).float().mean() > 0.8


def test_heun_needs_fewer_steps_than_euler_on_the_learned_flow(toy_generator):
    labels = balanced_labels(N_TOY, 4, seed=0)
    ref = sample(toy_generator, NOISE.shape, labels, method="heun", steps=100, noise=NOISE)
    err_euler = (sample(toy_generator, NOISE.shape, labels, method="euler", steps=16, noise=NOISE) - ref).norm(dim=1)
    err_heun = (sample(toy_generator, NOISE.shape, labels, method="heun", steps=8, noise=NOISE) - ref).norm(dim=1)
    assert err_heun.mean() <= err_euler.mean()


def test_guidance_pushes_samples_away_from_other_classes(toy_generator):
    labels = balanced_labels(N_TOY, 4, seed=0)
    own = torch.nn.functional.one_hot(labels, 4).bool()
    margin = {}
    for scale in (1.0, 3.0):
        x = sample(toy_generator, NOISE.shape, labels, steps=20, noise=NOISE, cfg_scale=scale).view(-1, 2)
        margin[scale] = torch.cdist(x, MODES).masked_fill(own, float("inf")).min(dim=1).values.mean().item()
        assert (_nearest_mode(x)[1] == labels).float().mean() > 0.95
    assert margin[3.0] > margin[1.0]


def test_validation_loss_is_a_fixed_grid_known_answer():
    """A model that always predicts 0 scores mean((x1 - x0)^2) over the seed's fixed noise, at any t;
    the same seed gives the same value, and the exact velocity at t = 0 scores 0."""
    import torch
    from torch import nn

    from pae_lab.generation.flow import validation_loss

    class Zero(nn.Module):
        def forward(self, x, t, y):
            return torch.zeros_like(x)

    class Oracle(nn.Module):  # at t = 0, x_t = x0, so v = x1 - x_t is known given x1
        def __init__(self, x1):
            super().__init__()
            self.x1 = x1

        def forward(self, x, t, y):
            return self.x1[: len(x)] - x

    x1 = torch.randn(10, 4, 2, 2)
    y = torch.zeros(10, dtype=torch.long)
    x0 = torch.randn(x1.shape, generator=torch.Generator().manual_seed(3))
    expected = float(((x1 - x0) ** 2).mean())
    assert validation_loss(Zero(), x1, y, [0.2, 0.7], seed=3, batch_size=4) == pytest.approx(expected, rel=1e-6)
    assert validation_loss(Zero(), x1, y, [0.5], seed=3) == validation_loss(Zero(), x1, y, [0.5], seed=3)
    assert validation_loss(Oracle(x1), x1, y, [0.0], seed=3, batch_size=10) == pytest.approx(0.0, abs=1e-10)
