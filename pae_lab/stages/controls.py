"""Score the baseline's images under the controls (analysis.controls) and keep every value.

Per measured run, at the study's one N and with the same scoring as each generator checkpoint
(analysis.set_scores, and beside it analysis.suite_scores: IS, sFID and FD-DINOv2 where their
networks are there): the last checkpoint's samples and the reconstructions of the reference set
blurred at each sigma; a constant decoder (both sets replaced by their mean reconstruction); the
reconstructed held-out images of a fraction of the classes (by their true labels) against the
mean of random subsets of the same size; and the floor (reconstructions of held-out images as the
generated set). Every set, the unchanged one included, is extracted here (the reconstructions with
FD's network alone: the suite never reads them), so its "actual" row is the generation stage's last
reading only when the study's N for FD (`fd_n`) is its number of samples. Runs with regularizers are skipped
unless `evaluation.controls.runs: all`: a control asks what a score rewards, not how a variant fares.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from analysis.adm_files import load_images
from analysis.controls import measure_controls
from analysis.set_scores import set_scores
from analysis.suite_scores import suite_scores
from pae_lab.fsutil import write_json
from pae_lab.plan import layout
from pae_lab.stages.context import StageContext
from pae_lab.stages.manifold import reconstruct
from pae_lab.stages.reference import features, load_reference, load_suite_reference, reference_images, suite_features
from pae_lab.stages.tokenizer import load_tokenizer


def measured(ctx: StageContext) -> bool:
    runs = ctx.study.evaluation.controls.runs
    return runs == "all" or (runs == "baseline" and not ctx.spec.regularizers)


def last_samples(gen_dir: Path) -> torch.Tensor:
    """The generation stage's last images, uint8 [N, 3, H, W] (a folder written before samples.npz holds them as .npy)."""
    if (gen_dir / layout.SAMPLES).is_file() or not (gen_dir / layout.SAMPLES_UNLABELLED).is_file():
        return load_images(gen_dir / layout.SAMPLES)[0]
    return torch.from_numpy(np.load(gen_dir / layout.SAMPLES_UNLABELLED))


def controls_stage(ctx: StageContext, out: Path) -> dict[str, Any]:
    study, device, ev = ctx.study, ctx.device, ctx.study.evaluation
    cfg = ev.controls
    protocol = {**cfg.model_dump(mode="json"), "prdc_k": ev.prdc_k, "n": study.fd_n,
                "compared_with": "the run's last checkpoint; for modes, the mean of mode_draws random subsets of the same size"}
    if not measured(ctx):
        write_json(out / layout.CONTROLS, {"rows": [], "protocol": protocol})
        return {"measured": False}
    cols, n = ev.columns(), study.fd_n
    samples = last_samples(ctx.input("generation"))[:n]  # at the equal N of reconstructions and originals
    real, real_stats = load_reference(ctx.input("reference"))
    real_suite = load_suite_reference(ctx.input("reference"))
    tokenizer = load_tokenizer(ctx.input("tokenizer"), device)
    rows = measure_controls(
        samples, reconstruct(tokenizer, reference_images(study, ctx.split("train"))[0][:n], device, ev.batch_size),
        reconstruct(tokenizer, ctx.split("val").images[:n], device, ev.batch_size), ctx.split("val").labels[:n],
        originals=torch.from_numpy(np.asarray(ctx.split("val").images[:n])), extract=lambda images: suite_features(study, images, device),
        extract_own=lambda images: {"fid": features(study, images, device)},
        score=lambda gen, own: {**set_scores(gen["fid"], real, own["fid"], cols, prdc_k=ev.prdc_k, real_stats=real_stats,
                                             kid_subsets=ev.kid_subsets, seed=ev.sampler.seed),
                                **suite_scores(gen, real_suite, cols)},
        directions={c: cols.direction(c) for c in cols.set_scored() + cols.suite()}, roles=cols.roles(),
        knn_own=list(cols.knn("own").values()), blur_sigmas=cfg.blur_sigmas, mode_keep=cfg.mode_keep, mode_draws=cfg.mode_draws,
        seed=ev.sampler.seed + ctx.seed,  # each run drops its own classes
        progress=lambda done, total: ctx.progress.update("controls", done, total, force=True))
    write_json(out / layout.CONTROLS, {"rows": rows, "protocol": protocol})
    ctx.logger.artifact(out / layout.CONTROLS, "controls")
    return {"measured": True}
