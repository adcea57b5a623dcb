"""`PanelConfig`: the knobs of the metric panel, embedded in a study YAML as `metrics:`."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_RHOS = (0.1, 0.5, 1.0, 2.0)  # LPC perturbation scales
DEFAULT_C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)  # linear-probe inverse regularisation strengths
DEFAULT_SSC_SIGMA = 0.1  # SSC affinity temperature


class PanelConfig(BaseModel):
    """Which latent-quality metrics to compute on a held-out set, and how."""

    model_config = ConfigDict(extra="forbid")

    names: list[str] | None = Field(
        None, description="Metrics to compute, by registry name (see analysis.METRICS.names()). "
        "None: every registered metric whose inputs (labels, segments, distance) were given.")
    n_images: int | None = Field(256, ge=1, description="Use the first n held-out images; None uses all.")
    probe_train_images: int = Field(4096, ge=1, description="Train images the probes (linear, k-NN) fit on: the first n "
                                    "of the train split, so memory is bounded however large the split is.")
    batch_size: int = Field(64, ge=1, description="Batch size for every encode/decode call.")
    seed: int = Field(0, description="Seed for random directions, class subsets, k-means and probe splits.")

    ssc_sigma: float = Field(DEFAULT_SSC_SIGMA, gt=0, description="SSC affinity temperature: A_ij = exp(cos(z_i, z_j) / sigma).")
    ssc_k: int | None = Field(None, ge=2, description="SSC cluster count; None: the number of segments in each image.")
    ssc_downsample: Literal["majority", "nearest"] = Field(
        "majority", description="How segment maps are brought to the latent grid: majority vote per cell or nearest pixel.")
    ssc_ignore_index: int | None = Field(None, description="Segment id left out of the SSC score (e.g. void/unlabelled).")

    coherence_near: int = Field(1, ge=1, description="Spatial coherence: token pairs within this Chebyshev distance are near.")
    coherence_far_min: int | None = Field(
        None, ge=1, description="Spatial coherence: pairs at least this far apart are far; None: half the grid side.")

    lpc_rhos: list[float] = Field(list(DEFAULT_RHOS), min_length=1, description="LPC perturbation scales rho (eps = rho * ||z||).")
    lpc_directions: int = Field(1, ge=1, description="LPC random directions per latent.")

    gsq_classes_per_repeat: int | None = Field(
        None, ge=2, description="GSQ: classes drawn per repeat (paper: 100); None scores all classes once.")
    gsq_repeats: int = Field(5, ge=1, description="GSQ: repeats over random class subsets (used with gsq_classes_per_repeat).")

    probe_c_grid: list[float] = Field(list(DEFAULT_C_GRID), min_length=1, description="Linear probe: inverse regularisation strengths tried.")
    probe_val_fraction: float = Field(0.2, gt=0, lt=1, description="Linear probe: share of the probe-train set used to pick C.")
    probe_test_fraction: float = Field(
        0.5, gt=0, lt=1, description="Probes without train images: share of the held-out set used as probe test set.")
    knn_k: int = Field(20, ge=1, description="kNN probe: neighbours that vote.")
    knn_temperature: float = Field(0.07, gt=0, description="kNN probe: softmax temperature of the vote weights.")

    lipschitz_estimator: Literal["finite_difference", "jvp", "power"] = Field(
        "finite_difference", description="Lipschitz estimator: finite difference (any callable), JVP, or power iteration (spectral norm).")
    lipschitz_eps: float = Field(1e-2, gt=0, description="Finite-difference step relative to the input norm.")
    lipschitz_directions: int = Field(4, ge=1, description="Random directions per input (finite difference and JVP).")
    lipschitz_iters: int = Field(20, ge=1, description="Power-iteration steps.")
    lipschitz_n_images: int | None = Field(
        64, ge=1, description="Inputs (the first n) used for lip_enc/lip_dec; None: all panel images.")

    ssim_window: int = Field(11, ge=3, description="SSIM Gaussian window size.")
    ssim_sigma: float = Field(1.5, gt=0, description="SSIM Gaussian window sigma.")
