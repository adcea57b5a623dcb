"""The guidance sweep: each tokenizer at the classifier-free guidance scale that suits it, and without.

Papers report generation with and without guidance, the scale tuned per tokenizer; one study-wide
`cfg_scale` favours whichever tokenizer it happens to suit. Each scale of
`evaluation.sampler.cfg_grid` is scored (gFD, gKD) on the final EMA checkpoint at `cfg_grid_samples`
images, all with the same noise and labels, and the scale with the lowest gFD, the score papers sweep
on, is scored again at the full N, beside the score without guidance (scale 1): the generation
stage's own when it sampled at scale 1. FD's small-N bias shrinks with the samples' spread, so below
as many images as features the sweep favours strong guidance (StudyConfig.guidance_note); KD, though
unbiased, ranks another divergence, so it cannot stand in for FD's choice.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from analysis.fidelity import fd_kd_named
from pae_lab.fsutil import read_json, write_json
from pae_lab.generation.samplers import generate_latents
from pae_lab.models.latent_norm import LatentNorm
from pae_lab.plan import layout
from pae_lab.stages.context import StageContext
from pae_lab.stages.generation import decode_all
from pae_lab.stages.generator import SavedGenerator
from pae_lab.stages.reference import features, load_reference
from pae_lab.stages.tokenizer import load_tokenizer

UNGUIDED = 1.0  # the scale at which the conditional model alone samples


def guidance_stage(ctx: StageContext, out: Path) -> dict[str, Any]:
    study, device, ev = ctx.study, ctx.device, ctx.study.evaluation
    sampler = ev.sampler
    if sampler.cfg_grid is None:  # a grid without class dropout is refused at load (StudyConfig)
        write_json(out / layout.GUIDANCE, {"protocol": {"measured": False, "why": "evaluation.sampler.cfg_grid is not set"}})
        return {}
    cols = ev.columns()
    tok_dir = ctx.input("tokenizer")
    tokenizer, norm = load_tokenizer(tok_dir, device), LatentNorm.load(tok_dir / layout.LATENT_NORM)
    saved = SavedGenerator(study, ctx.input("generator"), device)
    final = saved.eval_steps[-1]
    model = saved.at(final)
    real, real_stats = load_reference(ctx.input("reference"))

    def generated(scale: float, n: int):
        latents, _ = generate_latents(model, n, saved.latent_shape, sampler.model_copy(update={"cfg_scale": scale}),
                                      num_classes=saved.num_classes, device=device)
        return features(study, decode_all(tokenizer, norm, latents, device, ev.batch_size), device)

    grid = list(sampler.cfg_grid)
    kw = {"kid_subsets": ev.kid_subsets, "seed": sampler.seed, "stats": real_stats}
    rows = []
    for i, scale in enumerate(grid):
        ctx.progress.update("guidance", i, len(grid) + 2, force=True)
        scores = fd_kd_named(generated(scale, sampler.cfg_grid_samples), real, cols.fd, cols.kd, **kw)
        rows.append({"cfg_scale": scale, **scores})
    best = min(rows, key=lambda row: row[cols.fd])["cfg_scale"]  # the score papers sweep on (see the module's caveat)
    ctx.progress.update("guidance", len(grid), len(grid) + 2, force=True)
    reused = sampler.cfg_scale == UNGUIDED
    if reused:  # the generation stage sampled this checkpoint at scale 1 with the same noise and labels
        last = read_json(ctx.input("generation") / layout.CONVERGENCE)["rows"][-1]
        unguided = {cols.unguided_fd: last[cols.fd], cols.unguided_kd: last[cols.kd], f"{cols.unguided_kd}_std": last[f"{cols.kd}_std"]}
    else:
        unguided = fd_kd_named(generated(UNGUIDED, study.sample_n), real, cols.unguided_fd, cols.unguided_kd, **kw)
    if best == UNGUIDED:  # the same images as the unguided score
        guided = {cols.guided_fd: unguided[cols.unguided_fd], cols.guided_kd: unguided[cols.unguided_kd],
                  f"{cols.guided_kd}_std": unguided[f"{cols.unguided_kd}_std"]}
    else:
        guided = fd_kd_named(generated(best, study.sample_n), real, cols.guided_fd, cols.guided_kd, **kw)
    ctx.progress.update("guidance", len(grid) + 2, len(grid) + 2, force=True)
    summary = {cols.cfg_best: best, **guided, **unguided}
    protocol = {"measured": True, "generator_step": final, "grid": grid, "grid_samples": sampler.cfg_grid_samples,
                "n": study.sample_n, "chosen_by": f"lowest {cols.fd} at grid_samples images",
                "small_n": study.guidance_note(),
                "unguided": "the generation stage's last row" if reused else "sampled here at scale 1"}
    write_json(out / layout.GUIDANCE, {"rows": rows, "best": best, "summary": summary, "protocol": protocol})
    ctx.logger.metrics("guidance", summary, final, prefixed=False)  # results.csv's names, comparable across runs in MLflow
    ctx.logger.artifact(out / layout.GUIDANCE, "guidance")
    return summary
