"""A tiny study putting external tokenizers in every released format (TorchScript, a plugin class, diffusers
AutoencoderKL / AutoencoderDC / AutoencoderRAE folders, an LDM .pt + YAML) beside a trained one."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from rich.console import Console

from conftest import TINY
from pae_lab.config.schema import StudyConfig
from pae_lab.fsutil import read_json
from pae_lab.execution.driver import Driver
from tiny_external import TinyAE, make, save_dc, save_kl, save_ldm, save_rae

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(900)
def test_external_tokenizers_get_the_full_panel_and_enter_results(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.jit.script(TinyAE(channels=4)).save(str(tmp_path / "ts.pt"))
    torch.save(make(seed=3, channels=4).state_dict(), tmp_path / "state.pt")
    ext = {"name": "external", "latent_channels": 4, "downsample": 4}
    variants = ["baseline",
                {"name": "scripted", "tokenizer": {**ext, "adapter": "torchscript", "path": str(tmp_path / "ts.pt")}},
                {"name": "user_class", "tokenizer": {**ext, "adapter": "state_dict", "path": str(tmp_path / "state.pt"),
                                                     "factory": "tiny_external:TinyAE", "params": {"channels": 4}}}]
    pytest.importorskip("diffusers")
    save_kl(tmp_path / "vae")
    save_dc(tmp_path / "dc")
    save_ldm(tmp_path / "vavae")
    grids = {"scripted": 4, "user_class": 4, "sd_vae_tiny": 4, "dc_ae_tiny": 4, "va_vae_tiny": 8}
    variants += [
        {"name": "sd_vae_tiny", "tokenizer": {**ext, "adapter": "diffusers", "path": str(tmp_path / "vae"), "latent_norm": "checkpoint"}},
        {"name": "dc_ae_tiny", "tokenizer": {**ext, "adapter": "diffusers", "path": str(tmp_path / "dc")}},
        {"name": "va_vae_tiny", "tokenizer": {**ext, "downsample": 2, "adapter": "ldm_kl", "path": str(tmp_path / "vavae" / "vae.pt"),
                                              "config": str(tmp_path / "vavae" / "vae.yaml"), "latent_norm": "checkpoint",
                                              "latent_stats": str(tmp_path / "vavae" / "latents_stats.pt")}}]
    try:
        import transformers  # noqa: F401  (the `rae` extra)
    except ImportError:
        pass
    else:
        save_rae(tmp_path / "rae")
        variants.append({"name": "rae_tiny", "tokenizer": {**ext, "latent_channels": 64, "adapter": "diffusers", "path": str(tmp_path / "rae")}})
        grids["rae_tiny"] = 4

    cfg = copy.deepcopy(TINY)
    cfg.update({"name": "zoo", "output_dir": str(tmp_path / "zoo"), "variants": variants})
    study = StudyConfig.model_validate(cfg)
    outcome = Driver(study, Console(quiet=True)).run()
    assert outcome.failed == [] and outcome.launched == len(variants)

    results = pd.read_csv(study.study_dir() / "results.csv")
    results = results[results["kind"] == "variant"]  # beside the teacher / reference rows
    assert list(results["variant"]) == ["baseline", *grids]
    assert (results["status"] == "done").all()
    for column in ("psnr", "ssc", "lpc", "gsq", "linprobe", "erank", "rfd_effnet_lite0_96", "fd_effnet_lite0_96"):
        assert results[column].notna().all(), column
    assert results["psnr"].nunique() == len(variants)  # different models, not one measured several times
    channels = {"rae_tiny": 64}
    for name, grid in grids.items():
        tok = study.study_dir() / "runs" / name / "seed0" / "tokenizer"
        assert read_json(tok / "done.json")["summary"] == {"pretrained": True}
        assert not (tok / "checkpoint.pt").exists()  # nothing was trained
        assert np.load(tok / "latents_val.npy").shape[1:] == (channels.get(name, 4), grid, grid)
    norms = {name: read_json(study.study_dir() / "runs" / name / "seed0" / "tokenizer" / "latent_norm.json")
             for name in ("scripted", "sd_vae_tiny", "va_vae_tiny")}
    assert norms["scripted"]["source"].startswith("fit: ")
    assert norms["sd_vae_tiny"]["std"] == pytest.approx([1 / 0.18215] * 4) and norms["sd_vae_tiny"]["mean"] == [0.0] * 4
    assert norms["sd_vae_tiny"]["source"].startswith("checkpoint: scaling_factor=0.18215, shift_factor=0.0")
    assert norms["va_vae_tiny"]["std"] == pytest.approx([1.0, 2.0, 0.5, 4.0])
    assert norms["va_vae_tiny"]["source"] == f"checkpoint: mean/std from {tmp_path / 'vavae' / 'latents_stats.pt'}"
