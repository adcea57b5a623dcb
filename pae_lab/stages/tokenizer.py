"""Train one tokenizer variant, then store what later stages need: weights, latents, normalisation."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pae_lab.data.diskarray import DiskArray, NpyWriter
from pae_lab.fsutil import save_torch
from pae_lab.plan import layout
from pae_lab.data.images import save_grid, side_by_side
from pae_lab.models.latent_norm import LatentNorm
from pae_lab.losses.perceptual import build_perceptual
from pae_lab.losses.reconstruction import reconstruction_terms
from pae_lab.losses.regularizers import RegContext
from pae_lab.architectures import architecture, build_tokenizer
from pae_lab.stages.context import StageContext
from pae_lab.stages.training import TrainLoop, autocast, batched, grad_norm
from pae_lab.variants import Variant

LATENT_CHUNK = 1024  # images encoded per chunk when the latents are written


def load_tokenizer(stage_dir: Path, device: torch.device | str = "cpu") -> nn.Module:
    """The stage's tokenizer: any architecture; a pretrained (external) one is reloaded from its own files."""
    blob = torch.load(Path(stage_dir) / layout.TOKENIZER_MODEL, map_location="cpu", weights_only=False)
    model = build_tokenizer(blob["config"])
    if blob["state"] is not None:
        model.load_state_dict(blob["state"])
    return model.to(device).eval()


def encode_all(model: nn.Module, images_u8, device: torch.device, batch: int = 256) -> torch.Tensor:
    def encode(x: torch.Tensor) -> torch.Tensor:
        with autocast(device):
            return model.encode(x.float() / 255).float()

    return batched(encode, images_u8, device, batch)


def tokenizer_stage(ctx: StageContext, out: Path) -> dict[str, Any]:
    """Train (or, for a pretrained architecture, load) the tokenizer, then export weights and latents."""
    torch.manual_seed(ctx.seed)
    model = build_tokenizer(ctx.study.tokenizer).to(ctx.device)
    trainable = architecture(ctx.study.tokenizer).trainable
    shipped = None
    if hasattr(model, "probe"):  # a loaded (external) model: its shape contract at the study's resolution,
        model.probe(ctx.study.data.resolution, ctx.device)
        shipped = model.shipped_norm()  # and its shipped statistics, read before any latent is written
    summary = train_tokenizer(ctx, model, out) if trainable else {"pretrained": True}
    if not ctx.dist.is_main:
        return summary  # rank 0 alone exports; the others wait for it at the stage's barrier
    model.eval()
    save_torch(out / layout.TOKENIZER_MODEL, {"config": ctx.study.tokenizer.model_dump(mode="json"),
                                  "state": model.state_dict() if trainable else None})
    export_latents(ctx, model, out, shipped)
    return summary


def teacher_of(regs: nn.ModuleDict, parts) -> dict[str, str | None]:
    """Each regularizer that aligns to a target -> its teacher: its own part (prior.parts), else the study's prior (None)."""
    return {name: (name if name in parts else None) for name, reg in regs.items() if "target" in reg.needs}


class TokenizerObjective(nn.Module):
    """One step's loss as one module, so DDP's forward averages the gradients of all it holds
    (encoder, decoder, the regularizers' heads); the frozen perceptual network comes as an argument."""

    def __init__(self, model: nn.Module, regs: nn.ModuleDict, weights: dict[str, float], cfg):
        super().__init__()
        self.model, self.regs, self.weights, self.cfg = model, regs, weights, cfg

    def forward(self, x, targets: dict[str, torch.Tensor], vfm, perceptual, step: int, ramp: float):
        """`targets`: each regularizer's refined target rows (its own teacher part, or the study's prior's)."""
        cfg, model = self.cfg, self.model
        z = model.encode(x)
        x_rec = model.decode(z)
        total, terms, rec_features = reconstruction_terms(x, x_rec, perceptual, l1_weight=cfg.l1_weight,
                                                          perceptual_weight=cfg.perceptual.weight)
        rctx = RegContext(x=x, z=z, x_rec=x_rec, decode=model.decode, vfm=vfm, perceptual=perceptual, step=step,
                          x_rec_features=rec_features)
        for name, reg in self.regs.items():
            value = reg(replace(rctx, target=targets.get(name)))
            terms[name] = value.detach()
            total = total + ramp * self.weights[name] * value
        return total, terms, x_rec


