"""A tiny study putting external tokenizers (TorchScript, diffusers, a plugin class) beside a trained one."""
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
from tiny_external import TinyAE, make

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
    diffusers = pytest.importorskip("diffusers")
    diffusers.AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                            block_out_channels=(8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=4,
                            sample_size=16).save_pretrained(tmp_path / "vae")
    variants.append({"name": "sd_vae_tiny", "tokenizer": {**ext, "downsample": 2, "adapter": "diffusers", "path": str(tmp_path / "vae")}})

    cfg = copy.deepcopy(TINY)
    cfg.update({"name": "zoo", "output_dir": str(tmp_path / "zoo"), "variants": variants})
    study = StudyConfig.model_validate(cfg)
    outcome = Driver(study, Console(quiet=True)).run()
    assert outcome.failed == [] and outcome.launched == 4

    results = pd.read_csv(study.study_dir() / "results.csv")
    results = results[results["kind"] == "variant"]  # beside the teacher / reference rows
    assert list(results["variant"]) == ["baseline", "scripted", "user_class", "sd_vae_tiny"]
    assert (results["status"] == "done").all()
    for column in ("psnr", "ssc", "lpc", "gsq", "linprobe", "erank", "rfd_effnet_lite0_96", "fd_effnet_lite0_96"):
        assert results[column].notna().all(), column
    assert results["psnr"].nunique() == 4  # four different models, not one measured four times
    for name, grid in (("scripted", 4), ("user_class", 4), ("sd_vae_tiny", 8)):
        tok = study.study_dir() / "runs" / name / "seed0" / "tokenizer"
        assert read_json(tok / "done.json")["summary"] == {"pretrained": True}
        assert not (tok / "checkpoint.pt").exists()  # nothing was trained
        assert np.load(tok / "latents_val.npy").shape[1:] == (4, grid, grid)
