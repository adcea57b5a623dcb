"""The decoder refit stage: a fresh decoder on the run's frozen encoder, then the samples decoded with it.

A regularizer acts on two things at once: the latent (what the generator learns) and the decoder
(what the images show; MCR, for one, trains a decoder that ignores small latent steps, which
blurs). Training a fresh decoder on the frozen encoder, with the reconstruction loss alone and the
same budget for every variant, takes the second out: its PSNR says what the latent keeps, and the
gFD of the last generator checkpoint's samples decoded with it says how well the latent generates
with a decoder no regularizer touched. Off by default (`evaluation.decoder_refit.enabled`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from analysis.fidelity import fd_against
from analysis.reconstruction import psnr_per_image
from pae_lab.fsutil import save_torch, write_json
from pae_lab.generation.samplers import generate_latents
from pae_lab.losses.perceptual import build_perceptual
from pae_lab.losses.reconstruction import reconstruction_loss
from pae_lab.models.latent_norm import LatentNorm
from pae_lab.plan import layout
from pae_lab.stages.context import StageContext
from pae_lab.stages.generation import decode_all
from pae_lab.stages.generator import SavedGenerator
from pae_lab.stages.manifold import reconstruct
from pae_lab.stages.reference import features, load_reference
from pae_lab.stages.tokenizer import load_tokenizer
from pae_lab.stages.training import TrainLoop, autocast, grad_norm

REFIT_SEED_OFFSET = 7919  # the fresh decoder's initialisation differs from the tokenizer's own


def fresh_decoder(model: nn.Module, seed: int) -> nn.Module:
    """`model` with its encoder frozen and its decoder re-initialised from `seed` (every layer's own
    reset_parameters: works for any architecture with `encoder` / `decoder` modules)."""
    torch.manual_seed(seed)
    for module in model.decoder.modules():
        if module is not model.decoder and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    model.encoder.requires_grad_(False).eval()
    return model


def refit_decoder(model: nn.Module, images, out: Path, *, steps: int, batch_size: int, lr: float, l1_weight: float,
                  perceptual: nn.Module, perceptual_weight: float, seed: int, device: torch.device,
                  **loop: Any) -> dict[str, float]:
    """Train `model.decoder` alone (the encoder frozen) on the reconstruction loss; resumable like any
    stage (`loop`: TrainLoop's checkpoint_every, log_every, logger, progress)."""
    opt = torch.optim.AdamW(model.decoder.parameters(), lr=lr)

    def step_fn(step: int) -> dict[str, float]:
        idx = torch.randint(0, len(images), (batch_size,))
        x = torch.from_numpy(np.asarray(images[np.sort(idx.numpy())])).to(device).float() / 255
        with torch.no_grad(), autocast(device):
            z = model.encode(x)
        with autocast(device):
            total, terms = reconstruction_loss(x, model.decode(z), perceptual, l1_weight=l1_weight,
                                               perceptual_weight=perceptual_weight)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        return {"loss/total": total.item(), **{f"loss/{k}": float(v) for k, v in terms.items()},
                "grad_norm/decoder": grad_norm(model.decoder)}

    return TrainLoop("refit", out, {"decoder": model.decoder, "optimizer": opt}, steps, seed=seed,
                     items_per_step=batch_size, **loop).run(step_fn)


def refit_stage(ctx: StageContext, out: Path) -> dict[str, Any]:
    """Refit the decoder (when enabled and the architecture trains), then its PSNR on the held-out
    images and the gFD of the last checkpoint's samples (the generation stage's latents, redrawn
    with the same sampler seed) decoded with it."""
    study, device, ev = ctx.study, ctx.device, ctx.study.evaluation
    cfg, train_cfg, cols = ev.decoder_refit, study.training, ev.columns()
    tok_dir = ctx.input("tokenizer")
    tokenizer = load_tokenizer(tok_dir, device) if cfg.enabled else None
    if tokenizer is None or not hasattr(tokenizer, "decoder"):
        why = "this architecture has no decoder module to refit" if cfg.enabled else "evaluation.decoder_refit.enabled is false"
        write_json(out / layout.REFIT, {"protocol": {"measured": False, "why": why}})
        return {}
    model = fresh_decoder(tokenizer, REFIT_SEED_OFFSET + ctx.seed)
    model.decoder.train()
    steps, lr = cfg.steps or train_cfg.steps, cfg.lr or train_cfg.lr
    perceptual = build_perceptual(train_cfg.perceptual.name, **train_cfg.perceptual.params).to(device)
    last = refit_decoder(model, ctx.split("train").images, out, steps=steps, batch_size=train_cfg.batch_size, lr=lr,
                         l1_weight=train_cfg.l1_weight, perceptual=perceptual, perceptual_weight=train_cfg.perceptual.weight,
                         seed=ctx.seed, device=device, checkpoint_every=train_cfg.checkpoint_every,
                         log_every=train_cfg.log_every, logger=ctx.logger, progress=ctx.progress)
    model.eval()
    save_torch(out / layout.REFIT_DECODER, model.decoder.state_dict())

    held_out = ctx.split("val").images[:study.metrics.n_images]  # the images the panel's psnr reads
    rebuilt = reconstruct(model, held_out, device, ev.batch_size)
    psnr = float(psnr_per_image(rebuilt.float() / 255, torch.from_numpy(np.asarray(held_out)).float() / 255).mean())
    saved = SavedGenerator(study, ctx.input("generator"), device)
    n = study.sample_n
    latents, _ = generate_latents(saved.at(saved.eval_steps[-1]), n, saved.latent_shape, ev.sampler,
                                  num_classes=saved.num_classes, device=device)
    images = decode_all(model, LatentNorm.load(tok_dir / layout.LATENT_NORM), latents, device, ev.batch_size)
    real, real_stats = load_reference(ctx.input("reference"))
    summary = {cols.refit_fd: fd_against(features(study, images, device).double(), real if real_stats is None else real_stats), cols.refit_psnr: psnr}
    write_json(out / layout.REFIT, {"protocol": {"measured": True, "steps": steps, "lr": lr, "batch_size": train_cfg.batch_size,
                                                 "loss": "the tokenizer's reconstruction loss, no regularizer",
                                                 "samples": "the last generator checkpoint's, redrawn with evaluation.sampler.seed",
                                                 "n": n, "psnr_images": len(held_out), "final_loss": last.get("loss/total")}})
    return summary