def train_tokenizer(ctx: StageContext, model: nn.Module, out: Path) -> dict[str, Any]:
    study, device = ctx.study, ctx.device
    cfg = study.training
    train = ctx.split("train")
    images = train.images  # on disk: each step reads its batch
    targets = {part: ctx.array("refine", layout.refined_targets("train", part))  # float16 on disk, float32 per batch
               for part in study.prior.teachers()}
    vfm = ctx.array("prior", layout.prior_features("train"))
    rows = lambda array, idx: torch.from_numpy(array[idx]).to(device, non_blocking=True).float()  # noqa: E731

    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    perceptual = build_perceptual(cfg.perceptual.name, **cfg.perceptual.params).to(device)
    variant = Variant(name=ctx.spec.variant, regularizers=ctx.spec.regularizers)
    regs = variant.build(latent_channels=study.tokenizer.latent_channels, vfm_dim=vfm.shape[1]).to(device)
    aligned = teacher_of(regs, study.prior.parts)
    objective = ctx.dist.wrap(TokenizerObjective(model, regs, variant.weights, cfg))
    params = list(model.parameters()) + list(regs.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    ctx.logger.params({"tokenizer.params": sum(p.numel() for p in model.parameters())})

    def step_fn(step: int) -> dict[str, float]:
        ramp = min(1.0, (step + 1) / cfg.regularizer_warmup) if cfg.regularizer_warmup else 1.0
        (idx,) = ctx.dist.shard(torch.randint(0, len(images), (cfg.batch_size,)))
        x = rows(images, idx) / 255
        with autocast(device):
            read = {part: rows(targets[part], idx) for part in set(aligned.values())}
            total, terms, x_rec = objective(x, {name: read[part] for name, part in aligned.items()},
                                            rows(vfm, idx), perceptual, step, ramp)
        opt.zero_grad(set_to_none=True)
        total.backward()
        metrics = {"loss/total": total.item(), **{f"loss/{k}": float(v) for k, v in terms.items()},
                   "grad_norm/encoder": grad_norm(model.encoder), "grad_norm/decoder": grad_norm(model.decoder),
                   "stats/rec_std": float(x_rec.detach().float().std(dim=(1, 2, 3)).mean()), "stats/reg_ramp": ramp}
        if len(regs):
            metrics["grad_norm/regularizers"] = grad_norm(regs)
        metrics["grad_norm/total"] = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
        opt.step()
        return metrics

    loop = TrainLoop("tokenizer", out, {"model": model, "regularizers": regs, "optimizer": opt}, cfg.steps,
                     seed=ctx.spec.seed, checkpoint_every=cfg.checkpoint_every, log_every=cfg.log_every,
                     items_per_step=cfg.batch_size, logger=ctx.logger, progress=ctx.progress, dist=ctx.dist)
    last = loop.run(step_fn)
    summary = {k: v for k, v in last.items() if k.startswith(("loss/", "stats/", "throughput/"))}
    summary["resumed_from_step"] = loop.resumed_from
    if summary.get("stats/rec_std", 1.0) < 0.01:
        summary["warning"] = "reconstructions are nearly constant: training may have collapsed"
        ctx.logger.tags({"pae.collapse": "suspected"})
    return summary


def export_latents(ctx: StageContext, model: nn.Module, out: Path, shipped: LatentNorm | None = None) -> None:
    """Latents of both splits, their normalisation (fitted, or the one a checkpoint ships), and a reconstruction grid."""
    device = ctx.device
    for split in ("train", "val"):
        images = ctx.split(split).images
        first = encode_all(model, images[:1], device)
        with NpyWriter(out / layout.latents(split), (len(images), *first.shape[1:]), np.float32) as writer:
            for i in range(0, len(images), LATENT_CHUNK):  # streamed: the latents never sit in memory whole
                writer.write(encode_all(model, images[i:i + LATENT_CHUNK], device))
    train = DiskArray(out / layout.latents("train"))
    norm = shipped or LatentNorm.fit_batches(torch.from_numpy(train[i:i + LATENT_CHUNK])
                                             for i in range(0, len(train), LATENT_CHUNK))
    norm.save(out / layout.LATENT_NORM)

    val = torch.from_numpy(ctx.split("val").images[:16]).float() / 255
    with torch.no_grad():
        rec = model.decode(torch.from_numpy(DiskArray(out / layout.latents("val"))[:16]).to(device)).float().cpu()
    grid = save_grid(side_by_side(val, rec), ctx.run_layout.image("reconstructions"))
    if ctx.study.tracking.log_images:
        ctx.logger.artifact(grid, "images")
