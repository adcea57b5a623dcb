"""Controls a generation score must pass before a study may read it as generation quality.

A score is only as good as what it refuses to reward. Each control changes the baseline's images
in a way that must make a faithful score worse:
- blur: the generated images and the reconstructions blurred (a decoder that shows less);
- constant: a decoder that shows one image, the mean reconstruction, whatever the latent;
- modes: a set restricted to a fraction of the classes, against the mean of several random subsets
  of the same size (a generator that dropped modes; one random draw would make the verdict a coin
  toss where the score is noisy); drawn from reconstructed held-out images by their true labels.
Which controls a score must pass follows from what it claims to measure: FD and KD claim both
fidelity and diversity, so all three, and so do the suite papers quote beside them (analysis.suite_scores:
IS, confident and varied classes, whose constant decoder passes by construction: one class
distribution scores exactly 1; sFID and FD-DINOv2, FDs in other features); precision and density
(fidelity) blur and constant; recall and coverage (diversity) modes and constant. The floor (reconstructed held-out images as the
"generated" set: a perfect generator of this tokenizer's latents) is measured beside them and has
no verdict.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torchvision.transforms.functional import gaussian_blur

from analysis.control_verdicts import control_rows
from analysis.frontier import RECONSTRUCTION

Features = Mapping[str, torch.Tensor]  # role -> features of one image set, as analysis.suite_scores.Suite.features


def take(features: Features, index: np.ndarray) -> dict[str, torch.Tensor]:
    """The same images' rows of every feature set."""
    return {role: found[torch.as_tensor(index)] for role, found in features.items()}


def repeated_first(features: Features, n: int) -> dict[str, torch.Tensor]:
    """The first image's features, n times: the set a decoder that shows one image produces."""
    return {role: found[:1].expand(n, *found.shape[1:]).contiguous() for role, found in features.items()}


def blurred(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """uint8 images [N, 3, H, W] under a Gaussian blur of `sigma` pixels (kernel +- 3 sigma)."""
    size = 2 * math.ceil(3 * sigma) + 1
    out = gaussian_blur(torch.as_tensor(images).float(), [size, size], [sigma, sigma])
    return out.round().clamp(0, 255).to(torch.uint8)


def constant_like(images: torch.Tensor) -> torch.Tensor:
    """What a decoder that ignores its latent shows: the images' mean, once per image."""
    images = torch.as_tensor(images)
    mean = images.float().mean(0, keepdim=True).round().to(torch.uint8)
    return mean.expand_as(images).contiguous()


def mode_subsets(labels: np.ndarray, keep: float, seed: int, draws: int = 1) -> tuple[np.ndarray, list[np.ndarray]]:
    """(indices of the samples of ceil(keep x classes) random classes, `draws` random subsets of the
    same size from all samples): the control and what it is compared with, at equal N."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    kept_classes = np.random.default_rng(seed).permutation(classes)[:max(1, math.ceil(keep * len(classes)))]
    kept = np.flatnonzero(np.isin(labels, kept_classes))
    rng = np.random.default_rng(seed + 1)
    return kept, [np.sort(rng.choice(len(labels), size=len(kept), replace=False)) for _ in range(draws)]


def undefined_own_knn(values: Mapping[str, float], knn_own: Sequence[str]) -> dict[str, float]:
    """A constant set against itself has k-NN radii of 0: the k-NN scores against own reconstructions
    are undefined there (prdc's strict `<` would read 0 and let recall / coverage "pass"). NaN fails."""
    return {c: float("nan") if c in knn_own else v for c, v in values.items()}


def psnr_row(control: str, param: float | str, images: torch.Tensor, originals: torch.Tensor, actual: float) -> dict:
    """The PSNR a control's decoder would have (its images against the originals): the frontier
    distance holds gFD at equal PSNR, so its controls need the PSNR the control costs."""
    from analysis.reconstruction import psnr_per_image

    value = float(psnr_per_image(torch.as_tensor(images).float() / 255, torch.as_tensor(originals).float() / 255).mean())
    return {"control": control, "param": param, "column": RECONSTRUCTION, "value": value,
            "compared_with": actual if control != "actual" else value, "worse": None}


def measure_controls(samples: torch.Tensor, own_images: torch.Tensor, floor_images: torch.Tensor, floor_labels: np.ndarray, *,
                     originals: torch.Tensor, extract: Callable[[torch.Tensor], Features],
                     extract_own: Callable[[torch.Tensor], Features],
                     score: Callable[[Features, Features], dict[str, float]], directions: Mapping[str, str],
                     roles: Mapping[str, str], knn_own: Sequence[str], blur_sigmas: Sequence[float], mode_keep: float,
                     seed: int, mode_draws: int = 5, progress: Callable[[int, int], None] = lambda done, total: None) -> list[dict]:
    """Every control of one run as rows (control_rows). `samples` / `own_images` are the generated
    images and the reconstructions of the reference (uint8), `floor_images` reconstructions of
    held-out `originals` and `floor_labels` their true classes; `extract` gives every feature set the
    scores of a generated set need (Features), `extract_own` those the scores against `own` need (only
    FD's network: IS, sFID and FD-DINOv2 never read `own`), and `score(generated, own)` scores a set
    against the real reference and against `own` (analysis.set_scores, analysis.suite_scores);
    `knn_own` names the k-NN columns against `own`. Every set, the unchanged one included, is
    extracted here the same way. Dropped
    modes are drawn from the reconstructed held-out images by their true labels, not from the
    samples: a generator that ignores its class would otherwise fail the control for any score, at random."""
    own = extract_own(own_images)
    actual = score(extract(samples), own)
    rows = control_rows("actual", "", actual, actual, directions, roles)
    rows.append(psnr_row("actual", "", floor_images, originals, 0.0))
    actual_psnr = rows[-1]["value"]
    total = len(blur_sigmas) + 2
    for i, sigma in enumerate(blur_sigmas):
        progress(i, total)
        rows += control_rows("blur", sigma, score(extract(blurred(samples, sigma)), extract_own(blurred(own_images, sigma))),
                             actual, directions, roles)
        rows.append(psnr_row("blur", sigma, blurred(floor_images, sigma), originals, actual_psnr))
    progress(len(blur_sigmas), total)
    constant = repeated_first(extract(constant_like(own_images)[:2]), len(own_images))  # one image's features
    rows += control_rows("constant", "", undefined_own_knn(score(constant, constant), knn_own), actual, directions, roles)
    rows.append(psnr_row("constant", "", constant_like(floor_images), originals, actual_psnr))
    progress(len(blur_sigmas) + 1, total)
    floor = extract(floor_images)
    rows += control_rows("floor", "", score(floor, own), actual, directions, roles)
    kept, randoms = mode_subsets(floor_labels, mode_keep, seed, mode_draws)
    fair = pd.DataFrame([score(take(floor, random), own) for random in randoms]).mean().to_dict()
    rows += control_rows("modes", mode_keep, score(take(floor, kept), own), fair, directions, roles)
    progress(total, total)
    return rows
