"""GSQ and the probes: class one-hots are perfect, random features are at chance."""
import numpy as np
import pytest
import torch

from analysis.probes import knn_probe, linear_probe, split_indices
from analysis.semantics import gsq, nn_hits


def _one_hot_latents(labels: torch.Tensor, classes: int, grid: int = 2) -> torch.Tensor:
    pooled = torch.nn.functional.one_hot(labels, classes).float()
    return pooled[:, :, None, None].expand(-1, -1, grid, grid)


def test_gsq_is_one_for_class_one_hot_latents():
    labels = torch.arange(40) % 8
    res = gsq(_one_hot_latents(labels, 8), labels)
    assert res.value == 1.0
    assert res.protocol["n_classes"] == 8 and res.extra["chance"] == pytest.approx(1 / 8)


def test_gsq_is_near_chance_for_random_latents():
    classes = 10
    labels = torch.arange(2000) % classes
    feats = torch.randn(2000, 64, generator=torch.Generator().manual_seed(0))
    res = gsq(feats, labels)
    assert res.value == pytest.approx(1 / classes, abs=0.03)
    binomial = (res.value * (1 - res.value) / 2000) ** 0.5  # as if the hits were independent: too small
    assert binomial <= res.extra["se"] < 2 * binomial and abs(res.value - 1 / classes) < 3 * res.extra["se"]


def test_gsq_error_matches_the_spread_over_fresh_draws_and_a_constant_feature_has_no_gsq():
    """The components-of-the-1-NN-graph error tracks how far GSQ moves over fresh image draws, where a
    binomial error falls short (mutual neighbours score the same hit); one vector for every image: NaN."""
    rng = np.random.default_rng(0)
    means = rng.normal(size=(8, 16)) * 0.5
    values, errors = [], []
    for _ in range(60):
        y = rng.integers(0, 8, 256)
        res = gsq(torch.from_numpy(means[y] + rng.normal(size=(256, 16))), y)
        values.append(res.value)
        errors.append(res.extra["se"])
    spread, value = np.std(values, ddof=1), np.mean(values)
    assert 0.75 < np.mean(errors) / spread < 1.35
    assert (value * (1 - value) / 256) ** 0.5 <= np.mean(errors)  # never below the binomial
    flat = gsq(torch.ones(20, 3, 4, 4), np.arange(20) % 4)
    assert np.isnan(flat.value) and np.isnan(flat.extra["se"])
    rounding = torch.ones(64, 3) + torch.from_numpy(rng.integers(-1, 2, (64, 3))).float() * 1.2e-7
    assert np.isnan(gsq(rounding, np.arange(64) % 4).value)  # float32 rounding noise is no feature
    x, y = torch.from_numpy(rng.normal(size=(64, 4))), np.arange(64) % 4
    assert gsq(x * 1e-13, y).value == gsq(x, y).value  # tiny features are cosines too
    assert not np.isnan(gsq(torch.cat([torch.full((64, 1), 1e9, dtype=torch.float64), x], 1), y).value)
    few = gsq(torch.from_numpy(rng.normal(size=(12, 4))), np.arange(12) % 3)
    assert np.isnan(few.extra["se"]) and not np.isnan(few.value)  # too few units for an error
    subset = gsq(x, np.arange(64) % 8, classes_per_repeat=2, repeats=1)
    assert subset.extra["chance"] == 0.5  # one over the classes a round scores


def test_gsq_class_subsets_repeat_and_report_spread():
    labels = torch.arange(300) % 30
    feats = torch.randn(300, 16, generator=torch.Generator().manual_seed(1))
    res = gsq(feats, labels, classes_per_repeat=5, repeats=4, seed=2)
    assert res.protocol["repeats"] == 4 and res.protocol["classes_per_repeat"] == 5
    assert res.extra["std"] > 0
    assert res.value == pytest.approx(gsq(feats, labels, classes_per_repeat=5, repeats=4, seed=2).value)
    assert gsq(_one_hot_latents(labels, 30), labels, classes_per_repeat=5).value == 1.0


def test_nn_purity_centres_before_the_cosine():
    # two classes that differ only by a small offset on top of a large shared mean
    base = torch.tensor([100.0, 100.0])
    feats = torch.stack([base + torch.tensor([1.0, 0.0]), base + torch.tensor([1.1, 0.0]),
                         base + torch.tensor([0.0, 1.0]), base + torch.tensor([0.0, 1.1])])
    assert nn_hits(feats, np.array([0, 0, 1, 1]))[0].mean() == 1.0


def test_gsq_rejects_label_count_mismatch():
    with pytest.raises(ValueError, match="one label per image"):
        gsq(torch.randn(4, 3), torch.zeros(5))


def test_linear_probe_separable_and_random():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 4
    x = torch.nn.functional.one_hot(y, 4).float() * 3 + 0.3 * torch.randn(200, 4, generator=g)
    res = linear_probe(x[:120], y[:120], x[120:], y[120:])
    assert res.value == 1.0 and res.extra["C"] in res.protocol["C_grid"]
    noise = torch.randn(200, 8, 2, 2, generator=g)
    assert linear_probe(noise[:120], y[:120], noise[120:], y[120:]).value < 0.5


def test_knn_probe_known_answer_and_chance():
    y = np.arange(100) % 5
    x = np.eye(5)[y] + 0.01 * np.random.default_rng(0).standard_normal((100, 5))
    res = knn_probe(x[:60], y[:60], x[60:], y[60:], k=10)
    assert res.value == 1.0 and res.protocol["k"] == 10 and res.protocol["temperature"] == 0.07
    noise = np.random.default_rng(1).standard_normal((1000, 32))
    yy = np.arange(1000) % 5
    assert knn_probe(noise[:600], yy[:600], noise[600:], yy[600:]).value == pytest.approx(0.2, abs=0.07)


def test_knn_vote_is_softmax_weighted():
    # around the test point (1, 0): one class-1 neighbour at cos 1, two class-0 ones at cos 0.906.
    # exp(cos / 0.07) weights let the single close one win; at temperature 1 the pair wins.
    t = np.deg2rad(25)
    near = np.array([[1.0, 0.0], [np.cos(t), np.sin(t)], [np.cos(t), -np.sin(t)]])
    train = np.concatenate([near, -near])  # mirrored, so centring by the train mean changes nothing
    labels = np.array([1, 0, 0, 2, 2, 2])
    test, truth = np.array([[1.0, 0.0]]), np.array([1])
    assert knn_probe(train, labels, test, truth, k=3).value == 1.0
    assert knn_probe(train, labels, test, truth, k=3, temperature=1.0).value == 0.0


def test_split_indices_stratifies_when_it_can():
    y = np.array([0] * 10 + [1] * 10)
    tr, te = split_indices(y, 0.5, seed=0)
    assert sorted(np.bincount(y[te])) == [5, 5] and len(set(tr) | set(te)) == 20
    tr, te = split_indices(np.array([0, 1, 1, 1]), 0.5, seed=0)  # class 0 has one sample: plain split
    assert len(tr) + len(te) == 4
