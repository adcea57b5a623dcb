"""compute_panel: every metric over a held-out set, the metric registry and PanelConfig."""
import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from analysis.metric import register_metric
from analysis.panel_context import PanelContext
from analysis.panel import METRICS, PanelConfig, compute_panel
from analysis.result import MetricResult
from analysis.semantics import gsq
from pae_lab.registry import RegistryError

ALL = {"ssc", "coherence", "lpc", "gsq", "linprobe", "knn", "lip_enc", "lip_dec", "erank", "psnr", "ssim"}


def encode(x: torch.Tensor) -> torch.Tensor:
    """4x average pooling: a parameter-free 'tokenizer' with a 3-channel latent."""
    return F.avg_pool2d(x, 4)


def decode(z: torch.Tensor) -> torch.Tensor:
    return F.interpolate(z, scale_factor=4, mode="nearest")


def l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).flatten(1).norm(dim=1)


@pytest.fixture(scope="module")
def data():
    """Images whose colour is their class, with a two-segment left/right layout."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(48) % 4
    colours = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0]])
    images = colours[labels][:, :, None, None].expand(-1, -1, 16, 16).clone()
    images[:, :, :, 8:] = 0.5 * images[:, :, :, 8:] + 0.25
    images = (images + 0.05 * torch.randn(images.shape, generator=g)).clamp(0, 1)
    segments = torch.zeros(48, 16, 16, dtype=torch.long)
    segments[:, :, 8:] = 1
    return images, labels, segments


CONFIG = PanelConfig(n_images=40, batch_size=16, lpc_rhos=[0.5, 1.0], lipschitz_directions=2, gsq_repeats=2)


def test_panel_computes_every_metric_with_protocols(data):
    images, labels, segments = data
    timings: dict[str, float] = {}
    res = compute_panel(encode, decode, images, labels, segments, distance=l2, distance_name="l2",
                        config=CONFIG, split="val", timings=timings)
    assert ALL <= set(res)
    assert all(isinstance(r, MetricResult) and r.protocol["split"] == "val" for r in res.values())
    assert set(timings) >= ALL | {"encode"}
    assert res["gsq"].value == pytest.approx(gsq(encode(images[:40]), labels[:40]).value)
    assert res["gsq"].value > 0.9 and res["knn"].value > 0.9 and res["linprobe"].value > 0.9
    assert res["lpc"].protocol["distance"] == "l2" and res["lpc"].protocol["n_samples"] == 40
    assert res["ssc"].value > 0.5  # left/right halves differ in colour, so tokens split along them
    assert res["psnr"].value > 15 and 0 < res["ssim"].value <= 1
    assert res["lip_dec"].value == pytest.approx(4.0, rel=1e-3)  # nearest 4x upsampling scales norms by 4
    assert "held-out split" in res["linprobe"].protocol["probe_data"]


def test_panel_uses_train_images_for_the_probes(data):
    images, labels, _ = data
    cfg = CONFIG.model_copy(update={"names": ["linprobe", "knn"]})
    res = compute_panel(encode, decode, images[:24], labels[:24], None, distance=None, config=cfg,
                        train_images=images[24:], train_labels=labels[24:])
    assert set(res) == {"linprobe", "knn"}
    assert res["knn"].protocol["n_train"] == 24 and res["knn"].protocol["probe_data"] == "train-images"


def test_panel_skips_metrics_whose_inputs_are_missing_by_default(data):
    images, _, _ = data
    res = compute_panel(encode, decode, images, None, None, distance=None, config=CONFIG)
    assert set(res) & ALL == {"coherence", "lip_enc", "lip_dec", "erank", "psnr", "ssim"}


def test_panel_refuses_an_explicitly_named_metric_without_its_inputs(data):
    images, labels, _ = data
    cfg = CONFIG.model_copy(update={"names": ["ssc"]})
    with pytest.raises(ValueError, match="needs segments"):
        compute_panel(encode, decode, images, labels, None, distance=l2, config=cfg)
    with pytest.raises(RegistryError, match="registered: .*coherence"):
        compute_panel(encode, decode, images, labels, None, distance=l2, config=CONFIG.model_copy(update={"names": ["nope"]}))


def test_a_user_metric_registers_and_runs_through_the_panel(data):
    images, labels, _ = data

    def latent_mean(ctx: PanelContext) -> MetricResult:
        return MetricResult(float(ctx.latents.mean()), {"metric": "latent_mean"})

    register_metric("test_latent_mean", latent_mean, overwrite=True)
    assert "test_latent_mean" in METRICS.names("test_*")
    cfg = CONFIG.model_copy(update={"names": ["test_latent_mean", "erank"]})
    res = compute_panel(encode, decode, images, labels, None, distance=None, config=cfg)
    assert res["test_latent_mean"].value == pytest.approx(float(encode(images[:40]).mean()), rel=1e-5)
    with pytest.raises(RegistryError, match="unknown inputs"):
        register_metric("test_bad", latent_mean, needs=("depth",))


def test_panel_config_is_strict_documented_and_yaml_friendly():
    with pytest.raises(ValidationError):
        PanelConfig(ssc_sigmaa=0.2)
    with pytest.raises(ValidationError):
        PanelConfig(ssc_k=1)
    for name, field in PanelConfig.model_fields.items():
        assert field.description, f"PanelConfig.{name} has no description"
    dumped = PanelConfig().model_dump(mode="json")
    assert PanelConfig.model_validate(dumped) == PanelConfig()
    assert dumped["lpc_rhos"] == [0.1, 0.5, 1.0, 2.0] and math.isclose(dumped["ssc_sigma"], 0.1)


def test_lipschitz_estimator_is_selectable(data):
    images, labels, _ = data
    cfg = CONFIG.model_copy(update={"names": ["lip_dec"], "lipschitz_estimator": "power", "lipschitz_n_images": 8})
    res = compute_panel(encode, decode, images, labels, None, distance=None, config=cfg)["lip_dec"]
    assert res.protocol["estimator"] == "power_iteration" and res.protocol["n_samples"] == 8
    assert res.value == pytest.approx(4.0, rel=1e-3)
