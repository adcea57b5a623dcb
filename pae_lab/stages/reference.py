"""Shared evaluation stages, computed once per study instead of inside the first jobs:

- `reference_stage`: FD features of the real reference set (the first N training images, or the
  ADM file `evaluation.reference_images` names) and of the first N held-out images, and the sampling
  floor FD/KD(held-out real, reference) at the held-out N; FD (and sFID) against
  `evaluation.reference_stats`' mu / sigma (mu_s / sigma_s) when the study names them (the whole data
  set's, as FID-50K is quoted); the reference's features of the scores beside FD (sFID's with
  Inception, DINOv2's with its weights: analysis.suite_scores).
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

from analysis.adm_files import (IMAGES, MU, SIGMA, SPATIAL, contents, holds_statistics, image_size, load_images,
                                load_statistics, save_images)
from analysis.fidelity import (FIDELITY_EXTRACTORS, Reference, extract_features, fd_kd_named, kid_subset,
                               resolve_extractor, shared_network_warning)
from analysis.inception_spatial import SPATIAL_DIM
from analysis.suite_scores import Suite
from analysis.result import MetricResult
from analysis.teacher import flat_rows, gradient_energy, pixel_patches, pooled_pixels, position, teacher_results
from pae_lab.fsutil import read_json, save_npy, write_json
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


def load_suite_reference(stage_dir: Path) -> dict[str, Reference]:
    """The reference stage's suite features, by role, those it kept; sFID's as the named statistics
    file's (mu_s, sigma_s) when it held them."""
    found: dict[str, Reference] = {role: load_features(stage_dir, layout.reference_features(role)) for role in SUITE_REFERENCE_ROLES
                                   if (Path(stage_dir) / layout.reference_features(role)).is_file()}
    spatial = _stored(stage_dir, SPATIAL)
    if spatial is not None:
        found["sfid"] = spatial
    return found


def prior_network(study: StudyConfig) -> str:
    """The prior's network: its timm model where it names one ("vit_base_patch14_dinov2.lvd142m"), else its name."""
    return str(study.prior.params.get("model", study.prior.name))


def fidelity_protocol(study: StudyConfig) -> dict[str, Any]:
    """What every FD/KD column of the study means and how it was computed (stored beside the values)."""
    ev = study.evaluation
    cols = ev.columns()
    warning = shared_network_warning(ev.extractor, ev.inception_weights,
                                     prior=prior_network(study), perceptual=study.training.perceptual.name)
    scores = suite(study)
    reference = (f"{ev.reference_images} (evaluation.reference_images)" if ev.reference_images
                 else f"first {study.reference_n} train images")
    return {"n": study.sample_n, "n_reference": None if ev.reference_images else study.reference_n,
            "n_heldout": study.heldout_n, "n_controls": study.fd_n, "num_samples_asked": ev.num_samples,
            "n_lowered": study.fd_n_note(), "reference": reference,
            "fd_against": (f"{ev.reference_stats} (evaluation.reference_stats: mu / sigma)" if ev.reference_stats
                           else "the reference images' features"),
            "heldout": f"first {study.heldout_n} val images", "columns": cols.meanings(), "extractor_shares_network": warning,
            "dinov2_shares_network": scores.shared_network(prior=prior_network(study), perceptual=study.training.perceptual.name),
            "suite": scores.protocol(),
            "kid_subsets": ev.kid_subsets, "kid_subset_size": kid_subset(study.sample_n, study.reference_n)}


def reference_images(study: StudyConfig, train) -> tuple[np.ndarray, np.ndarray | None]:
    """The real reference set: evaluation.reference_images (at the data's resolution), else the first
    reference_n train images."""
    path = study.evaluation.reference_images
    if path is None:
        return np.asarray(train.images[:study.reference_n]), train.labels[:study.reference_n]
    check_resolution(study, path, "evaluation.reference_images")
    images, labels = load_images(path)
    return images.numpy(), labels


def check_resolution(study: StudyConfig, path: str, key: str) -> None:
    """A reference file's images must be what the study generates: data.resolution square."""
    side = study.data.resolution
    size = image_size(path)
    if size != (side, side):
        raise ValueError(f"{key}: {path} holds {size} px images, but the study "
                         f"generates {side} x {side} (data.resolution): use a reference made at that resolution")


