"""Sample each kept generator checkpoint, decode with the same tokenizer and normalisation, score gFID."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from analysis.fidelity import compute_fidelity
from pae_lab.fsutil import read_json, write_json
from pae_lab.generation.samplers import generate_latents
from pae_lab.images import save_grid, to_uint8
from pae_lab.latent_norm import LatentNorm
from pae_lab.stages.context import StageContext
from pae_lab.stages.generator import ema_path
from pae_lab.stages.tokenizer import load_tokenizer
from pae_lab.training import batched


def decode_all(tokenizer, norm: LatentNorm, latents: torch.Tensor, device: torch.device, batch: int) -> torch.Tensor:
    """Generated latents -> uint8 images, de-normalised with the tokenizer run's own statistics."""
    return batched(lambda z: to_uint8(tokenizer.decode(norm.denormalize(z)).float()), latents, device, batch)


def generation_stage(ctx: StageContext, out: Path) -> dict[str, Any]:
    study, device, ev = ctx.study, ctx.device, ctx.study.evaluation
    tok_dir, gen_dir = ctx.input("tokenizer"), ctx.input("generator")
    tokenizer = load_tokenizer(tok_dir, device)
    norm = LatentNorm.load(tok_dir / "latent_norm.json")
    shape = read_json(gen_dir / "model.json")
    model = study.generator.build(shape["in_channels"], shape["grid"], shape["num_classes"]).to(device).eval()
    train = ctx.split("train")
    # on disk, read image by image; a bounded reference is read once (uint8)
    reference = torch.from_numpy(train.images[:ev.reference_size]) if ev.reference_size else train.images
    cache_root = str(ctx.study_layout.fidelity_cache)
    latent_shape = (shape["in_channels"], shape["grid"], shape["grid"])

    rows, protocol, images = [], {}, None
    steps = shape["eval_steps"]
    for i, step in enumerate(steps):
        ctx.progress.update("generation", i, len(steps), force=True)
        model.load_state_dict(torch.load(ema_path(gen_dir, step), map_location=device, weights_only=True))
        latents, labels = generate_latents(model, ev.num_samples, latent_shape, ev.sampler,
                                           num_classes=shape["num_classes"], device=device)
        images = decode_all(tokenizer, norm, latents, device, ev.batch_size)
        scores = compute_fidelity(images, reference, extractor=ev.extractor, inception_weights=ev.inception_weights,
                                  reference_cache_name=f"train-{train.digest[:16]}", cache_root=cache_root,
                                  seed=ev.sampler.seed)
        protocol = {**scores.get("protocol", {}), "warnings": scores.get("warnings", []),
                    "reference": "train split", "generator_step": "per row",
                    "sampler": ev.sampler.model_dump(mode="json"), "num_samples": ev.num_samples,
                    "latent_norm": "per-channel mean/std of the tokenizer's training latents"}
        numeric = {k: float(v) for k, v in scores.items() if isinstance(v, (int, float))}
        rows.append({"step": step, **numeric})
        ctx.logger.metrics("generation", numeric, step, prefixed=False)  # the convergence curve, one name
    ctx.progress.update("generation", len(steps), len(steps), force=True)
    write_json(out / "convergence.json", {"rows": rows, "protocol": protocol})
    order = torch.argsort(labels[:64], stable=True)
    grid = save_grid(images[:64][order].float() / 255, ctx.run_layout.image("samples"))
    if study.tracking.log_images:
        ctx.logger.artifact(grid, "images")
    ctx.logger.artifact(out / "convergence.json", "generation")  # the curve with its protocol
    return {k: v for k, v in rows[-1].items() if k != "step"}
