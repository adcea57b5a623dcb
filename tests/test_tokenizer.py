"""Tokenizer shapes and latent contract; the refined-prior model and its loss."""
import math

import pytest
import torch
from pydantic import ValidationError

from pae_lab.models.refiner import Refiner, gaussian_blur, lowpass_reference, refine_loss
from pae_lab.models.tokenizer import Tokenizer, TokenizerConfig, rms_normalize


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    torch.manual_seed(0)
    return Tokenizer()


def test_default_shapes_and_param_count(tok):
    x = torch.rand(2, 3, 32, 32)
    z, x_rec = tok(x)
    assert z.shape == (2, 16, 8, 8)
    assert x_rec.shape == x.shape
    assert tok.latent_shape(32, 32) == (16, 8, 8)
    n = sum(p.numel() for p in tok.parameters())
    assert 300_000 <= n <= 1_000_000, n


def test_latent_tokens_live_on_the_sphere(tok):
    z = tok.encode(torch.rand(3, 3, 32, 32))
    norms = z.norm(dim=1)  # per token
    torch.testing.assert_close(norms, torch.full_like(norms, math.sqrt(16)), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(z.pow(2).mean(dim=1), torch.ones(3, 8, 8), rtol=1e-4, atol=1e-4)


def test_rms_normalize_known_answer():
    z = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)  # mean square 12.5
    torch.testing.assert_close(rms_normalize(z, eps=0.0).flatten(), torch.tensor([3.0, 4.0]) / math.sqrt(12.5))


def test_decode_is_unclamped_and_gradients_reach_the_encoder(tok):
    z = tok.encode(torch.rand(2, 3, 32, 32))
    x_rec = tok.decode(z * 50)  # far off the sphere: the decoder must not clip
    assert x_rec.min() < 0 or x_rec.max() > 1
    tok.zero_grad()
    tok(torch.rand(2, 3, 32, 32))[1].square().mean().backward()
    assert tok.encoder[0].weight.grad.abs().sum() > 0


def test_channels_last(tok):
    x = torch.rand(2, 3, 32, 32)
    ref = tok(x)[1]
    cl = Tokenizer(tok.config)
    cl.load_state_dict(tok.state_dict())
    cl = cl.to(memory_format=torch.channels_last)
    out = cl(x.to(memory_format=torch.channels_last))[1]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_other_factors_and_overrides():
    t = Tokenizer(channel_mult=[1, 1, 2], downsample=8, base_channels=8, latent_channels=4, num_res_blocks=0, norm="none", activation="gelu")
    assert t.encode(torch.rand(1, 3, 32, 32)).shape == (1, 4, 4, 4)


def test_config_errors_say_what_to_do():
    with pytest.raises(ValidationError, match=r"downsample=8 does not match channel_mult=\[1, 2\]"):
        TokenizerConfig(downsample=8)
    with pytest.raises(ValidationError, match="extra"):
        TokenizerConfig(lr=1e-3)  # training settings do not belong here
    with pytest.raises(ValueError, match="not divisible"):
        Tokenizer().latent_shape(30, 32)
    assert all(f.description for f in TokenizerConfig.model_fields.values())


# --- refined prior ---------------------------------------------------------------------------


def test_refiner_shapes_and_frozen_targets():
    torch.manual_seed(0)
    r = Refiner(vfm_dim=24, latent_dim=8, depth=1, heads=2, width=32)
    h = torch.randn(2, 24, 6, 6)
    p, rec = r(h)
    assert p.shape == (2, 8, 6, 6) and rec.shape == h.shape
    t = r.targets(h)
    assert not t.requires_grad
    torch.testing.assert_close(t, p.detach())
    with pytest.raises(ValueError, match="vfm_dim=24"):
        r(torch.randn(1, 10, 6, 6))


def test_refine_loss_terms_and_training_reduces_it():
    torch.manual_seed(0)
    r = Refiner(vfm_dim=16, latent_dim=4, depth=1, heads=2, width=32)
    h = torch.randn(4, 16, 4, 4)
    total, terms = refine_loss(r, h, l_rep=1.0, l_gram=0.5)
    torch.testing.assert_close(total.detach(), terms["rep"] + 0.5 * terms["gram"])
    only_rep, _ = refine_loss(r, h, l_rep=1.0, l_gram=0.0)
    torch.testing.assert_close(only_rep.detach(), terms["rep"])
    torch.testing.assert_close(terms["ratio"], terms["rep"] / (0.5 * terms["gram"]))
    torch.testing.assert_close(terms["gram_weighted"], 0.5 * terms["gram"])
    opt = torch.optim.Adam(r.parameters(), lr=3e-3)
    first = float(total.detach())
    for _ in range(30):
        loss, _ = refine_loss(r, h)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.7 * first


def test_channel_stats_standardize_every_channel():
    from pae_lab.models.refiner import channel_stats

    h = torch.randn(8, 3, 4, 4) * torch.tensor([1.0, 50.0, 0.01]).view(1, 3, 1, 1) + 7.0
    mean, std = channel_stats(h)
    z = (h - mean) / std
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-5, rtol=0)


def test_lowpass_reference():
    const = torch.full((1, 3, 4, 4), 2.0)
    torch.testing.assert_close(lowpass_reference(const, 0.4), const)  # blur keeps constants
    h = torch.randn(1, 3, 8, 8)
    assert lowpass_reference(h, 1.0).var() < lowpass_reference(h, 0.2).var() < h.var()
    torch.testing.assert_close(gaussian_blur(h, 0.0), h)
    impulse = torch.zeros(1, 1, 9, 9)
    impulse[0, 0, 4, 4] = 1
    torch.testing.assert_close(gaussian_blur(impulse, 1.0).sum(), torch.tensor(1.0))  # normalised kernel
