"""Train the latent flow-matching generator of one tokenizer variant; keep EMA weights at eval steps."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pae_lab.data.diskarray import DiskArray
from pae_lab.fsutil import read_json, save_torch, write_json
from pae_lab.plan import layout
from pae_lab.generation.flow import draw_path, flow_matching_loss
from pae_lab.models.latent_norm import LatentNorm
from pae_lab.models.ema import EMA
from pae_lab.models.generator import build_generator
from pae_lab.stages.context import StageContext
from pae_lab.stages.training import TrainLoop, autocast, grad_norm


def ema_path(stage_dir: Path, step: int) -> Path:
    return Path(stage_dir) / layout.ema_weights(step)


class SavedGenerator:
    """A generator stage's model, rebuilt from the shape it recorded, with the EMA weights of any kept step."""

    def __init__(self, study, stage_dir: Path, device: torch.device):
        self.dir, self.device = Path(stage_dir), device
        self.shape = read_json(self.dir / layout.GENERATOR_SHAPE)
        self.eval_steps: list[int] = self.shape["eval_steps"]
        self.latent_shape = (self.shape["in_channels"], self.shape["grid"], self.shape["grid"])
        self.num_classes: int = self.shape["num_classes"]
        self.model = build_generator(study.generator, *self.latent_shape[:2], self.num_classes).to(device).eval()

    def at(self, step: int) -> torch.nn.Module:
        """The model with the EMA weights kept at `step`."""
        self.model.load_state_dict(torch.load(ema_path(self.dir, step), map_location=self.device, weights_only=True))
        return self.model


def generator_shape(ctx: StageContext) -> dict[str, int]:
    """What the generator is built for: latent channels, grid, classes."""
    study = ctx.study
    return {"in_channels": study.tokenizer.latent_channels,
            "grid": study.latent_grid,
            "num_classes": len(ctx.split("train").class_names)}


def generator_stage(ctx: StageContext, out: Path) -> dict[str, Any]:
    cfg, device = ctx.study.generator, ctx.device
    tok_dir = ctx.input("tokenizer")
    norm = LatentNorm.load(tok_dir / layout.LATENT_NORM)  # the tokenizer run's own statistics
    latents = DiskArray(tok_dir / layout.latents("train"))  # streamed: each step reads and normalises its batch
    labels = torch.from_numpy(ctx.split("train").labels).long()
    shape = generator_shape(ctx)
    latent_shape = latents.shape[1:]

    torch.manual_seed(ctx.spec.seed)
    model = build_generator(cfg, **shape).to(device)
    ema = EMA(model, cfg.ema_decay)
    trained = ctx.dist.wrap(model)  # DDP over several processes; `model` itself is what EMA and checkpoints hold
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(cfg.warmup, 1)))
    ctx.logger.params({"generator.params": sum(p.numel() for p in model.parameters())})

    def step_fn(step: int) -> dict[str, float]:
        idx = torch.randint(0, len(latents), (cfg.batch_size,))
        t, x0 = draw_path((cfg.batch_size, *latent_shape), device, time_sampling=cfg.time_sampling,
                          logit_mean=cfg.logit_mean, logit_std=cfg.logit_std)
        idx, t, x0 = ctx.dist.shard(idx, t, x0)
        z = norm.normalize(torch.from_numpy(latents[idx]))
        with autocast(device):
            loss = flow_matching_loss(trained, z.to(device), labels[idx].to(device), path=(t, x0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm_before = grad_norm(model)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        ema.update(model)
        return {"loss/total": loss.item(), "grad_norm/total": norm_before, "lr": sched.get_last_lr()[0]}

    eval_steps = set(cfg.eval_schedule())

    def keep_eval_weights(done: int) -> None:
        if done in eval_steps and ctx.dist.is_main:
            save_torch(ema_path(out, done), ema.module.state_dict())

    loop = TrainLoop("generator", out, {"model": model, "ema": ema, "optimizer": opt, "scheduler": sched}, cfg.steps,
                     seed=ctx.spec.seed, checkpoint_every=max(1, min(cfg.steps // 4, 100)), log_every=10,
                     items_per_step=cfg.batch_size, logger=ctx.logger, progress=ctx.progress,
                     after_step=keep_eval_weights, dist=ctx.dist)
    last = loop.run(step_fn)
    if ctx.dist.is_main:
        write_json(out / layout.GENERATOR_SHAPE, {**shape, "eval_steps": sorted(eval_steps)})
    return {k: v for k, v in last.items() if k.startswith(("loss/", "throughput/"))} | {"resumed_from_step": loop.resumed_from}
