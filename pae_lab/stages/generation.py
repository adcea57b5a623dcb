"""Sample each kept generator checkpoint, decode with the same tokenizer and normalisation, and score it.

Per checkpoint, at the study's one N (pae_lab.stages.reference.fd_n):
- gFD / gKD: generated vs the real reference set (learnability and decoder blur together);
- lFD / lKD: generated vs this tokenizer's own reconstructions of that reference set (the decoder's
  blur on both sides; it rewards a decoder that shows less: see the controls stage);
- precision / recall / density / coverage against each of the two (fidelity and diversity apart);
- the generator's flow-matching loss on held-out latents over a fixed t-grid with fixed noise.
The reference features come from the shared reference stage; the reconstructions' features are
computed once per run, the generated images' once per checkpoint. The last checkpoint's images,
labels and features and the reconstructions' features are kept for the controls stage.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from analysis.set_scores import set_scores
from pae_lab.fsutil import read_json, save_npy, write_json
from pae_lab.plan import layout
from pae_lab.generation.flow import validation_loss
from pae_lab.generation.samplers import generate_latents
from pae_lab.data.images import save_grid, to_uint8
from pae_lab.models.generator import build_generator
from pae_lab.models.latent_norm import LatentNorm
from pae_lab.stages.context import StageContext
from pae_lab.stages.generator import ema_path
from pae_lab.stages.manifold import reconstruct
from pae_lab.stages.reference import fd_n, features, fidelity_protocol, load_features
from pae_lab.stages.tokenizer import load_tokenizer
from pae_lab.stages.training import batched


def decode_all(tokenizer, norm: LatentNorm, latents: torch.Tensor, device: torch.device, batch: int) -> torch.Tensor:
    """Generated latents -> uint8 images, de-normalised with the tokenizer run's own statistics."""
    return batched(lambda z: to_uint8(tokenizer.decode(norm.denormalize(z)).float()), latents, device, batch)


def generation_stage(ctx: StageContext, out: Path) -> dict[str, Any]:
    study, device, ev = ctx.study, ctx.device, ctx.study.evaluation
    tok_dir, gen_dir = ctx.input("tokenizer"), ctx.input("generator")
    tokenizer = load_tokenizer(tok_dir, device)
    norm = LatentNorm.load(tok_dir / layout.LATENT_NORM)
    shape = read_json(gen_dir / layout.GENERATOR_SHAPE)
    model = build_generator(study.generator, shape["in_channels"], shape["grid"], shape["num_classes"]).to(device).eval()
    cols = ev.columns()
    n = fd_n(study)
    kw = {"kid_subsets": ev.kid_subsets, "seed": ev.sampler.seed}
    real = load_features(ctx.input("reference"), layout.REFERENCE_FEATURES)
    own = features(study, reconstruct(tokenizer, ctx.split("train").images[:n], device, ev.batch_size), device)
    val_latents = norm.normalize(torch.from_numpy(np.load(tok_dir / layout.latents("val"))[:ev.val_loss_images]))
    val_labels = torch.from_numpy(ctx.split("val").labels[:ev.val_loss_images]).long()
    latent_shape = (shape["in_channels"], shape["grid"], shape["grid"])

    rows, images, labels = [], None, None
    steps = shape["eval_steps"]
    for i, step in enumerate(steps):
        ctx.progress.update("generation", i, len(steps), force=True)
        model.load_state_dict(torch.load(ema_path(gen_dir, step), map_location=device, weights_only=True))
        latents, labels = generate_latents(model, n, latent_shape, ev.sampler, num_classes=shape["num_classes"],
                                           device=device)
        images = decode_all(tokenizer, norm, latents, device, ev.batch_size)
        gen = features(study, images, device)
        row = {"step": step, **set_scores(gen, real, own, cols, prdc_k=ev.prdc_k, **kw),
               cols.val_loss: validation_loss(model, val_latents, val_labels, ev.val_loss_t, seed=ev.sampler.seed,
                                              device=device, batch_size=ev.batch_size)}
        rows.append(row)
        ctx.logger.metrics("generation", {k: v for k, v in row.items() if k != "step"}, step, prefixed=False)  # the curve, one name
    ctx.progress.update("generation", len(steps), len(steps), force=True)
    for name, array in ((layout.SAMPLES, images), (layout.SAMPLE_LABELS, labels), (layout.SAMPLE_FEATURES, gen),
                        (layout.OWN_FEATURES, own)):
        save_npy(out / name, np.asarray(array))  # the last checkpoint's, for the controls stage
    protocol = {**fidelity_protocol(study), "generator_step": "per row", "prdc_k": ev.prdc_k, "sampler": ev.sampler.model_dump(mode="json"),
                "val_loss_t": list(ev.val_loss_t), "val_loss_images": int(len(val_latents)),
                "latent_norm": "per-channel mean/std of the tokenizer's training latents"}
    write_json(out / layout.CONVERGENCE, {"rows": rows, "protocol": protocol})
    order = torch.argsort(labels[:64], stable=True)
    grid = save_grid(images[:64][order].float() / 255, ctx.run_layout.image("samples"))
    if study.tracking.log_images:
        ctx.logger.artifact(grid, "images")
    ctx.logger.artifact(out / layout.CONVERGENCE, "generation")  # the curve with its protocol
    return {k: v for k, v in rows[-1].items() if k != "step"}
