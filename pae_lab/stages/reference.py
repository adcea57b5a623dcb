"""Shared evaluation stages, computed once per study instead of inside the first jobs:

- `reference_stage`: FD features of the real reference set (the first N training images) and of
  the first N held-out images, and the sampling floor FD/KD(held-out real, reference) at that N;
  the reference's features of the scores beside FD (sFID's with Inception, DINOv2's with its
  weights: analysis.suite_scores).
  Every run compares its generated images and reconstructions with these features. The reference
  images themselves are kept in ADM's format, so any sample file can be scored against them.
- `teacher_stage`: the teacher's ceiling (analysis.teacher) -- SSC, GSQ, probes and coherence of
  the raw prior features, the refined target and pooled pixels -- on the panel's held-out images.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from analysis.adm_files import save_images
from analysis.fidelity import extract_features, fd_kd_named, kid_subset, shared_network_warning
from analysis.suite_scores import Suite
from analysis.teacher import gradient_energy, pooled_pixels, position, teacher_ceiling
from pae_lab.fsutil import save_npy, write_json
from pae_lab.plan import layout
from pae_lab.config.schema import StudyConfig
from pae_lab.stages.context import StageContext

def extractor_kwargs(study: StudyConfig) -> dict[str, Any]:
    ev = study.evaluation
    return {"extractor": ev.extractor, "inception_weights": ev.inception_weights}


# Images per extractor batch: the extractor's 224 / 299 px activations, not the images, bound the FD step's
# memory (a 32 px job peaked at 2.04 GB with 64 per batch, 1.15 GB with 16).
FD_BATCH = 16


def features(study: StudyConfig, images_u8: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor:
    images = torch.as_tensor(images_u8)
    return extract_features(images, batch_size=FD_BATCH, device=device, **extractor_kwargs(study))


def load_features(stage_dir: Path, name: str) -> torch.Tensor:
    return torch.from_numpy(np.load(Path(stage_dir) / name)).double()


SUITE_REFERENCE_ROLES = ("sfid", "dinov2")  # the suite's features the reference stage keeps beside FD's


def suite(study: StudyConfig) -> Suite:
    """The networks that score the study's sets: its extractor, and DINOv2 when its weights are named."""
    ev = study.evaluation
    return Suite(ev.extractor, ev.inception_weights, ev.dinov2_weights, ev.dinov2_model)


