"""Normalised spectral clustering of token graphs (Ng-Jordan-Weiss) and geometric-mean NMI.

Written out instead of calling sklearn's SpectralClustering because SSC runs it on hundreds of
small graphs: a k-eigenvector LAPACK call per image plus one batched k-means over all images
with the same k is much faster than one sklearn estimator (own eigensolver, 10 k-means
restarts, Python overhead) per image.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits


def token_affinity(tokens: np.ndarray, sigma: float) -> np.ndarray:
    """[B, T, C] tokens -> [B, T, T] affinity exp(<z_i, z_j> / sigma) of l2-normalised tokens, A_ii = 0.

    Computed as exp((cos - 1) / sigma): the constant factor exp(-1/sigma) cancels in the
    normalised Laplacian and keeps small sigma from overflowing.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    z = np.asarray(tokens, dtype=np.float64)
    z = z / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
    with threadpool_limits(1):  # threaded BLAS on tiny matrices stalls when cores are shared
        aff = np.exp((z @ z.transpose(0, 2, 1) - 1.0) / sigma)
    aff[:, np.arange(aff.shape[1]), np.arange(aff.shape[1])] = 0.0
    return aff


def spectral_embedding(affinity: np.ndarray, k: int) -> np.ndarray:
    """[T, T] affinity -> [T, k] NJW embedding: top-k eigenvectors of D^-1/2 A D^-1/2, rows l2-normalised.

    LAPACK's subset driver computes only the k eigenvectors needed (several times faster than a
    full decomposition for 16x16 token grids).
    """
    t = affinity.shape[0]
    deg = 1.0 / np.sqrt(np.maximum(affinity.sum(1), 1e-300))
    m = deg[:, None] * affinity * deg[None, :]
    m = (m + m.T) / 2
    try:
        _, vecs = scipy.linalg.eigh(m, subset_by_index=[t - k, t - 1])
    except np.linalg.LinAlgError:
        vecs = np.empty((t, 0))
    if vecs.shape[1] < k:  # the subset driver fails on very degenerate spectra: a 1-channel latent's
        vecs = np.linalg.eigh(m)[1][:, t - k:]  # tokens normalise to +-1, two blocks of equal eigenvalues
    return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)


def _sq_dist(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """[B, T, d], [B, k, d] -> [B, T, k] squared Euclidean distances."""
    return (x * x).sum(-1)[..., None] - 2 * x @ c.transpose(0, 2, 1) + (c * c).sum(-1)[:, None, :]


def _draw(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row of [B, T] non-negative weights, drawn with probability ~ weight."""
    cum = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(1), weights.shape[1] - 1)


def kmeans(points: np.ndarray, k: int, *, n_init: int = 4, iters: int = 100, seed: int = 0) -> np.ndarray:
    """[B, T, d] point sets -> [B, T] labels, k-means on every set at once.

    k-means++ seeding and `n_init` restarts per set, all run as one batched array program (SSC
    clusters hundreds of tiny sets; a Python loop per set would dominate its cost). The restart
    with the lowest inertia wins. NumPy rather than torch: single-threaded small ops do not
    stall when other processes hold the cores.
    """
    b, n, _ = points.shape
    if k >= n:
        return np.broadcast_to(np.arange(n), (b, n)).copy()
    rng = np.random.default_rng(seed)
    x = np.repeat(np.asarray(points, dtype=np.float64), n_init, axis=0)  # [B*R, T, d]
    rows = np.arange(len(x))
    cent = x[rows, rng.integers(0, n, len(x))][:, None]  # [B*R, 1, d]
    d2 = ((x - cent) ** 2).sum(-1)
    for _ in range(1, k):  # k-means++: next centre drawn with probability ~ squared distance
        nxt = x[rows, _draw(np.maximum(d2, 0) + 1e-12, rng)][:, None]
        cent = np.concatenate([cent, nxt], 1)
        d2 = np.minimum(d2, ((x - nxt) ** 2).sum(-1))
    labels = np.full(x.shape[:2], -1)
    for _ in range(iters):
        new_labels = _sq_dist(x, cent).argmin(-1)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        onehot = (labels[..., None] == np.arange(k)).astype(np.float64)  # [B*R, T, k]
        counts = onehot.sum(1)[..., None]
        cent = np.where(counts > 0, onehot.transpose(0, 2, 1) @ x / np.maximum(counts, 1), cent)
    inertia = _sq_dist(x, cent).min(-1).sum(-1).reshape(b, n_init)
    return labels[inertia.argmin(1) + np.arange(b) * n_init]


def spectral_cluster(affinities: np.ndarray, k: int, *, n_init: int = 4, seed: int = 0) -> np.ndarray:
    """[B, T, T] affinities -> [B, T] labels: NJW normalised spectral clustering into k groups each."""
    with threadpool_limits(1):
        emb = np.stack([spectral_embedding(a, k) for a in affinities])
        return kmeans(emb, k, n_init=n_init, seed=seed)


def nmi_geometric(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised mutual information I(a; b) / sqrt(H(a) H(b)) of two labelings.

    Same convention as sklearn's `normalized_mutual_info_score(average_method="geometric")`: two
    single-cluster labelings score 1, one single-cluster labeling against a split scores 0.
    """
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(table, (ai, bi), 1.0)
    p = table / table.sum()
    pa, pb = p.sum(1), p.sum(0)
    ha = -np.sum(pa * np.log(pa))
    hb = -np.sum(pb * np.log(pb))
    if ha == 0 and hb == 0:
        return 1.0
    if ha == 0 or hb == 0:
        return 0.0
    nz = p > 0
    mi = np.sum(p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz]))
    return float(max(mi, 0.0) / math.sqrt(ha * hb))


def ami_geometric(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted mutual information (sklearn's, geometric normalisation as `nmi_geometric`): NMI less
    its expectation under random labelings of the same sizes, so a random partition scores about 0
    where its NMI, on 64 tokens, is clearly positive."""
    from sklearn.metrics import adjusted_mutual_info_score

    return float(adjusted_mutual_info_score(a, b, average_method="geometric"))
