"""Score any file of generated images against a reference file, outside a study: a study's own
`samples.npz`, or a peer's, with the scores and column names a study uses.

FD comes from the reference's stored statistics when it has them (ADM's reference batches: the
whole data set's), else from its images; KD and precision / recall / density / coverage (k-NN in
the same features; k = 3 is ADM's improved precision / recall) need its images. The suite
(analysis.suite_scores): IS of the samples; sFID with Inception, from the reference's stored
mu_s / sigma_s (ADM's) else its images; FD-DINOv2 from its images when DINOv2 weights are named.
Every choice is in the returned protocol, every caveat (and every skipped score) in the notes.
"""
from __future__ import annotations

import os
from typing import Any

import torch_fidelity

from analysis.adm_files import IMAGES, SPATIAL, contents, holds_statistics, load_images, load_statistics, save_statistics
from analysis.fidelity import Reference, fd_kd_named, frechet_distance_to_statistics, kid_subset
from analysis.fidelity_names import DINOV2_TIMM_MODEL, FIDELITY_EXTRACTORS, inception_weights_or_cached, resolve_extractor
from analysis.inception_spatial import SPATIAL_DIM
from analysis.knn_scores import knn_scores_named
from analysis.suite_scores import Suite, suite_scores

PAPER_N = 50_000  # FID-50K: what papers quote


def score_sample_file(samples: str | os.PathLike, reference: str | os.PathLike, *, extractor: str = "auto",
                      inception_weights: str | os.PathLike | None = None, k: int = 3, kid_subsets: int = 100,
                      seed: int = 0, save_reference_statistics: str | os.PathLike | None = None,
                      dinov2_weights: str | os.PathLike | None = None, dinov2_model: str = DINOV2_TIMM_MODEL,
                      device: str | None = None) -> tuple[dict[str, float], dict[str, Any], list[str]]:
    """(scores, protocol, notes) for ADM-format files (analysis.adm_files)."""
    inception_weights = inception_weights_or_cached(inception_weights)
    name = resolve_extractor(extractor, inception_weights)
    suite = Suite(name, inception_weights, dinov2_weights, dinov2_model)
    spec, cols = FIDELITY_EXTRACTORS.get(name), suite.columns()
    images, _ = load_images(samples)
    held, with_stats = contents(reference), holds_statistics(reference)
    if IMAGES not in held and not with_stats:
        load_images(reference)  # names what the file lacks
    n = len(images)
    protocol: dict[str, Any] = {"extractor": name, "feature_dim": spec.feature_dim, "inception_weights": inception_weights,
                                "n": n, "sample_resolution": list(images.shape[2:]), "k": k,
                                "torch_fidelity": torch_fidelity.__version__, **suite.protocol()}
    notes = [f"N = {n}: FD falls with N; a paper's FID-50K uses {PAPER_N} samples, so compare only at equal N"] if n < PAPER_N else []
    notes += suite.skipped()

    generated = suite.features(images, device=device)
    gen, scores, real_suite = generated["fid"], {}, {}
    if with_stats:
        mu, sigma, made_with = load_statistics(reference, name, spec.feature_dim)
        scores[cols.fd] = frechet_distance_to_statistics(gen, mu, sigma)
        protocol["fd_against"] = "the reference file's stored mu / sigma"
        if made_with is None:
            notes.append(f"{reference} does not name the network its statistics come from: assumed {name}")
    if set(SPATIAL) <= held and "sfid" in generated:
        real_suite["sfid"] = load_statistics(reference, name, SPATIAL_DIM, keys=SPATIAL)[:2]
    if IMAGES not in held:
        notes.append(f"{reference} holds statistics only: KD, the k-NN scores and {cols.dino_fd} need its images")
        return scores | _suite(generated, real_suite, cols, protocol, notes), protocol, notes
    ref_images, _ = load_images(reference)
    real_sets = suite.features(ref_images, device=device)
    real = real_sets["fid"]
    real_suite = {**real_sets, **real_suite}  # stored sFID statistics before the reference images' own
    protocol.update(n_reference=len(real), reference_resolution=list(ref_images.shape[2:]), kid_subsets=kid_subsets,
                    kid_subset_size=kid_subset(n, len(real)), seed=seed)
    if ref_images.shape[2:] != images.shape[2:]:
        notes.append(f"samples are {tuple(images.shape[2:])} px, the reference {tuple(ref_images.shape[2:])} px: both are "
                     f"resized to the extractor's input, and every score also measures that difference")
    kd = fd_kd_named(gen, real, cols.fd, cols.kd, kid_subsets=kid_subsets, seed=seed)
    if with_stats:
        kd.pop(cols.fd)  # FD from the stored statistics of the whole data set, as ADM computes it
    else:
        protocol["fd_against"] = "the reference images' features"
    scores |= kd | knn_scores_named(gen, real, cols.knn("real"), k) | _suite(generated, real_suite, cols, protocol, notes)
    if save_reference_statistics is not None:
        save_statistics(save_reference_statistics, real, name, spatial=real_sets.get("sfid"))
        notes.append(f"the reference images' statistics ({name}) written to {save_reference_statistics}")
    return scores, protocol, notes


def _suite(generated: dict[str, Any], real: dict[str, Reference], cols, protocol: dict[str, Any], notes: list[str]) -> dict[str, float]:
    """The suite's scores, with where sFID's reference came from; a score whose reference side is
    missing is named in the notes."""
    found = suite_scores(generated, real, cols)
    if cols.sfd in found:
        protocol["sfid_against"] = ("the reference file's stored mu_s / sigma_s" if isinstance(real["sfid"], tuple)
                                    else "the reference images' features")
    for role, column in (("sfid", cols.sfd), ("dinov2", cols.dino_fd)):
        if role in generated and column not in found:
            notes.append(f"{column} skipped: the reference file has neither its images nor its statistics")
    return found
