"""Stages shared by every run of a study: the data, the frozen prior features, the refined prior."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from pae_lab.data import build_dataset
from pae_lab.fsutil import save_npy, save_torch
from pae_lab.models.refiner import Refiner, channel_stats, refine_loss
from pae_lab.priors import build_prior, cache_features
from pae_lab.stages.context import StageContext, split_file
from pae_lab.training import TrainLoop

SPLITS = ("train", "val")


def data_stage(ctx: StageContext, out: Path) -> dict[str, Any]:
    cfg = ctx.study.data
    sizes = {"train": cfg.train_size, "val": cfg.val_size}
    summary: dict[str, Any] = {}
    for split in SPLITS:
        images = build_dataset(cfg.name, resolution=cfg.resolution, size=sizes[split], split=split, seed=cfg.seed, **cfg.params)
        images.save(split_file(out, split))
        summary[f"{split}_digest"] = images.digest
        summary[f"{split}_size"] = len(images.labels)
        summary["num_classes"] = len(images.class_names)
        summary["has_segments"] = images.segments is not None
    return summary


def prior_stage(ctx: StageContext, out: Path) -> dict[str, Any]:
    """Frozen VFM features at the latent grid, computed once per (prior, dataset)."""
    study = ctx.study
    prior = build_prior(study.prior.name, **study.prior.params).to(ctx.device)
    grid = study.latent_grid
    for split in SPLITS:
        images = ctx.split(split)
        if getattr(prior, "needs_annotations", False):  # the oracle control reads labels and segments
            save_npy(out / f"features_{split}.npy", prior.annotated_features(images, grid))
            continue
        cache_features(prior, images.images, grid, study.prior.batch_size, out / f"features_{split}.npy")
    return {"dim": int(prior.dim), "grid": grid, "prior": study.prior.name}


def _pca_targets(train: np.ndarray, splits: dict[str, np.ndarray], channels: int) -> dict[str, np.ndarray]:
    """Raw-prior baseline: project VFM tokens on their top principal directions."""
    tokens = torch.from_numpy(train).float().permute(0, 2, 3, 1).reshape(-1, train.shape[1])
    mean = tokens.mean(0)
    _, _, v = torch.pca_lowrank(tokens - mean, q=channels, center=False)
    out = {}
    for split, feats in splits.items():
        t = torch.from_numpy(feats).float().permute(0, 2, 3, 1)
        out[split] = ((t - mean) @ v[:, :channels]).permute(0, 3, 1, 2).contiguous().numpy()
    return out


def refine_stage(ctx: StageContext, out: Path) -> dict[str, Any]:
    """Learn the projector P (VFM -> latent width) and deprojector Q; freeze Z_T = P(H) as targets."""
    study, device = ctx.study, ctx.device
    cfg = study.refine
    feats = {split: ctx.array("prior", f"features_{split}.npy") for split in SPLITS}
    channels = study.tokenizer.latent_channels
    if not cfg.enabled:
        targets = _pca_targets(feats["train"], feats, channels)
        for split, t in targets.items():
            save_npy(out / f"targets_{split}.npy", t.astype(np.float16))
        return {"kind": "pca", "channels": channels}
    torch.manual_seed(cfg.seed)
    refiner = Refiner(feats["train"].shape[1], channels, depth=cfg.depth).to(device)
    opt = torch.optim.AdamW(refiner.parameters(), lr=cfg.lr)
    train = torch.from_numpy(feats["train"]).float()
    mean, std = channel_stats(train) if cfg.standardize else (torch.zeros(1), torch.ones(1))
    train = (train - mean) / std

    def step_fn(step: int) -> dict[str, float]:
        idx = torch.randint(0, len(train), (cfg.batch_size,))
        total, terms = refine_loss(refiner, train[idx].to(device), l_rep=cfg.l_rep, l_gram=cfg.l_gram, lowpass=cfg.lowpass)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        return {"loss/total": float(total.detach()), **{f"loss/{k}": float(v) for k, v in terms.items()}}

    loop = TrainLoop("refine", out, {"refiner": refiner, "optimizer": opt}, cfg.steps, seed=cfg.seed,
                     checkpoint_every=max(cfg.steps // 4, 1), log_every=10, items_per_step=cfg.batch_size,
                     logger=ctx.logger, progress=ctx.progress)
    last = loop.run(step_fn)
    refiner.eval()
    with torch.no_grad():
        for split, f in feats.items():
            t = torch.cat([refiner.targets(((torch.from_numpy(f[i:i + 256]).float() - mean) / std).to(device)).cpu()
                           for i in range(0, len(f), 256)])
            save_npy(out / f"targets_{split}.npy", t.numpy().astype(np.float16))
    save_torch(out / "refiner.pt", {"state": refiner.state_dict(), "mean": mean, "std": std})
    return {"kind": "refined", "channels": channels, "standardized": cfg.standardize,
            **{k: v for k, v in last.items() if k.startswith("loss/")}}
