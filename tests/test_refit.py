"""The decoder refit stage: a fresh decoder on a frozen encoder, trained by reconstruction alone."""
from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import torch
from rich.console import Console

from conftest import TINY
from pae_lab.architectures import build_tokenizer
from pae_lab.config.schema import StudyConfig
from pae_lab.config.tokenizers import TokenizerConfig
from pae_lab.data.scenes import scenes
from pae_lab.execution.driver import Driver
from pae_lab.fsutil import read_json
from analysis.reconstruction import psnr_per_image
from pae_lab.stages.manifold import reconstruct
from pae_lab.stages.refit import fresh_decoder, refit_decoder


STEPS = 120


def psnr(model, images) -> float:
    rebuilt = reconstruct(model, images, torch.device("cpu"), 64)
    return float(psnr_per_image(rebuilt.float() / 255, torch.from_numpy(images).float() / 255).mean())


def test_refit_trains_the_decoder_alone_and_recovers_what_a_reset_decoder_lost(tmp_path: Path) -> None:
    """A tokenizer trained end to end, its decoder then reset to random weights: refitting the decoder
    on the frozen encoder with the same budget brings the PSNR back to about the trained one, and
    not one encoder weight moves."""
    torch.manual_seed(0)
    model = build_tokenizer(TokenizerConfig(**TINY["tokenizer"]))
    images = scenes(16, 256, "train", seed=0).images
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(STEPS):  # plain joint training: the reference the refit must reach
        x = torch.from_numpy(images[torch.randint(0, len(images), (32,)).numpy()]).float() / 255
        loss = (model.decode(model.encode(x)) - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    trained = psnr(model.eval(), images[:64])
    encoder = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    decoder = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    fresh_decoder(model, seed=1)
    assert any(not torch.equal(decoder[k], v) for k, v in model.decoder.state_dict().items())
    before = psnr(model.eval(), images[:64])
    model.decoder.train()
    refit_decoder(model, images, tmp_path / "refit", steps=STEPS, batch_size=32, lr=3e-3, l1_weight=1.0, perceptual=None,
                  perceptual_weight=0.0, seed=0, device=torch.device("cpu"), checkpoint_every=30, log_every=10)
    after = psnr(model.eval(), images[:64])
    assert after > before + 3 and after > trained - 1.0, (before, after, trained)
    assert all(torch.equal(encoder[k], v) for k, v in model.encoder.state_dict().items())


def test_enabling_the_refit_reruns_only_it_and_adds_its_columns(tmp_path: Path) -> None:
    """Off by default (no refit columns); switched on in the same folder, only the refit stage runs,
    and results.csv gains the refit decoder's PSNR and the samples' gFD decoded with it."""
    cfg = copy.deepcopy(TINY)
    cfg.update({"name": "tiny", "output_dir": str(tmp_path / "study"), "variants": ["baseline"]})
    study = StudyConfig.model_validate(cfg)
    assert Driver(study, Console(quiet=True)).run().failed == []
    cols = study.evaluation.columns()
    assert cols.refit_fd not in pd.read_csv(study.study_dir() / "results.csv").columns
    run = study.study_dir() / "runs" / "baseline" / "seed0"
    trained = (run / "tokenizer" / "done.json").stat().st_mtime_ns
    cfg["evaluation"] = {**cfg["evaluation"], "decoder_refit": {"enabled": True, "steps": 4}}
    refit = StudyConfig.model_validate(cfg)
    assert Driver(refit, Console(quiet=True)).run().failed == []
    assert (run / "tokenizer" / "done.json").stat().st_mtime_ns == trained
    row = pd.read_csv(study.study_dir() / "results.csv").query("kind == 'variant'").iloc[0]
    assert row[cols.refit_fd] > 0 and 0 < row[cols.refit_psnr] < 60
    protocol = read_json(study.study_dir() / "study.json")["protocols"]["refit"]
    assert protocol["measured"] and protocol["steps"] == 4