def suite_features(study: StudyConfig, images_u8: torch.Tensor | np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
    """Every feature set of the suite (FD's as "fid") of some images, each network run once."""
    return suite(study).features(torch.as_tensor(images_u8), batch_size=FD_BATCH, device=device)


def load_suite_reference(stage_dir: Path) -> dict[str, torch.Tensor]:
    """The reference stage's suite features, by role, those it kept."""
    return {role: load_features(stage_dir, layout.reference_features(role)) for role in SUITE_REFERENCE_ROLES
            if (Path(stage_dir) / layout.reference_features(role)).is_file()}


def prior_network(study: StudyConfig) -> str:
    """The prior's network: its timm model where it names one ("vit_base_patch14_dinov2.lvd142m"), else its name."""
    return str(study.prior.params.get("model", study.prior.name))


def fidelity_protocol(study: StudyConfig) -> dict[str, Any]:
    """What every FD/KD column of the study means and how it was computed (stored beside the values)."""
    cols = study.evaluation.columns()
    warning = shared_network_warning(study.evaluation.extractor, study.evaluation.inception_weights,
                                     prior=prior_network(study), perceptual=study.training.perceptual.name)
    scores = suite(study)
    return {"n": study.fd_n, "num_samples_asked": study.evaluation.num_samples, "n_lowered": study.fd_n_note(), "reference": "first n train images",
            "heldout": "first n val images", "columns": cols.meanings(), "extractor_shares_network": warning,
            "dinov2_shares_network": scores.shared_network(prior=prior_network(study), perceptual=study.training.perceptual.name),
            "suite": scores.protocol(),
            "kid_subsets": study.evaluation.kid_subsets, "kid_subset_size": kid_subset(study.fd_n, study.fd_n)}


def reference_stage(ctx: StageContext, out: Path) -> dict[str, Any]:
    study, device = ctx.study, ctx.device
    n = study.fd_n
    cols = study.evaluation.columns()
    train = ctx.split("train")
    ref_sets = suite_features(study, train.images[:n], device)
    ref = ref_sets["fid"]
    for role in set(SUITE_REFERENCE_ROLES) & set(ref_sets):
        save_npy(out / layout.reference_features(role), ref_sets[role].numpy())
    save_images(out / layout.REFERENCE_IMAGES, np.asarray(train.images[:n]), train.labels[:n])  # for `pae-lab evaluate`
    held = features(study, ctx.split("val").images[:n], device)
    save_npy(out / layout.REFERENCE_FEATURES, ref.numpy())
    save_npy(out / layout.HELDOUT_FEATURES, held.numpy())
    noise = fd_kd_named(held, ref, cols.noise_fd, cols.noise_kd, kid_subsets=study.evaluation.kid_subsets,
                        seed=study.evaluation.sampler.seed)
    protocol = fidelity_protocol(study)
    for line in (protocol["extractor_shares_network"], protocol["dinov2_shares_network"], *protocol["suite"]["skipped"]):
        if line:
            warnings.warn(line, stacklevel=2)
    write_json(out / layout.FIDELITY_PROTOCOL, protocol)
    return {**noise, "n": n, "warning": protocol["extractor_shares_network"]}


def stage_array(ctx: StageContext, stage: str, name: Callable[[str], str]) -> Callable[[str, int | None], torch.Tensor]:
    """A feature map a stage this one reads keeps per split, as (split, first n) -> float32 [n, C, g, g]."""
    return lambda split, n: torch.from_numpy(np.asarray(ctx.array(stage, name(split))[:n], np.float32))


def ceiling(ctx: StageContext, sources: dict[str, Callable[[str, int | None], torch.Tensor]]) -> dict[str, dict[str, float]]:
    """The teacher's ceiling metrics (analysis.teacher) of each source's feature maps: every held-out
    image, and as many train images as the manifold stage's probes fit on (bounded memory)."""
    val, train = ctx.split("val"), ctx.split("train")
    n_train = min(len(train), ctx.study.metrics.probe_train_images)
    segments = None if val.segments is None else np.asarray(val.segments)
    pairs = {name: (read("val", None), read("train", n_train)) for name, read in sources.items()}
    return teacher_ceiling(pairs, val.labels, train.labels[:n_train], segments, ctx.study.metrics)


def teacher_sources(ctx: StageContext) -> dict[str, Callable[[str, int | None], torch.Tensor]]:
    """The teacher's rows, per split: the raw prior and the refined target, and the controls that use
    no network (analysis.teacher): pooled pixels, gradient energy, position."""
    grid = ctx.study.latent_grid
    images = lambda split, n: np.asarray(ctx.split(split).images[:n])  # noqa: E731
    return {"raw_prior": stage_array(ctx, "prior", layout.prior_features),
            "refined": stage_array(ctx, "refine", layout.refined_targets),
            "pooled_pixels": lambda split, n: pooled_pixels(images(split, n), grid),
            "gradient_energy": lambda split, n: gradient_energy(images(split, n), grid),
            "position": lambda split, n: position(len(ctx.split(split).images[:n]), grid)}


def teacher_stage(ctx: StageContext, out: Path) -> dict[str, Any]:
    study = ctx.study
    rows = ceiling(ctx, teacher_sources(ctx))
    write_json(out / layout.TEACHER_CEILING, {"rows": rows, "prior": study.prior.name, "grid": study.latent_grid})
    return {f"{name}/{k}": v for name, row in rows.items() for k, v in row.items() if "_" not in k}
