"""Sample each kept generator checkpoint, decode with the same tokenizer and normalisation, and score it.

Per checkpoint, on evaluation.num_samples generated images (StudyConfig.sample_n):
- gFD / gKD: generated vs the real reference set (learnability and decoder blur together);
- lFD / lKD: generated vs this tokenizer's own reconstructions of that reference set (the decoder's
  blur on both sides; it rewards a decoder that shows less: see the controls stage);
- precision / recall / density / coverage against each of the two (fidelity and diversity apart);
- beside them, the suite papers quote (analysis.suite_scores): IS, sFID with Inception, FD-DINOv2
  with its weights, each against the reference stage's features;
- the generator's flow-matching loss on held-out latents over a fixed t-grid with fixed noise, with
  the null label too at the last checkpoint (a tenth of the stage's time at every one), beside the
  loss a Gaussian with the training latents' covariance allows (analysis.flow_baseline) and the gap
  between the two.
The reference features come from the shared reference stage; the reconstructions' features are
computed once per run, the generated images' once per checkpoint. The last checkpoint's images are
kept for the controls stage (which extracts every set again itself) and, with their labels, as ADM's
`samples.npz`, which the ADM evaluator and `pae-lab evaluate` read; their FD features and the
reconstructions' beside them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from analysis.adm_files import save_images
from analysis.fidelity_names import FidelityColumns
from analysis.flow_baseline import gaussian_flow_loss, latent_spectrum
from analysis.set_scores import set_scores
from analysis.suite_scores import suite_scores
from pae_lab.fsutil import save_npy, write_json
from pae_lab.plan import layout
from pae_lab.generation.flow import validation_loss
from pae_lab.generation.samplers import generate_latents
from pae_lab.data.images import save_grid, to_uint8
from pae_lab.models.latent_norm import LatentNorm
from pae_lab.stages.context import StageContext
from pae_lab.stages.generator import SavedGenerator
from pae_lab.stages.manifold import reconstruct
from pae_lab.stages.reference import (features, load_reference, load_suite_reference, reference_images, reference_protocol,
                                      suite_features)
from pae_lab.stages.tokenizer import load_tokenizer
from pae_lab.stages.training import batched


def decode_all(tokenizer, norm: LatentNorm, latents: torch.Tensor, device: torch.device, batch: int) -> torch.Tensor:
    """Generated latents -> uint8 images, de-normalised with the tokenizer run's own statistics."""
    return batched(lambda z: to_uint8(tokenizer.decode(norm.denormalize(z)).float()), latents, device, batch)


GAUSS_ROWS = 16384  # training latents the Gaussian baseline's covariance is estimated from (the first n)


def gaussian_baseline(tok_dir: Path, norm: LatentNorm, t_grid: list[float]) -> float:
    """The held-out flow loss of the Bayes-optimal model of a Gaussian with the covariance of the
    normalised training latents (channels x tokens flattened)."""
    rows = np.array(np.load(tok_dir / layout.latents("train"), mmap_mode="r")[:GAUSS_ROWS])  # a copy: only these rows
    train = norm.normalize(torch.from_numpy(rows))
    return gaussian_flow_loss(latent_spectrum(train.numpy()), int(np.prod(train.shape[1:])), t_grid)


def flow_losses(model, latents: torch.Tensor, labels: torch.Tensor, cols: FidelityColumns, gauss: float,
                class_dropout: float, with_null: bool = True, **kw) -> dict[str, float]:
    """The held-out flow loss with the true labels and (`with_null`) with the null label, beside its
    Gaussian baseline."""
    loss = validation_loss(model, latents, labels, **kw)
    null = (validation_loss(model, latents, torch.full_like(labels, model.null_class), **kw)
            if class_dropout > 0 and with_null else float("nan"))  # never trained without class dropout
    return {cols.val_loss: loss, cols.val_loss_gauss: gauss, cols.val_loss_gap: loss - gauss, cols.val_loss_null: null}


def generation_stage(ctx: StageContext, out: Path) -> dict[str, Any]:
    study, device, ev = ctx.study, ctx.device, ctx.study.evaluation
    tok_dir, gen_dir = ctx.input("tokenizer"), ctx.input("generator")
    tokenizer = load_tokenizer(tok_dir, device)
    norm = LatentNorm.load(tok_dir / layout.LATENT_NORM)
    saved = SavedGenerator(study, gen_dir, device)
    cols = ev.columns()
    n = study.sample_n
    kw = {"kid_subsets": ev.kid_subsets, "seed": ev.sampler.seed}
    real, real_stats = load_reference(ctx.input("reference"))
    real_suite = load_suite_reference(ctx.input("reference"))
    own = features(study, reconstruct(tokenizer, reference_images(study, ctx.split("train"))[0], device, ev.batch_size), device)
    val_latents = norm.normalize(torch.from_numpy(np.load(tok_dir / layout.latents("val"))[:ev.val_loss_images]))
    val_labels = torch.from_numpy(ctx.split("val").labels[:ev.val_loss_images]).long()
    gauss = gaussian_baseline(tok_dir, norm, ev.val_loss_t)
    loss_kw = {"t_grid": ev.val_loss_t, "seed": ev.sampler.seed, "device": device, "batch_size": ev.batch_size}

    rows, images, labels = [], None, None
    steps = saved.eval_steps
    for i, step in enumerate(steps):
        ctx.progress.update("generation", i, len(steps), force=True)
        model = saved.at(step)
        latents, labels = generate_latents(model, n, saved.latent_shape, ev.sampler, num_classes=saved.num_classes,
                                           device=device)
        images = decode_all(tokenizer, norm, latents, device, ev.batch_size)
        generated = suite_features(study, images, device)
        gen = generated["fid"]
        row = {"step": step, **set_scores(gen, real, own, cols, prdc_k=ev.prdc_k, real_stats=real_stats, **kw),
               **suite_scores(generated, real_suite, cols),
               **flow_losses(model, val_latents, val_labels, cols, gauss, study.generator.class_dropout,
                             with_null=step == steps[-1], **loss_kw)}
        rows.append(row)
        ctx.logger.metrics("generation", {k: v for k, v in row.items() if k != "step"}, step, prefixed=False)  # the curve, one name
    ctx.progress.update("generation", len(steps), len(steps), force=True)
    save_images(out / layout.SAMPLES, images, labels)  # the last checkpoint's, for the controls stage and for anyone
    for name, array in ((layout.SAMPLE_FEATURES, gen), (layout.OWN_FEATURES, own)):
        save_npy(out / name, np.asarray(array))
    protocol = {**reference_protocol(ctx.input("reference")), "generator_step": "per row", "prdc_k": ev.prdc_k, "sampler": ev.sampler.model_dump(mode="json"),
                "val_loss_t": list(ev.val_loss_t), "val_loss_images": int(len(val_latents)),
                "latent_norm": norm.source,
                "val_loss_gauss_rows": GAUSS_ROWS}
    write_json(out / layout.CONVERGENCE, {"rows": rows, "protocol": protocol})
    order = torch.argsort(labels[:64], stable=True)
    grid = save_grid(images[:64][order].float() / 255, ctx.run_layout.image("samples"))
    if study.tracking.log_images:
        ctx.logger.artifact(grid, "images")
    ctx.logger.artifact(out / layout.CONVERGENCE, "generation")  # the curve with its protocol
    return {k: v for k, v in rows[-1].items() if k != "step"}
