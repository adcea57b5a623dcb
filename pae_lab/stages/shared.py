"""Stages shared by every run of a study: the data, the frozen prior features, the refined prior.

The refined prior trains data-parallel when the shared stages run as a job of several processes
(pae_lab.execution.shared_job); the data and prior stages run on rank 0 alone."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from pae_lab.data import build_dataset
from pae_lab.data.diskarray import DiskArray, NpyWriter
from pae_lab.data.splits import DiskSplit, write_imageset, write_split
from pae_lab.data.stream import STREAMING, stream_loader
from pae_lab.fsutil import save_npy, save_torch
from pae_lab.plan import layout
from pae_lab.models.refiner import Refiner, channel_stats, refine_loss
from pae_lab.priors import build_prior, cache_features
from pae_lab.stages.context import StageContext, split_file
from pae_lab.stages.training import TrainLoop

SPLITS = ("train", "val")


STREAM_BATCH = 256  # images decoded per DataLoader batch while a streamed split is written


def _write_one(ctx: StageContext, split: str, size: int, out: Path) -> DiskSplit:
    """A streaming dataset goes file -> DataLoader workers -> disk; an in-memory one is built, then written."""
    cfg = ctx.study.data
    kwargs = dict(resolution=cfg.resolution, size=size, split=split, seed=cfg.seed, **cfg.params)
    if cfg.name not in STREAMING:
        return write_imageset(split_file(out, split), build_dataset(cfg.name, **kwargs))
    dataset, classes = STREAMING[cfg.name](**kwargs)
    loader = stream_loader(dataset, STREAM_BATCH, workers=cfg.workers)
    progress = ctx.progress
    report = (lambda done, total: progress.update(f"data:{split}", done, total)) if progress else None
    return write_split(split_file(out, split), loader, len(dataset), cfg.resolution, classes,
                       has_segments=cfg.params.get("masks_root") is not None, progress=report)


def data_stage(ctx: StageContext, out: Path) -> dict[str, Any]:
    cfg = ctx.study.data
    sizes = {"train": cfg.train_size, "val": cfg.val_size}
    summary: dict[str, Any] = {}
    for split in SPLITS:
        images = _write_one(ctx, split, sizes[split], out)
        summary[f"{split}_digest"] = images.digest
        summary[f"{split}_size"] = len(images.labels)
        summary["num_classes"] = len(images.class_names)
        summary["has_segments"] = images.segments is not None
    return summary


def prior_stage(ctx: StageContext, out: Path) -> dict[str, Any]:
    """Frozen VFM features at the latent grid, computed once per (prior, dataset), for the study's
    prior and each regularizer's own teacher."""
    study = ctx.study
    grid, summary = study.latent_grid, {}
    for part in study.prior.teachers():
        name, params = study.prior.part(part)
        prior = build_prior(name, **params).to(ctx.device)
        for split in SPLITS:
            images, path = ctx.split(split), out / layout.prior_features(split, part)
            if getattr(prior, "needs_annotations", False):  # the oracle control reads labels and segments
                save_npy(path, prior.annotated_features(images, grid))
                continue
            cache_features(prior, images.images, grid, study.prior.batch_size, path)
        summary.update({"dim": int(prior.dim), "prior": name} if part is None else {f"{part}/dim": int(prior.dim), f"{part}/prior": name})
    return {**summary, "grid": grid}


PCA_FIT_IMAGES = 2048  # the raw-prior PCA is fitted on the first this many train feature maps
CHUNK = 256  # feature maps per chunk when targets are written


def _write_targets(path: Path, feats: DiskArray, channels: int, fn) -> None:
    """`fn(float features [b, D, g, g]) -> targets [b, channels, g, g]` over every chunk, streamed to float16 .npy."""
    with NpyWriter(path, (len(feats), channels, *feats.shape[2:]), np.float16) as out:
        for i in range(0, len(feats), CHUNK):
            out.write(fn(torch.from_numpy(feats[i:i + CHUNK]).float()))


