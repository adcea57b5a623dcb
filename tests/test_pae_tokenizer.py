"""The `pae` architecture: zero-initialised fusion, frozen VFM outside the checkpoint, strict config, registry."""
from __future__ import annotations

import math

import pytest
import torch
from pydantic import Field, ValidationError

from pae_lab.architectures import ARCHITECTURES, ArchitectureConfig, build_tokenizer, register_architecture, validate_tokenizer
from pae_lab.config.schema import StudyConfig
from pae_lab.models.pae import PAETokenizer
from pae_lab.models.tokenizer import Tokenizer
from pae_lab.config.tokenizers import PAEConfig

SMALL = {"name": "pae", "latent_channels": 4, "downsample": 4, "dam_depth": 1, "dam_width": 16, "compressor_width": 16,
         "decoder_width": 16, "decoder_depth": 1, "heads": 2, "vfm": {"name": "effnet_lite0", "params": {"input_resolution": 64}}}


@pytest.fixture(scope="module")
def vfm():
    from pae_lab.priors import build_prior

    return build_prior("effnet_lite0", input_resolution=64)


def _model(vfm, **overrides) -> PAETokenizer:
    torch.manual_seed(0)
    return PAETokenizer(PAEConfig.model_validate({**SMALL, **overrides}), vfm=vfm)


def _vfm_only_latent(model: PAETokenizer, x: torch.Tensor) -> torch.Tensor:
    """The compressor applied to the VFM features alone (no DAM), computed from the parts."""
    grid = (x.shape[-2] // 4, x.shape[-1] // 4)
    tokens = model.vfm.features(x, grid[0]).flatten(2).transpose(1, 2)
    return model.compress(tokens, grid)


@pytest.mark.parametrize("fusion", ["scale_shift", "add"])
def test_step0_latent_is_the_compressed_vfm_alone_then_the_dam_takes_part(vfm, fusion):
    model = _model(vfm, fusion=fusion)
    x = torch.rand(4, 3, 16, 16)
    torch.testing.assert_close(model.encode(x), _vfm_only_latent(model, x), rtol=0, atol=0)
    assert any(p.abs().sum() > 0 for p in model.encoder["dam"].parameters())  # the DAM itself is not zero

    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss = (model.decode(model.encode(x)) - x).abs().mean()
    loss.backward()
    assert model.encoder["fusion"].state_dict() and all(
        p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder["fusion"].parameters())
    opt.step()
    assert not torch.allclose(model.encode(x), _vfm_only_latent(model, x))


def test_fusion_none_and_concat(vfm):
    x = torch.rand(2, 3, 16, 16)
    none = _model(vfm, fusion="none")
    assert "dam" not in none.encoder
    torch.testing.assert_close(none.encode(x), _vfm_only_latent(none, x), rtol=0, atol=0)
    concat = _model(vfm, fusion="concat")
    assert not torch.allclose(concat.encode(x), _vfm_only_latent(concat, x))  # no zero-init: mixes from step 0


@pytest.mark.parametrize("decoder", ["vit", "conv"])
def test_latent_contract_matches_conv(vfm, decoder):
    model = _model(vfm, decoder=decoder)
    z, rec = model(torch.rand(2, 3, 16, 16))
    assert z.shape == (2, 4, 4, 4) and model.latent_shape(16, 16) == (4, 4, 4) and rec.shape == (2, 3, 16, 16)
    norms = z.norm(dim=1)
    torch.testing.assert_close(norms, torch.full_like(norms, math.sqrt(4)), rtol=1e-4, atol=1e-4)


def test_frozen_vfm_is_moved_but_never_trained_or_saved(vfm):
    model = _model(vfm)
    n_vfm = sum(p.numel() for p in vfm.parameters())
    assert n_vfm > 100_000
    assert not any(k.startswith("vfm") for k in model.state_dict())
    assert sum(p.numel() for p in model.parameters()) < n_vfm
    twin = _model(vfm)
    twin.load_state_dict(model.state_dict())  # strict: the VFM is rebuilt from config, not loaded
    model.double()
    assert next(model.vfm.parameters()).dtype == torch.float64
    model.float()


def test_unknown_keys_and_names_are_errors():
    with pytest.raises(ValidationError, match="dam_widht"):
        StudyConfig.model_validate({"name": "x", "tokenizer": {**SMALL, "dam_widht": 8}})
    with pytest.raises(ValidationError, match="unknown tokenizer architecture 'vqgan'; registered: .*conv.*pae"):
        StudyConfig.model_validate({"name": "x", "tokenizer": {"name": "vqgan"}})
    with pytest.raises(ValidationError, match="not divisible by heads"):
        validate_tokenizer({**SMALL, "heads": 3})
    assert isinstance(StudyConfig.model_validate({"name": "x"}).tokenizer.model_dump()["base_channels"], int)


def test_study_round_trips_the_chosen_architecture():
    study = StudyConfig.model_validate({"name": "x", "tokenizer": SMALL})
    assert isinstance(study.tokenizer, PAEConfig)
    again = StudyConfig.model_validate(study.model_dump(mode="json"))
    assert again.tokenizer == study.tokenizer and again.tokenizer.vfm.params == {"input_resolution": 64}


class TinyLinearConfig(ArchitectureConfig):
    name: str = Field("tiny_linear", description="a plugin architecture")
    downsample: int = 2


def test_a_plugin_registers_an_architecture():
    register_architecture("tiny_linear", TinyLinearConfig)(
        lambda cfg: Tokenizer(base_channels=4, channel_mult=[1], downsample=2, latent_channels=cfg.latent_channels))
    try:
        study = StudyConfig.model_validate({"name": "x", "tokenizer": {"name": "tiny_linear", "latent_channels": 3}})
        model = build_tokenizer(study.tokenizer)
        assert model.encode(torch.rand(1, 3, 8, 8)).shape == (1, 3, 4, 4)
        with pytest.raises(ValidationError, match="extra"):
            StudyConfig.model_validate({"name": "x", "tokenizer": {"name": "tiny_linear", "width": 3}})
    finally:
        ARCHITECTURES._entries.pop("tiny_linear")
    assert "tiny_linear" not in ARCHITECTURES