def reference_notes(study: StudyConfig, n_reference: int) -> list[str]:
    """What the named reference images leave unequal, one line each; refused when too few for precision / recall."""
    ev, path = study.evaluation, study.evaluation.reference_images
    if path is None:
        return []
    if n_reference <= ev.prdc_k:
        raise ValueError(f"evaluation.reference_images: {path} holds {n_reference} images; precision / recall need more "
                         f"than evaluation.prdc_k = {ev.prdc_k}")
    notes = []
    if n_reference < study.sample_n:
        notes.append(f"evaluation.reference_images: {path} holds {n_reference} images, fewer than the {study.sample_n} "
                     f"generated: KD and precision / recall compare sets of unequal N (as ADM's 10 000 vs 50 000)")
    if ev.reference_stats is None and holds_statistics(path):
        notes.append(f"evaluation.reference_images: {path} also holds mu / sigma, which only evaluation.reference_stats "
                     f"reads: gFD here is against its {n_reference} images, `pae-lab evaluate` against its statistics")
    return notes


def reference_statistics(study: StudyConfig) -> tuple[dict[str, np.ndarray], list[str]]:
    """(mu / sigma of evaluation.reference_stats, and sFID's mu_s / sigma_s when it holds them and the study
    scores sFID; what the file cannot vouch for). Refused when made by another network or feature size, or
    beside images of another resolution (ADM's reference batches hold both); ({}, []) when the study names none."""
    path = study.evaluation.reference_stats
    if path is None:
        return {}, []
    name = resolve_extractor(study.evaluation.extractor, study.evaluation.inception_weights)
    held = contents(path)
    if IMAGES in held:  # ADM's reference batches: the statistics of the images beside them
        check_resolution(study, path, "evaluation.reference_stats")
    mu, sigma, made_with = load_statistics(path, name, FIDELITY_EXTRACTORS.get(name).feature_dim)
    found = {MU: mu, SIGMA: sigma}
    if "sfid" in suite(study).roles() and set(SPATIAL) <= held:
        found |= dict(zip(SPATIAL, load_statistics(path, name, SPATIAL_DIM, keys=SPATIAL)[:2]))
    notes = [] if made_with is not None else [
        f"evaluation.reference_stats: {path} does not name the network its statistics come from: assumed {name}"
        + ("" if IMAGES in held else f" on {study.data.resolution} px images, which nothing here can check")]
    return {key: np.asarray(value) for key, value in found.items()}, notes


def _stored(stage_dir: Path, keys: tuple[str, str]) -> tuple[torch.Tensor, torch.Tensor] | None:
    path = Path(stage_dir) / layout.REFERENCE_STATS
    if not path.is_file():
        return None
    with np.load(path) as data:
        return (torch.from_numpy(data[keys[0]]), torch.from_numpy(data[keys[1]])) if keys[0] in data else None


def reference_protocol(stage_dir: Path) -> dict[str, Any]:
    """How the reference stage measured: the study's fidelity protocol with the reference set's own N and notes."""
    return read_json(Path(stage_dir) / layout.FIDELITY_PROTOCOL, {})


def load_reference(stage_dir: Path) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """(the reference images' features, the named statistics file's (mu, sigma) or None) a reference stage wrote."""
    return load_features(stage_dir, layout.REFERENCE_FEATURES), _stored(stage_dir, (MU, SIGMA))


