"""The built-in panel metrics, each declared once through the same `panel_metric` a user calls.

Each function imports its computation when it runs, so declaring the panel (`pae-lab registry`,
`status`, the report's labels and directions) imports no torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from analysis.metric import panel_metric
from analysis.result import MetricResult

if TYPE_CHECKING:
    from torch import Tensor

    from analysis.panel_context import PanelContext
    from analysis.panel_config import PanelConfig

    LipschitzEstimator = Callable[[Callable[[Tensor], Tensor], Tensor, PanelConfig], MetricResult]


def _lipschitz_estimators() -> dict[str, "LipschitzEstimator"]:
    from analysis.lipschitz import lipschitz, lipschitz_jvp, lipschitz_power

    return {
        "finite_difference": lambda fn, x, c: lipschitz(fn, x, c.lipschitz_eps, c.lipschitz_directions, c.seed, c.batch_size),
        "jvp": lambda fn, x, c: lipschitz_jvp(fn, x, c.lipschitz_directions, c.seed, c.batch_size),
        "power": lambda fn, x, c: lipschitz_power(fn, x, c.lipschitz_iters, c.seed, c.batch_size),
    }


@panel_metric("psnr", direction="higher", label="PSNR", unit="dB", headline=True)
def _psnr(ctx: PanelContext) -> MetricResult:
    from analysis.reconstruction import psnr

    return psnr(ctx.reconstructions, ctx.images)


@panel_metric("ssc", needs=("segments",), direction="higher", label="SSC", headline=True, extras={"ami": "higher"})
def _ssc(ctx: PanelContext) -> MetricResult:
    from analysis.spatial import ssc

    c = ctx.config
    return ssc(ctx.latents, ctx.segments, c.ssc_sigma, c.ssc_k, c.seed, downsample=c.ssc_downsample, ignore_index=c.ssc_ignore_index)


@panel_metric("coherence", direction="higher", label="spatial coherence")
def _coherence(ctx: PanelContext) -> MetricResult:
    from analysis.spatial import spatial_coherence

    return spatial_coherence(ctx.latents, ctx.config.coherence_near, ctx.config.coherence_far_min)


@panel_metric("lpc", needs=("distance",), direction="lower", label="LPC", headline=True, extras={"rho*": "lower"})
def _lpc(ctx: PanelContext) -> MetricResult:
    from analysis.continuity import lpc

    c = ctx.config
    return lpc(ctx.decode, ctx.latents, ctx.distance, tuple(c.lpc_rhos), c.lpc_directions, c.batch_size, c.seed,
               distance_name=ctx.distance_name)


@panel_metric("gsq", needs=("labels",), direction="higher", label="GSQ", headline=True)
def _gsq(ctx: PanelContext) -> MetricResult:
    from analysis.semantics import gsq

    c = ctx.config
    return gsq(ctx.latents, ctx.labels, c.gsq_classes_per_repeat, c.gsq_repeats, c.seed)


def _with_source(result: MetricResult, source: str) -> MetricResult:
    return MetricResult(result.value, {**result.protocol, "probe_data": source}, result.extra)


@panel_metric("linprobe", needs=("labels",), direction="higher", label="linear-probe acc.", extras={"val_acc": "higher"})
def _linprobe(ctx: PanelContext) -> MetricResult:
    from analysis.probes import linear_probe

    *data, source = ctx.probe_data
    c = ctx.config
    return _with_source(linear_probe(*data, tuple(c.probe_c_grid), c.seed, val_fraction=c.probe_val_fraction), source)


@panel_metric("knn", needs=("labels",), direction="higher", label="kNN acc.")
def _knn(ctx: PanelContext) -> MetricResult:
    from analysis.probes import knn_probe

    *data, source = ctx.probe_data
    return _with_source(knn_probe(*data, ctx.config.knn_k, ctx.config.knn_temperature), source)


def _lipschitz(fn: Callable[[Tensor], Tensor], inputs: Tensor, ctx: PanelContext, space: str) -> MetricResult:
    c = ctx.config
    result = _lipschitz_estimators()[c.lipschitz_estimator](fn, inputs[: c.lipschitz_n_images], c)
    return MetricResult(result.value, {**result.protocol, "space": space}, result.extra)


@panel_metric("lip_enc", direction="lower", label="encoder Lipschitz", extras={"max": "lower"})
def _lip_enc(ctx: PanelContext) -> MetricResult:
    return _lipschitz(ctx.encode, ctx.images, ctx, "image -> latent")


@panel_metric("lip_dec", direction="lower", label="decoder Lipschitz", extras={"max": "lower"})
def _lip_dec(ctx: PanelContext) -> MetricResult:
    return _lipschitz(ctx.decode, ctx.latents, ctx, "latent -> image")


@panel_metric("erank", label="eRank")  # more channels in use is neither better nor worse
def _erank(ctx: PanelContext) -> MetricResult:
    from analysis.spectrum import erank

    return erank(ctx.latents)


@panel_metric("ssim", direction="higher", label="SSIM")
def _ssim(ctx: PanelContext) -> MetricResult:
    from analysis.reconstruction import ssim

    return ssim(ctx.reconstructions, ctx.images, ctx.config.ssim_window, ctx.config.ssim_sigma)


@panel_metric("nn_angle", unit="degrees")  # a scale, not a quality
def _nn_angle(ctx: PanelContext) -> MetricResult:
    """Median degrees from an image's latent to its nearest other image's: the scale MCR's steps compare to."""
    from analysis.continuity import nn_angles

    angles = nn_angles(ctx.latents)
    return MetricResult(float(angles.median()), {"unit": "degrees", "latent": "flattened, all tokens"},
                        {"p10": float(angles.quantile(0.1)), "p90": float(angles.quantile(0.9))})
