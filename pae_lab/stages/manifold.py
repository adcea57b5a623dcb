"""Measure the latent manifold of a trained tokenizer: the paper's SSC / LPC / GSQ and the rest."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from analysis.fidelity import compute_fidelity
from analysis.panel import compute_panel
from pae_lab.fsutil import write_json
from pae_lab.images import latent_pca_rgb, save_grid, to_uint8
from pae_lab.losses.perceptual import build_perceptual
from pae_lab.stages.context import StageContext
from pae_lab.stages.tokenizer import encode_all, load_tokenizer
from pae_lab.training import batched


def flatten_results(results: dict[str, Any]) -> dict[str, float]:
    """{name: MetricResult} -> {name: value, name_<extra>: value} for tables and MLflow."""
    flat: dict[str, float] = {}
    for name, res in results.items():
        flat.update({k: float(v) for k, v in res.flat(name).items()})
    return flat


def reconstruct(model, images_u8: np.ndarray, device: torch.device, batch: int = 256) -> torch.Tensor:
    return batched(lambda x: to_uint8(model.decode(model.encode(x.float() / 255)).float()), images_u8, device, batch)


def reconstruction_fidelity(ctx: StageContext, model) -> dict[str, Any]:
    """rFID on held-out images against their own statistics (never a generation reference)."""
    ev = ctx.study.evaluation
    val = ctx.split("val").images
    rec = reconstruct(model, val, ctx.device, ev.batch_size)
    fid = compute_fidelity(rec, val, extractor=ev.extractor, inception_weights=ev.inception_weights,
                           reference_cache_name=f"val-{ctx.split('val').digest[:16]}",
                           cache_root=str(ctx.study_layout.fidelity_cache), seed=ev.sampler.seed)
    protocol = {**fid.get("protocol", {}), "warnings": fid.get("warnings", []), "split": "val",
                "reference": "val originals"}
    return {f"r{k}": v for k, v in fid.items() if isinstance(v, (int, float))} | {"protocol": protocol}


def manifold_stage(ctx: StageContext, out: Path) -> dict[str, Any]:
    study, device = ctx.study, ctx.device
    model = load_tokenizer(ctx.input("tokenizer"), device)
    val, train = ctx.split("val"), ctx.split("train")
    distance = build_perceptual(study.training.perceptual.name, **study.training.perceptual.params).to(device)
    # Fixed, recorded, seeded subsets (folder data is sorted by class, so never the first n): n val images, and as
    # many train images as val images for the probes; float copies are bounded by val_size, never by the train split.
    pick = lambda split, n: np.sort(np.random.default_rng(study.metrics.seed).permutation(len(split))[:n])  # noqa: E731
    val_idx = pick(val, min(len(val), study.metrics.n_images or len(val)))
    train_idx = pick(train, min(len(train), len(val)))
    to01 = lambda a: torch.from_numpy(a).float() / 255  # noqa: E731
    results = compute_panel(
        model.encode, model.decode, to01(val.images[val_idx]), torch.from_numpy(val.labels[val_idx]),
        None if val.segments is None else torch.from_numpy(val.segments[val_idx]),
        distance=distance, distance_name=distance.name, config=study.metrics,
        train_images=to01(train.images[train_idx]), train_labels=torch.from_numpy(train.labels[train_idx]), split="val",
        device=device,
    )
    protocols = {name: dict(res.protocol) for name, res in results.items()}
    protocols["subset"] = {"val_images": len(val_idx), "probe_train_images": len(train_idx), "seed": study.metrics.seed,
                           "how": "seeded random subsets (metrics.seed) of the val and train splits"}
    flat = flatten_results(results)
    rfid = reconstruction_fidelity(ctx, model)
    protocols["rfid"] = rfid.pop("protocol")
    flat.update(rfid)

    latents = encode_all(model, val.images[:32], device)
    grid = save_grid(latent_pca_rgb(latents), ctx.run_layout.image("latent_pca"), scale=8)
    write_json(out / "metrics.json", {"values": flat, "protocols": protocols})
    ctx.logger.artifact(out / "metrics.json", "manifold")  # every value and protocol; headline ones become metrics
    if study.tracking.log_images:
        ctx.logger.artifact(grid, "images")
    return flat
