"""The checkpoint formats people release, each saved tiny and random to tmp and read back through its adapter:
diffusers folders (AutoencoderKL, AutoencoderDC, AutoencoderRAE) and LDM .pt + YAML (`ldm_kl`)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from pae_lab.architectures import build_tokenizer
from pae_lab.config.errors import StudyError
from pae_lab.plan.preflight import load_study
from tiny_external import LDM_DDCONFIG, TinyAE, ldm_twin, save_dc, save_kl, save_ldm, save_rae, to_ldm_state

diffusers = pytest.importorskip("diffusers")
X = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def _external(**cfg):
    return build_tokenizer({"name": "external", "latent_channels": 4, **cfg})


def _close(tok, encode, decode) -> None:
    """The adapter's encode / decode equal the model's own calls written out by hand."""
    with torch.no_grad():
        z = encode(X)
        torch.testing.assert_close(tok.encode(X), z)
        torch.testing.assert_close(tok.decode(z), decode(z))


def test_autoencoder_kl_folder_posterior_mode_in_signed_range(tmp_path: Path) -> None:
    vae = save_kl(tmp_path / "kl")
    tok = _external(adapter="diffusers", path=str(tmp_path / "kl"), downsample=4)
    _close(tok, lambda x: vae.encode(x * 2 - 1).latent_dist.mode(), lambda z: vae.decode(z).sample * 0.5 + 0.5)
    tok.probe(16)


def test_autoencoder_dc_folder_plain_latent(tmp_path: Path) -> None:
    dc = save_dc(tmp_path / "dc")
    tok = _external(adapter="diffusers", path=str(tmp_path / "dc"), downsample=4)
    _close(tok, lambda x: dc.encode(x * 2 - 1).latent, lambda z: dc.decode(z).sample * 0.5 + 0.5)
    tok.probe(16)


def test_autoencoder_rae_folder_unit_range_fixed_grid(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    rae = save_rae(tmp_path / "rae")
    tok = _external(adapter="diffusers", path=str(tmp_path / "rae"), latent_channels=64, downsample=4)
    _close(tok, lambda x: rae.encode(x).latent, lambda z: rae.decode(z).sample)  # it resizes 16 -> 32 px itself
    assert tok.decode(tok.encode(X)).shape == X.shape
    tok.probe(16)  # its 4 x 4 grid is 16 px / 4 ...
    with pytest.raises(ValueError, match=r"maps a 32x32 image \(data.resolution=32\) to a latent of shape \(64, 4, 4\); "
                                         r"tokenizer.latent_channels=64 and tokenizer.downsample=4 expect \(64, 8, 8\)"):
        tok.probe(32)  # ... and at any other resolution it is still 4 x 4


def test_a_decoder_writing_another_size_comes_back_at_grid_times_downsample(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    rae = save_rae(tmp_path / "rae", patch=8)  # 4 x 4 tokens -> 32 px; the study's 16 px / downsample 4 wants 16 px
    tok = _external(adapter="diffusers", path=str(tmp_path / "rae"), latent_channels=64, downsample=4)
    with torch.no_grad():
        z = tok.encode(X)
        torch.testing.assert_close(tok.decode(z), torch.nn.functional.interpolate(
            rae.decode(z).sample, size=(16, 16), mode="bicubic", align_corners=False))


def test_a_class_without_its_extra_or_entry_is_one_line(tmp_path: Path) -> None:
    from pae_lab.catalog import DIFFUSERS_CLASSES
    from pae_lab.models.external_diffusers import DiffusersClass

    save_kl(tmp_path / "kl")  # the conftest fixture restores the registry afterwards
    DIFFUSERS_CLASSES.register("AutoencoderKL", DiffusersClass(signed=True, needs=("pae_lab_no_such_module", "rae")),
                               overwrite=True)
    with pytest.raises(ImportError) as err:
        _external(adapter="diffusers", path=str(tmp_path / "kl"), downsample=4)
    assert str(err.value) == (f"tokenizer.path: {tmp_path / 'kl'} holds an AutoencoderKL, which needs "
                              "pae_lab_no_such_module: pip install 'pae-lab[rae]'")
    config = tmp_path / "kl" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "_class_name": "AutoencoderTiny"}))
    with pytest.raises(ValueError, match=rf"{config} has _class_name='AutoencoderTiny'; the diffusers adapter reads "
                                         "AutoencoderDC, AutoencoderKL, AutoencoderRAE"):
        _external(adapter="diffusers", path=str(tmp_path / "kl"), downsample=4)


@pytest.mark.parametrize("layout", ["vavae", "whole_ldm", "mar"])
def test_ldm_kl_reproduces_the_ldm_checkpoint(tmp_path: Path, layout: str) -> None:
    """Known answer: the LDM-named weights (level attention included), rebuilt from the YAML, give the original's
    numbers; from VA-VAE's {"state_dict": ...}, a whole latent-diffusion checkpoint (first_stage_model.*) and
    MAR's {"model": ...} with attention in the encoder only."""
    vae = save_ldm(tmp_path / "vavae")
    weights = tmp_path / "vavae" / "vae.pt"
    if layout == "mar":
        vae = ldm_twin(seed=1, decoder_attention=False)
        torch.save({"model": to_ldm_state(vae)}, weights)
        config = tmp_path / "vavae" / "vae.yaml"
        raw = yaml.safe_load(config.read_text())
        raw["model"]["params"]["ddconfig"]["decoder_attn_resolutions"] = []
        config.write_text(yaml.safe_dump(raw))
    if layout == "whole_ldm":
        state = torch.load(weights, weights_only=True)["state_dict"]
        weights = tmp_path / "vavae" / "ldm.ckpt"
        torch.save({"state_dict": {**{f"first_stage_model.{k}": v for k, v in state.items()},
                                   "model.diffusion_model.out.2.weight": torch.zeros(1), "encoder.stray": torch.zeros(1)}},
                   weights)
    tok = _external(adapter="ldm_kl", path=str(weights), config=str(tmp_path / "vavae" / "vae.yaml"), downsample=2)
    _close(tok, lambda x: vae.encode(x * 2 - 1).latent_dist.mode(), lambda z: vae.decode(z).sample * 0.5 + 0.5)
    tok.probe(16)