def _standardizer(train: DiskArray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean / std of the train features, from the first PCA_FIT_IMAGES maps (bounded memory)."""
    return channel_stats(torch.from_numpy(train[:PCA_FIT_IMAGES]).float())


def _pca_targets(feats: dict[str, DiskArray], channels: int, whiten: bool, write) -> dict[str, Any]:
    """Raw-prior baseline: project VFM tokens on their top principal directions (whitened: each
    divided by its standard deviation)."""
    train = feats["train"]
    tokens = torch.from_numpy(train[:PCA_FIT_IMAGES]).float().permute(0, 2, 3, 1).reshape(-1, train.shape[1])
    mean = tokens.mean(0)
    centred = (tokens - mean).double()
    variance, vectors = torch.linalg.eigh(centred.T @ centred / (len(tokens) - 1))  # exact, deterministic, ascending
    variance, basis = variance.flip(0)[:channels], vectors.flip(1)[:, :channels]
    basis = basis * torch.sign(basis[basis.abs().argmax(0), torch.arange(basis.shape[1])])  # a sign per direction
    if whiten:
        basis = basis / variance.clamp_min(1e-12).sqrt()
    basis = basis.float()
    project = lambda t: ((t.permute(0, 2, 3, 1) - mean) @ basis).permute(0, 3, 1, 2)  # noqa: E731
    for split, f in feats.items():
        write(split, f, project)
    return {"kind": "pca_whitened" if whiten else "pca", "pca_fit_images": min(PCA_FIT_IMAGES, len(train))}


def _refined_targets(ctx: StageContext, feats: dict[str, DiskArray], channels: int, part: str | None,
                     out: Path, write) -> dict[str, Any]:
    """Learn the projector P (VFM -> latent width) and deprojector Q; freeze Z_T = P(H) as targets."""
    cfg, device = ctx.study.refine, ctx.device
    torch.manual_seed(cfg.seed)
    refiner = Refiner(feats["train"].shape[1], channels, depth=cfg.depth).to(device)
    trained = ctx.dist.wrap(refiner)  # DDP in a job of several processes; `refiner` is what is saved
    opt = torch.optim.AdamW(refiner.parameters(), lr=cfg.lr)
    train = feats["train"]
    mean, std = _standardizer(train) if cfg.standardize else (torch.zeros(1), torch.ones(1))
    standardize = lambda t: (t - mean) / std  # noqa: E731

    def step_fn(step: int) -> dict[str, float]:
        (idx,) = ctx.dist.shard(torch.randint(0, len(train), (cfg.batch_size,)))
        batch = standardize(torch.from_numpy(train[idx]).float()).to(device)
        total, terms = refine_loss(trained, batch, l_rep=cfg.l_rep, l_gram=cfg.l_gram, lowpass=cfg.lowpass)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        return {"loss/total": float(total.detach()), **{f"loss/{k}": float(v) for k, v in terms.items()}}

    loop = TrainLoop("refine" if part is None else f"refine_{part}", out, {"refiner": refiner, "optimizer": opt},
                     cfg.steps, seed=cfg.seed, checkpoint_every=max(cfg.steps // 4, 1), log_every=10,
                     items_per_step=cfg.batch_size, logger=ctx.logger, progress=ctx.progress, dist=ctx.dist,
                     checkpoint=layout.checkpoint(part))
    last = loop.run(step_fn)
    if not ctx.dist.is_main:
        return {}  # rank 0 alone writes the targets; the others wait for it at the stage's barrier
    refiner.eval()
    with torch.no_grad():
        for split, f in feats.items():
            write(split, f, lambda t: refiner.targets(standardize(t).to(device)).cpu())
    save_torch(out / layout.refiner(part), {"state": refiner.state_dict(), "mean": mean, "std": std})
    return {"kind": "refined", "standardized": cfg.standardize, **{k: v for k, v in last.items() if k.startswith("loss/")}}


def refine_stage(ctx: StageContext, out: Path) -> dict[str, Any]:
    """The targets each teacher part's regularizers align to: refined (learned), or PCA (`refine.enabled: false`)."""
    study = ctx.study
    channels = study.tokenizer.latent_channels
    summary = {"channels": channels}
    for part in study.prior.teachers():
        feats = {split: ctx.array("prior", layout.prior_features(split, part)) for split in SPLITS}
        write = lambda split, f, fn, part=part: _write_targets(out / layout.refined_targets(split, part), f, channels, fn)  # noqa: E731
        if not study.refine.enabled:
            done = _pca_targets(feats, channels, study.refine.whiten, write) if ctx.dist.is_main else {}
        else:
            done = _refined_targets(ctx, feats, channels, part, out, write)
        summary.update(done if part is None else {f"{part}/{k}": v for k, v in done.items()})
    return summary
