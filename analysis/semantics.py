"""GSQ, global semantic quality: do pooled latents put same-class images next to each other?"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from analysis.result import MetricResult
from analysis.tensors import pool


def nn_hits(features: Tensor, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hit, nearest): whether each row's nearest other row (cosine, after centring by the set mean)
    shares its label, and which row that is. Rows that are all the same have no nearest row: no hits."""
    f = features.double()
    centred = f - f.mean(0, keepdim=True)
    if not centred.abs().gt(1e-9 * f.abs().max().clamp_min(1e-300)).any():
        return np.array([], dtype=bool), np.array([], dtype=np.int64)
    f = torch.nn.functional.normalize(centred, dim=1)
    sim = f @ f.T
    sim.fill_diagonal_(-torch.inf)
    nearest = sim.argmax(1).numpy()
    return labels[nearest] == labels, nearest


def nn_purity(features: Tensor, labels: np.ndarray) -> float:
    """Fraction of rows whose nearest other row (cosine, after centring by the set mean) shares its
    label; NaN when every row is the same vector (no row is nearer than another)."""
    hits, _ = nn_hits(features, labels)
    return float(hits.mean()) if len(hits) else float("nan")


def nn_purity_se(hits: np.ndarray, nearest: np.ndarray) -> float:
    """Standard error of the hit rate over images, robust to the hits' dependence: two mutual nearest
    neighbours score the same hit, and images sharing a neighbour are compared with the same label,
    so the units are the 1-NN graph's connected components, not the images (a binomial error is
    20-30% too small here, this one within about 15% either way of the spread over fresh draws)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(hits)
    if n < 2:
        return float("nan")
    graph = coo_matrix((np.ones(n), (np.arange(n), nearest)), shape=(n, n))
    _, unit = connected_components(graph, directed=True, connection="weak")
    residual = np.zeros(n)
    np.add.at(residual, unit, hits - hits.mean())
    return float(np.sqrt((residual**2).sum()) / n)


def gsq(
    latents_or_pooled: Tensor,
    labels: Tensor | np.ndarray,
    classes_per_repeat: int | None = None,
    repeats: int = 5,
    seed: int = 0,
) -> MetricResult:
    """Global semantic quality (higher is better): 1-NN label purity of centred, l2-normalised pooled latents.

    With `classes_per_repeat` set, each of `repeats` rounds draws that many classes at random and
    scores only their images (centred by that subset's mean), the paper's "100 random classes,
    5 repeats"; value = mean, extra std. Without it the whole set is scored once. Extra `se`: the
    standard error over images (`nn_purity_se`); `chance`: one over the classes a round scores. A
    feature that is the same for every image (e.g. a position map) has no GSQ: NaN.
    """
    feats = pool(latents_or_pooled.detach()).cpu()
    y = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels)
    if len(y) != len(feats):
        raise ValueError(f"{len(feats)} samples but {len(y)} labels; pass one label per image")
    classes = np.unique(y)
    subsets: list[np.ndarray]
    if classes_per_repeat is None or classes_per_repeat >= len(classes):
        subsets, repeats_done = [np.ones(len(y), dtype=bool)], 1
    else:
        rng = np.random.default_rng(seed)
        subsets = [np.isin(y, rng.choice(classes, classes_per_repeat, replace=False)) for _ in range(repeats)]
        repeats_done = repeats
    rounds = [nn_hits(feats[torch.from_numpy(m)], y[m]) for m in subsets]
    scores = np.array([hits.mean() if len(hits) else np.nan for hits, _ in rounds])
    protocol = {
        "metric": "gsq", "n_samples": len(y), "n_classes": len(classes), "classes_per_repeat": classes_per_repeat,
        "repeats": repeats_done, "pool": "global-average", "similarity": "cosine after centring", "seed": seed,
        "se": "over images, the 1-NN graph's components as units (rounds as independent)",
    }
    # how far other images move it: each round's error, the rounds' mean as if they were independent draws
    se = float(np.sqrt(sum(nn_purity_se(*r) ** 2 for r in rounds)) / len(rounds))
    scored = len(classes) if repeats_done == 1 else classes_per_repeat
    return MetricResult(float(scores.mean()), protocol,
                        {"std": float(scores.std()), "se": se, "chance": 1.0 / scored})
