"""Probes on frozen pooled latents: logistic-regression linear probe and DINO-style cosine kNN."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import Tensor

from analysis.panel_config import DEFAULT_C_GRID
from analysis.result import MetricResult
from analysis.tensors import pool



def _features(x: Tensor | np.ndarray) -> np.ndarray:
    x = torch.as_tensor(x).detach().cpu()
    return pool(x).double().numpy()


def _labels(y: Tensor | np.ndarray) -> np.ndarray:
    return np.asarray(y.cpu() if isinstance(y, Tensor) else y)


def split_indices(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/test index split, stratified when every class has at least two samples."""
    _, counts = np.unique(labels, return_counts=True)
    stratify = labels if counts.min() >= 2 else None
    idx = np.arange(len(labels))
    return train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=stratify)


def _fit(x: np.ndarray, y: np.ndarray, c: float, seed: int) -> LogisticRegression:
    with threadpool_limits(1):  # small problems: threaded BLAS only adds contention
        return LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x, y)


def linear_probe(
    train_x: Tensor | np.ndarray,
    train_y: Tensor | np.ndarray,
    test_x: Tensor | np.ndarray,
    test_y: Tensor | np.ndarray,
    C_grid: tuple[float, ...] = DEFAULT_C_GRID,
    seed: int = 0,
    *,
    val_fraction: float = 0.2,
) -> MetricResult:
    """Test accuracy of a logistic regression on standardised pooled features.

    C is chosen on a held-out `val_fraction` of the training set, then the probe is refitted on
    the whole training set with that C. extra: best C, validation and train accuracy.
    """
    xtr, ytr, xte, yte = _features(train_x), _labels(train_y), _features(test_x), _labels(test_y)
    scaler = StandardScaler().fit(xtr)
    xtr, xte = scaler.transform(xtr), scaler.transform(xte)
    fit_idx, val_idx = split_indices(ytr, val_fraction, seed)
    val_acc = {c: _fit(xtr[fit_idx], ytr[fit_idx], c, seed).score(xtr[val_idx], ytr[val_idx]) for c in C_grid}
    best_c = max(C_grid, key=lambda c: (val_acc[c], -c))  # ties: the stronger regularisation
    clf = _fit(xtr, ytr, best_c, seed)
    protocol = {
        "metric": "linear_probe", "n_train": len(ytr), "n_test": len(yte), "C_grid": list(C_grid),
        "val_fraction": val_fraction, "features": "pooled, standardised", "seed": seed,
    }
    extra = {"C": float(best_c), "val_acc": float(val_acc[best_c]), "train_acc": float(clf.score(xtr, ytr))}
    return MetricResult(float(clf.score(xte, yte)), protocol, extra)


def knn_probe(
    train_x: Tensor | np.ndarray,
    train_y: Tensor | np.ndarray,
    test_x: Tensor | np.ndarray,
    test_y: Tensor | np.ndarray,
    k: int = 20,
    temperature: float = 0.07,
) -> MetricResult:
    """Test accuracy of a cosine kNN with a softmax-weighted vote (DINO's protocol).

    Features are pooled, centred by the training mean and l2-normalised; each of the k nearest
    training samples votes exp(cos / temperature) for its class.
    """
    xtr, ytr, xte, yte = _features(train_x), _labels(train_y), _features(test_x), _labels(test_y)
    mean = xtr.mean(0, keepdims=True)
    ftr = torch.nn.functional.normalize(torch.from_numpy(xtr - mean), dim=1)
    fte = torch.nn.functional.normalize(torch.from_numpy(xte - mean), dim=1)
    classes, ytr_idx = np.unique(ytr, return_inverse=True)
    k_used = min(k, len(ytr))
    sim, nn = (fte @ ftr.T).topk(k_used, dim=1)
    votes = torch.zeros(len(xte), len(classes), dtype=torch.float64)
    votes.scatter_add_(1, torch.from_numpy(ytr_idx)[nn], torch.exp(sim / temperature))
    pred = classes[votes.argmax(1).numpy()]
    protocol = {"metric": "knn_probe", "n_train": len(ytr), "n_test": len(yte), "k": k_used,
                "temperature": temperature, "features": "pooled, centred, l2-normalised"}
    return MetricResult(float((pred == yte).mean()), protocol)