def reference_stage(ctx: StageContext, out: Path) -> dict[str, Any]:
    study, device = ctx.study, ctx.device
    cols = study.evaluation.columns()
    images, labels = reference_images(study, ctx.split("train"))
    stats, notes = reference_statistics(study)
    notes += reference_notes(study, len(images))
    ref_sets = suite_features(study, images, device)
    ref = ref_sets["fid"]
    for role in set(SUITE_REFERENCE_ROLES) & set(ref_sets):
        save_npy(out / layout.reference_features(role), ref_sets[role].numpy())
    save_images(out / layout.REFERENCE_IMAGES, images, labels)  # for `pae-lab evaluate`
    if stats:
        np.savez(out / layout.REFERENCE_STATS, **stats)
    held = features(study, ctx.split("val").images[:study.heldout_n], device)
    save_npy(out / layout.REFERENCE_FEATURES, ref.numpy())
    save_npy(out / layout.HELDOUT_FEATURES, held.numpy())
    noise = fd_kd_named(held, ref, cols.noise_fd, cols.noise_kd, stats=_stored(out, (MU, SIGMA)), kid_subsets=study.evaluation.kid_subsets,
                        seed=study.evaluation.sampler.seed)
    protocol = fidelity_protocol(study) | {"n_reference": len(ref), "kid_subset_size": kid_subset(study.sample_n, len(ref)),
                                           "reference_notes": notes}
    for line in (protocol["extractor_shares_network"], protocol["dinov2_shares_network"], *protocol["suite"]["skipped"], *notes):
        if line:
            warnings.warn(line, stacklevel=2)
    write_json(out / layout.FIDELITY_PROTOCOL, protocol)
    return {**noise, "n": study.sample_n, "n_reference": len(ref), "n_heldout": len(held),
            "warning": protocol["extractor_shares_network"]}


def stage_array(ctx: StageContext, stage: str, name: Callable[[str], str]) -> Callable[[str, int | None], torch.Tensor]:
    """A feature map a stage this one reads keeps per split, as (split, first n) -> float32 [n, C, g, g]."""
    return lambda split, n: torch.from_numpy(np.asarray(ctx.array(stage, name(split))[:n], np.float32))


def ceiling_results(ctx: StageContext, sources: dict[str, Callable[[str, int | None], torch.Tensor]]
                    ) -> dict[str, dict[str, MetricResult]]:
    """The teacher's ceiling metrics (analysis.teacher) of each source's feature maps: every held-out
    image, and as many train images as the manifold stage's probes fit on (bounded memory)."""
    val, train = ctx.split("val"), ctx.split("train")
    n_train = min(len(train), ctx.study.metrics.probe_train_images)
    segments = None if val.segments is None else np.asarray(val.segments)
    pairs = {name: (read("val", None), read("train", n_train)) for name, read in sources.items()}
    return teacher_results(pairs, val.labels, train.labels[:n_train], segments, ctx.study.metrics)


def ceiling(ctx: StageContext, sources: dict[str, Callable[[str, int | None], torch.Tensor]]) -> dict[str, dict[str, float]]:
    """ceiling_results as rows: {source: {column: value}}."""
    return flat_rows(ceiling_results(ctx, sources))


def teacher_sources(ctx: StageContext) -> dict[str, Callable[[str, int | None], torch.Tensor]]:
    """The teacher's rows, per split: the raw prior and the refined target (and each regularizer's own,
    prior.parts), and the controls that use no network (analysis.teacher): pooled pixels, pixel
    patches, gradient energy, position."""
    grid = ctx.study.latent_grid
    images = lambda split, n: np.asarray(ctx.split(split).images[:n])  # noqa: E731
    teachers = {}
    for part in ctx.study.prior.teachers():  # each regularizer's own teacher as rows of its own: raw_prior:ssr
        suffix = "" if part is None else f":{part}"
        teachers[f"raw_prior{suffix}"] = stage_array(ctx, "prior", lambda split, part=part: layout.prior_features(split, part))
        teachers[f"refined{suffix}"] = stage_array(ctx, "refine", lambda split, part=part: layout.refined_targets(split, part))
    return {**teachers,
            "pooled_pixels": lambda split, n: pooled_pixels(images(split, n), grid),
            "pixel_patches": lambda split, n: pixel_patches(images(split, n), grid),
            "gradient_energy": lambda split, n: gradient_energy(images(split, n), grid),
            "position": lambda split, n: position(len(ctx.split(split).images[:n]), grid)}


def teacher_stage(ctx: StageContext, out: Path) -> dict[str, Any]:
    study = ctx.study
    rows = ceiling(ctx, teacher_sources(ctx))
    teachers = {part or "prior": dict(zip(("name", "params"), study.prior.part(part))) for part in study.prior.teachers()}
    write_json(out / layout.TEACHER_CEILING, {"rows": rows, "prior": study.prior.name, "teachers": teachers,
                                              "grid": study.latent_grid})
    return {f"{name}/{k}": v for name, row in rows.items() for k, v in row.items() if "_" not in k}
