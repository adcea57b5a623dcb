"""Measure the latent manifold of a trained tokenizer: the paper's SSC / LPC / GSQ and the rest."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from analysis.fidelity import fd_kd_named
from analysis.panel import compute_panel
from pae_lab.fsutil import write_json
from pae_lab.plan import layout
from pae_lab.data.images import latent_pca_rgb, save_grid, to_uint8
from pae_lab.losses.perceptual import build_perceptual
from pae_lab.stages.context import StageContext
from pae_lab.stages.reference import features, load_features, load_reference, reference_protocol
from pae_lab.stages.tokenizer import encode_all, load_tokenizer
from pae_lab.stages.training import batched


def flatten_results(results: dict[str, Any]) -> dict[str, float]:
    """{name: MetricResult} -> {name: value, name_<extra>: value} for tables and MLflow."""
    flat: dict[str, float] = {}
    for name, res in results.items():
        flat.update({k: float(v) for k, v in res.flat(name).items()})
    return flat


def reconstruct(model, images_u8: np.ndarray, device: torch.device, batch: int = 256) -> torch.Tensor:
    return batched(lambda x: to_uint8(model.decode(model.encode(x.float() / 255)).float()), images_u8, device, batch)


def reconstruction_fidelity(ctx: StageContext, model) -> dict[str, Any]:
    """rFD (reconstructions of the first N held-out images vs those originals: the rFID protocol) and
    the decoder floor (the same reconstructions vs the real reference set), at the study's one N,
    against the features the shared reference stage computed once."""
    study, ev = ctx.study, ctx.study.evaluation
    cols = ev.columns()
    rec = reconstruct(model, ctx.split("val").images[:study.heldout_n], ctx.device, ev.batch_size)
    rec_feats = features(study, rec, ctx.device)
    ref_dir = ctx.input("reference")
    kw = {"kid_subsets": ev.kid_subsets, "seed": ev.sampler.seed}
    real, real_stats = load_reference(ref_dir)
    values = {**fd_kd_named(rec_feats, load_features(ref_dir, layout.HELDOUT_FEATURES), cols.rfd, cols.rkd, **kw),
              **fd_kd_named(rec_feats, real, cols.floor_fd, cols.floor_kd, stats=real_stats, **kw)}
    protocol = {**reference_protocol(ref_dir), "split": "val", "rfd_reference": "the same held-out originals",
                "floor_reference": "the real reference set (protocol `reference`, FD against `fd_against`)"}
    return values | {"protocol": protocol}


def manifold_stage(ctx: StageContext, out: Path) -> dict[str, Any]:
    study, device = ctx.study, ctx.device
    model = load_tokenizer(ctx.input("tokenizer"), device)
    val, train = ctx.split("val"), ctx.split("train")
    distance = build_perceptual(study.training.perceptual.name, **study.training.perceptual.params).to(device)
    # The probes train on the first metrics.probe_train_images train images (splits are written in a seeded
    # random order, so these mix the classes): the float copy is bounded by it, never by the train split.
    n_train = min(len(train), study.metrics.probe_train_images)
    to01 = lambda a: torch.from_numpy(a).float() / 255  # noqa: E731
    results = compute_panel(
        model.encode, model.decode, to01(np.asarray(val.images)), torch.from_numpy(val.labels),
        None if val.segments is None else torch.from_numpy(np.asarray(val.segments)),
        distance=distance, distance_name=distance.name, config=study.metrics,
        train_images=to01(train.images[:n_train]), train_labels=torch.from_numpy(train.labels[:n_train]), split="val",
        device=device,
    )
    protocols = {name: dict(res.protocol) for name, res in results.items()}
    protocols["subset"] = {"probe_train_images": n_train, "how": "the first n images of the train split "
                           "(splits are written in a seeded random order)"}
    flat = flatten_results(results)
    rfid = reconstruction_fidelity(ctx, model)
    protocols["fidelity"] = rfid.pop("protocol")
    flat.update(rfid)

    latents = encode_all(model, val.images[:32], device)
    grid = save_grid(latent_pca_rgb(latents), ctx.run_layout.image("latent_pca"), scale=8)
    write_json(out / layout.MANIFOLD_METRICS, {"values": flat, "protocols": protocols})
    ctx.logger.artifact(out / layout.MANIFOLD_METRICS, "manifold")  # every value and protocol; headline ones become metrics
    if study.tracking.log_images:
        ctx.logger.artifact(grid, "images")
    return flat
