"""Score any file of generated images against a reference file, outside a study: a study's own
`samples.npz`, or a peer's, with the scores and column names a study uses.

Against reference images: FD, KD and precision / recall / density / coverage (k-NN in the same
features; k = 3 is ADM's improved precision / recall). Against stored statistics (mu, sigma): FD
alone, since the others need the images.
"""
from __future__ import annotations

import os
import warnings
from typing import Any

from analysis.adm_files import holds_statistics, load_images, load_statistics, save_statistics
from analysis.fidelity import extract_features, fd_kd_named, frechet_distance_to_statistics, small_n_notes
from analysis.fidelity_names import FIDELITY_EXTRACTORS, fidelity_columns, inception_weights_or_cached, resolve_extractor
from analysis.knn_scores import knn_scores_named


def score_sample_file(samples: str | os.PathLike, reference: str | os.PathLike, *, extractor: str = "auto",
                      inception_weights: str | os.PathLike | None = None, k: int = 3, kid_subsets: int = 100,
                      seed: int = 0, save_reference_statistics: str | os.PathLike | None = None,
                      device: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """({"extractor", "n", "n_reference", score columns...}, notes) for ADM-format files (analysis.adm_files)."""
    inception_weights = inception_weights_or_cached(inception_weights)
    name = resolve_extractor(extractor, inception_weights)
    spec, cols = FIDELITY_EXTRACTORS.get(name), fidelity_columns(name, inception_weights)
    images, _ = load_images(samples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # said once, in the notes
        notes = small_n_notes(len(images), spec)

    def feats(x):
        return extract_features(x, extractor=name, inception_weights=inception_weights, device=device)

    if holds_statistics(reference):
        mu, sigma = load_statistics(reference, name, spec.feature_dim)
        gen = feats(images)
        notes.append(f"{reference} holds statistics only: KD and the k-NN scores need its images")
        return {"extractor": name, "n": len(gen), cols.fd: frechet_distance_to_statistics(gen, mu, sigma)}, notes
    ref_images, _ = load_images(reference)
    gen, real = feats(images), feats(ref_images)
    if save_reference_statistics is not None:
        save_statistics(save_reference_statistics, real, name)
    values = {"extractor": name, "n": len(gen), "n_reference": len(real),
              **fd_kd_named(gen, real, cols.fd, cols.kd, kid_subsets=kid_subsets, seed=seed),
              **knn_scores_named(gen, real, cols.knn("real"), k)}
    return values, notes
