"""The built-in panel metrics, registered through the same `panel_metric` a user calls."""
from __future__ import annotations

from typing import Callable

from torch import Tensor

from analysis.continuity import lpc
from analysis.lipschitz import lipschitz, lipschitz_jvp, lipschitz_power
from analysis.metric_registry import PanelContext, panel_metric
from analysis.panel_config import PanelConfig
from analysis.probes import knn_probe, linear_probe
from analysis.reconstruction import psnr, ssim
from analysis.result import MetricResult
from analysis.semantics import gsq
from analysis.spatial import spatial_coherence, ssc
from analysis.spectrum import erank

LipschitzEstimator = Callable[[Callable[[Tensor], Tensor], Tensor, PanelConfig], MetricResult]

LIPSCHITZ_ESTIMATORS: dict[str, LipschitzEstimator] = {
    "finite_difference": lambda fn, x, c: lipschitz(fn, x, c.lipschitz_eps, c.lipschitz_directions, c.seed, c.batch_size),
    "jvp": lambda fn, x, c: lipschitz_jvp(fn, x, c.lipschitz_directions, c.seed, c.batch_size),
    "power": lambda fn, x, c: lipschitz_power(fn, x, c.lipschitz_iters, c.seed, c.batch_size),
}


@panel_metric("ssc", needs=("segments",))
def _ssc(ctx: PanelContext) -> MetricResult:
    c = ctx.config
    return ssc(ctx.latents, ctx.segments, c.ssc_sigma, c.ssc_k, c.seed, downsample=c.ssc_downsample, ignore_index=c.ssc_ignore_index)


@panel_metric("coherence")
def _coherence(ctx: PanelContext) -> MetricResult:
    return spatial_coherence(ctx.latents, ctx.config.coherence_near, ctx.config.coherence_far_min)


@panel_metric("lpc", needs=("distance",))
def _lpc(ctx: PanelContext) -> MetricResult:
    c = ctx.config
    return lpc(ctx.decode, ctx.latents, ctx.distance, tuple(c.lpc_rhos), c.lpc_directions, c.batch_size, c.seed,
               distance_name=ctx.distance_name)


@panel_metric("gsq", needs=("labels",))
def _gsq(ctx: PanelContext) -> MetricResult:
    c = ctx.config
    return gsq(ctx.latents, ctx.labels, c.gsq_classes_per_repeat, c.gsq_repeats, c.seed)


def _with_source(result: MetricResult, source: str) -> MetricResult:
    return MetricResult(result.value, {**result.protocol, "probe_data": source}, result.extra)


@panel_metric("linprobe", needs=("labels",))
def _linprobe(ctx: PanelContext) -> MetricResult:
    *data, source = ctx.probe_data
    c = ctx.config
    return _with_source(linear_probe(*data, tuple(c.probe_c_grid), c.seed, val_fraction=c.probe_val_fraction), source)


@panel_metric("knn", needs=("labels",))
def _knn(ctx: PanelContext) -> MetricResult:
    *data, source = ctx.probe_data
    return _with_source(knn_probe(*data, ctx.config.knn_k, ctx.config.knn_temperature), source)


def _lipschitz(fn: Callable[[Tensor], Tensor], inputs: Tensor, ctx: PanelContext, space: str) -> MetricResult:
    c = ctx.config
    result = LIPSCHITZ_ESTIMATORS[c.lipschitz_estimator](fn, inputs[: c.lipschitz_n_images], c)
    return MetricResult(result.value, {**result.protocol, "space": space}, result.extra)


@panel_metric("lip_enc")
def _lip_enc(ctx: PanelContext) -> MetricResult:
    return _lipschitz(ctx.encode, ctx.images, ctx, "image -> latent")


@panel_metric("lip_dec")
def _lip_dec(ctx: PanelContext) -> MetricResult:
    return _lipschitz(ctx.decode, ctx.latents, ctx, "latent -> image")


@panel_metric("erank")
def _erank(ctx: PanelContext) -> MetricResult:
    return erank(ctx.latents)


@panel_metric("psnr")
def _psnr(ctx: PanelContext) -> MetricResult:
    return psnr(ctx.reconstructions, ctx.images)


@panel_metric("ssim")
def _ssim(ctx: PanelContext) -> MetricResult:
    return ssim(ctx.reconstructions, ctx.images, ctx.config.ssim_window, ctx.config.ssim_sigma)


@panel_metric("nn_angle")
def _nn_angle(ctx: PanelContext) -> MetricResult:
    """Median degrees from an image's latent to its nearest other image's: the scale MCR's steps compare to."""
    from pae_lab.losses.mcr import nn_angles

    angles = nn_angles(ctx.latents)
    return MetricResult(float(angles.median()), {"unit": "degrees", "latent": "flattened, all tokens"},
                        {"p10": float(angles.quantile(0.1)), "p90": float(angles.quantile(0.9))})
