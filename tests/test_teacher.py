"""The teacher's ceiling and the oracle control prior on tiny procedural scenes, with known answers."""
import numpy as np
import pytest
import torch

from analysis.panel_config import PanelConfig
from analysis.teacher import pooled_pixels, row_name, teacher_ceiling
from pae_lab.data import build_dataset
from pae_lab.priors import PRIORS, build_prior


@pytest.fixture(scope="module")
def scenes():
    return {s: build_dataset("scenes", resolution=16, size=48, split=s, seed=0) for s in ("train", "val")}


def test_oracle_prior_encodes_segments_and_class(scenes):
    prior = build_prior("oracle", segment_dim=8, max_segments=8)
    assert "oracle" in PRIORS.names() and prior.dim == 8 + 8
    f = torch.from_numpy(prior.annotated_features(scenes["val"], 4).astype(np.float32))
    assert f.shape == (48, 16, 4, 4)
    onehot = f[:, 8:].mean(dim=(2, 3)).argmax(1).numpy()
    assert (onehot == scenes["val"].labels).all()
    # a cell inside one segment carries exactly that segment's embedding row (unit norm)
    single = torch.isclose(f[:, :8].norm(dim=1), torch.tensor(1.0), atol=1e-3)
    assert single.float().mean() > 0.2
    with pytest.raises(TypeError, match="annotated_features"):
        prior.features(torch.rand(1, 3, 16, 16), 4)


def test_ceiling_rows_know_their_answers(scenes):
    val, train = scenes["val"], scenes["train"]
    prior = build_prior("oracle", segment_dim=8, max_segments=8)
    feats = {s: torch.from_numpy(prior.annotated_features(scenes[s], 4).astype(np.float32)) for s in scenes}
    cfg = PanelConfig(n_images=48, gsq_classes_per_repeat=8, gsq_repeats=1, knn_k=3)
    out = teacher_ceiling({"oracle": (feats["val"], feats["train"]),
                           "pooled_pixels": (pooled_pixels(val.images, 4), pooled_pixels(train.images, 4))},
                          val.labels, train.labels, val.segments, cfg)
    assert out["oracle"]["gsq"] == pytest.approx(1.0) and out["oracle"]["linprobe"] == pytest.approx(1.0)
    assert out["oracle"]["ssc"] > out["pooled_pixels"]["ssc"] - 0.05 and 0 <= out["pooled_pixels"]["ssc"] <= 1
    assert set(out["pooled_pixels"]) >= {"ssc", "coherence", "gsq", "linprobe", "knn"}
    assert row_name("refined") == "teacher:refined" and row_name("pooled_pixels") == "reference:pooled_pixels"