@pytest.mark.parametrize("change, key, value", [
    ({"embed_dim": 8}, "model.params.embed_dim", 8),
    ({"ddconfig": {**LDM_DDCONFIG, "attn_type": "linear"}}, "model.params.ddconfig.attn_type", "linear"),
    ({"ddconfig": {**LDM_DDCONFIG, "attn_resolutions": [4]}}, "model.params.ddconfig.attn_resolutions", [4]),
])
def test_ldm_kl_refuses_a_config_autoencoder_kl_cannot_be(tmp_path: Path, change: dict, key: str, value) -> None:
    save_ldm(tmp_path)
    config = tmp_path / "vae.yaml"
    raw = yaml.safe_load(config.read_text())
    raw["model"]["params"].update(change)
    config.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError) as err:
        _external(adapter="ldm_kl", path=str(tmp_path / "vae.pt"), config=str(config), downsample=2)
    assert str(err.value).startswith(f"tokenizer.config: {config} {key}={value!r} cannot be rebuilt as a diffusers AutoencoderKL: ")


def test_ldm_kl_names_the_ddconfig_keys_it_lacks(tmp_path: Path) -> None:
    save_ldm(tmp_path)
    config = tmp_path / "vae.yaml"
    raw = yaml.safe_load(config.read_text())
    del raw["model"]["params"]["ddconfig"]["ch"], raw["model"]["params"]["ddconfig"]["resolution"]
    config.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError) as err:
        _external(adapter="ldm_kl", path=str(tmp_path / "vae.pt"), config=str(config), downsample=2)
    assert str(err.value) == f"tokenizer.config: {config} model.params.ddconfig lacks ch, resolution"


def _shipped(**cfg) -> tuple[tuple[float, ...], tuple[float, ...], str]:
    norm = _external(latent_norm="checkpoint", **cfg).shipped_norm()
    return tuple(round(v, 6) for v in norm.mean), tuple(round(v, 6) for v in norm.std), norm.source


def test_latent_norm_checkpoint_reads_what_each_checkpoint_ships(tmp_path: Path) -> None:
    save_kl(tmp_path / "flux_like", scaling_factor=0.5, shift_factor=0.1)
    mean, std, source = _shipped(adapter="diffusers", path=str(tmp_path / "flux_like"), downsample=4)
    assert (mean, std) == ((0.1,) * 4, (2.0,) * 4)  # z' = (z - shift) * scale: mean = shift, std = 1 / scale
    assert source == f"checkpoint: scaling_factor=0.5, shift_factor=0.1 ({tmp_path / 'flux_like' / 'config.json'})"
    save_dc(tmp_path / "dc")
    assert _shipped(adapter="diffusers", path=str(tmp_path / "dc"), downsample=4)[:2] == ((0.0,) * 4, (2.0,) * 4)

    save_ldm(tmp_path / "vavae")
    ldm = {"adapter": "ldm_kl", "path": str(tmp_path / "vavae" / "vae.pt"), "config": str(tmp_path / "vavae" / "vae.yaml"),
           "downsample": 2}
    stats = tmp_path / "vavae" / "latents_stats.pt"
    mean, std, source = _shipped(**ldm, latent_stats=str(stats))
    assert (mean, std, source) == ((0.1, -0.2, 0.3, 0.0), (1.0, 2.0, 0.5, 4.0), f"checkpoint: mean/std from {stats}")
    with pytest.raises(ValueError, match=r"ships no latent statistics; name its file with tokenizer.latent_stats"):
        _shipped(**ldm)  # VA-VAE's YAML names no scale_factor
    assert _external(**ldm).shipped_norm() is None  # latent_norm: fit (the default) fits on the training latents


def test_rae_ships_its_statistics_inside_encode(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    save_rae(tmp_path / "rae")
    mean, std, source = _shipped(adapter="diffusers", path=str(tmp_path / "rae"), latent_channels=64, downsample=4)
    assert (mean, std) == ((0.0,) * 64, (1.0,) * 64) and source.startswith("checkpoint: applied inside AutoencoderRAE.encode")


def test_latent_stats_need_checkpoint_norm_and_the_file(tmp_path: Path) -> None:
    torch.jit.script(TinyAE(channels=4)).save(str(tmp_path / "ts.pt"))
    ts = {"name": "external", "adapter": "torchscript", "path": str(tmp_path / "ts.pt"), "latent_channels": 4, "downsample": 4}
    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump({"name": "s", "variants": [{"name": "a", "tokenizer": {**ts, "latent_stats": "x.pt"}}]}))
    with pytest.raises(StudyError, match=r"latent_stats='x.pt' is read only with latent_norm: checkpoint"):
        load_study(study, check_files=False)
    study.write_text(yaml.safe_dump({"name": "s", "variants": [{"name": "a", "tokenizer": {
        **ts, "latent_norm": "checkpoint", "latent_stats": str(tmp_path / "stats.pt")}}]}))
    with pytest.raises(StudyError, match=r"variants\[0\].tokenizer.latent_stats: latent statistics file not found"):
        load_study(study)
