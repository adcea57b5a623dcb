"""The study schema: one pydantic model per concern, defaults that run on a laptop CPU.

Only the shape of a study lives here (types, ranges, unknown keys); reading files, plugins and
registry names are `pae_lab.config.loading` and `pae_lab.plan.preflight`. Fields marked `identity=False`
cannot change a result, so no stage hash includes them (see `pae_lab.plan.graph`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from analysis.fidelity_names import DINOV2_TIMM_MODEL, FidelityColumns, fidelity_columns, fidelity_feature_dim
from analysis.panel_config import PanelConfig
from analysis.primary import MAX_PRIMARY, parse_test
from pae_lab.architectures import TokenizerSpec
from pae_lab.config.launchers import LauncherSpec, default_launcher
from pae_lab.config.tokenizers import TokenizerConfig
from pae_lab.catalog import TIME_SAMPLING
from pae_lab.config.search import SearchConfig, registered_name

NO_IDENTITY = {"identity": False}  # json_schema_extra of a field that cannot change a result, or that only a stage naming it reads


class SamplerConfig(BaseModel):
    """The `evaluation.sampler:` block: every sampler detail that moves gFID, stored with the metric."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field("euler", description="ODE solver, a registered sampler (`pae-lab registry samplers`; "
                        "('euler': 1 model call per step, 'heun': 2).")
    steps: int = Field(50, ge=1, description="Solver steps from noise (t=0) to data (t=1).")
    cfg_scale: float = Field(1.0, ge=0, description="Classifier-free guidance scale; 1 means no guidance "
                             "(one conditional forward per evaluation).")
    cfg_interval: tuple[float, float] = Field((0.0, 1.0), description="Guidance applies only for t in "
                                              "[lo, hi] (t=0 noise, t=1 data), as in guidance-interval papers.")
    time_shift: float = Field(1.0, gt=0, description="SD3-style shift of the time grid; >1 puts more steps "
                              "near the noise end, 1 is uniform.")
    batch_size: int = Field(256, ge=1, description="Latents per model batch in generate_latents (memory "
                            "only: the noise is drawn for the whole set first, so results do not depend on it).",
                            json_schema_extra={"identity": False})
    seed: int = Field(0, description="Seed for the starting noise and the class-balanced labels.")
    # The sweep's two keys are read by the guidance stage alone, which depends on them by name: they
    # leave every other stage's hash (the generation stage's among them) as it was.
    cfg_grid: list[Annotated[float, Field(ge=0)]] | None = Field(
        None, min_length=1, json_schema_extra=NO_IDENTITY,
        description="Guidance scales the guidance stage scores on the final EMA checkpoint at cfg_grid_samples images "
        "(the same noise and labels for each); the best (lowest gFD) is scored again at num_samples beside the score "
        "without guidance (scale 1). Needs generator.class_dropout > 0. null: no sweep.")
    cfg_grid_samples: int = Field(256, ge=16, json_schema_extra=NO_IDENTITY,
                                  description="Generated images per scale of the sweep. Below the FD features' dimension "
                                  "(2048 for Inception) FD's small-N bias leans the choice to strong guidance (`run` says so).")

    @field_validator("cfg_interval")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        lo, hi = v
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"cfg_interval must satisfy 0 <= lo <= hi <= 1, got {v}")
        return v

    def sample_kwargs(self) -> dict:
        """The keyword arguments of `sample` this config fixes."""
        return self.model_dump(include={"method", "steps", "cfg_scale", "cfg_interval", "time_shift"})


class GeneratorConfig(BaseModel):
    """The `generator:` block of a study: model size, optimiser and schedule of the proxy DiT.

    Defaults are sized for a 2-core CPU: a few hundred steps on an 8x8x16 latent in a minute or two.
    """

    model_config = ConfigDict(extra="forbid")

    width: int = Field(128, gt=0, description="Transformer width (token channels); divisible by 4 and by heads.")
    depth: int = Field(4, gt=0, description="Number of adaLN-Zero DiT blocks.")
    heads: int = Field(4, gt=0, description="Attention heads per block.")
    patch: int = Field(1, gt=0, description="Latent patch size per token; must divide the latent grid.")
    mlp_ratio: float = Field(4.0, gt=0, description="MLP hidden width as a multiple of width.")
    class_dropout: float = Field(0.1, ge=0, le=1, description="Probability of replacing a label by the null "
                                 "label during training; what makes classifier-free guidance possible.")
    steps: int = Field(300, gt=0, description="Optimiser steps of generator training.")
    batch_size: int = Field(64, gt=0, description="Latents per training step.")
    lr: float = Field(5e-4, gt=0, description="AdamW peak learning rate (after warmup).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    betas: tuple[float, float] = Field((0.9, 0.99), description="AdamW betas.")
    warmup: int = Field(20, ge=0, description="Linear learning-rate warmup steps; constant afterwards.")
    grad_clip: float | None = Field(1.0, gt=0, description="Clip the global gradient norm to this value; "
                                    "null disables clipping.")
    ema_decay: float = Field(0.995, ge=0, le=1, description="EMA decay of the weights used for sampling "
                             "(with the EMA's warmup, see pae_lab.models.ema.EMA).")
    time_sampling: str = Field(
        "logit_normal", description="Distribution of the flow time t in training (`pae-lab registry time_sampling`): uniform on [0, 1] or "
        "sigmoid(N(logit_mean, logit_std)) (SD3 / LightningDiT), which concentrates on mid t.")
    logit_mean: float = Field(0.0, description="Mean of the logit-normal time distribution.")
    logit_std: float = Field(1.0, gt=0, description="Std of the logit-normal time distribution.")
    eval_at: list[int] = Field(default_factory=list, description="Training steps at which gFID is "
                               "evaluated (on the EMA weights); the final step is always evaluated.")
    eval_points: int = Field(0, ge=0, description="Log-spaced evaluation steps added to eval_at, the last at "
                             "`steps`, the first at steps / eval_span (e.g. 6 with span 32: steps/32 ... steps in "
                             "octaves), so the convergence speed-up can read up to eval_span x; 0: none.")
    eval_span: float = Field(32.0, ge=1, description="Ratio of the last to the first log-spaced evaluation step "
                             "(eval_points).")

    @field_validator("time_sampling")
    @classmethod
    def _known_time_sampling(cls, name: str) -> str:
        return registered_name(TIME_SAMPLING, name)

    @model_validator(mode="after")
    def _check(self) -> "GeneratorConfig":
        if self.width % self.heads or self.width % 4:
            raise ValueError(f"width {self.width} must be divisible by heads ({self.heads}) and by 4")
        bad = [s for s in self.eval_at if not 0 < s <= self.steps]
        if bad:
            raise ValueError(f"eval_at steps {bad} lie outside 1..steps ({self.steps})")
        return self

    def log_spaced_steps(self) -> list[int]:
        """`eval_points` steps evenly spaced in log(step) from steps / eval_span to steps: what a
        speed-up of up to eval_span x needs to be read rather than capped."""
        if not self.eval_points:
            return []
        first = max(1.0, self.steps / self.eval_span)
        return sorted({max(1, round(s)) for s in np.geomspace(first, self.steps, self.eval_points)})

    def eval_schedule(self) -> list[int]:
        """Sorted steps at which to evaluate gFID, ending with the final step."""
        return sorted(set(self.eval_at) | set(self.log_spaced_steps()) | {self.steps})


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DataConfig(Strict):
    """The images every run trains and is measured on."""

    name: str = Field("scenes", description="Dataset registry entry (`pae-lab registry datasets`).")
    resolution: int = Field(32, ge=8, description="Image side in pixels; divisible by tokenizer.downsample.")
    train_size: int = Field(2048, ge=16, description="Training images (tokenizer, prior, generator).")
    val_size: int = Field(256, ge=16, description="Held-out images for the manifold metrics and rFID.")
    seed: int = Field(0, ge=0, description="Seed of the dataset itself (procedural data, subsets).")
    params: dict[str, Any] = Field(default_factory=dict, description="Extra keyword arguments of the dataset factory.")
    workers: int = Field(2, ge=0, description="DataLoader workers decoding a streamed dataset (imagefolder) while it is "
                         "written (the order is fixed, so results do not depend on it).", json_schema_extra=NO_IDENTITY)


class PriorPart(Strict):
    """One regularizer's own teacher: another prior, block, input size or head than the study's."""

    name: str | None = Field(None, description="Prior registry entry; null: the study's prior.name.")
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments; with the study's prior "
                                   "name they go over prior.params key by key.")


class PriorConfig(Strict):
    """The frozen vision foundation model whose features the regularizers align to."""

    name: str = Field("effnet_lite0", description="Prior (frozen VFM) registry entry.")
    params: dict[str, Any] = Field(default_factory=dict, description="Extra keyword arguments, e.g. timm `model` and `weights`.")
    batch_size: int = Field(64, ge=1, description="Batch size for the one-off feature extraction.")
    parts: dict[str, PriorPart] = Field(
        default_factory=dict, description="Per-regularizer teachers, e.g. `{ssr: {params: {block: 4}}, scr: {params: "
        "{pooled: true}}}`: a regularizer named here aligns to its own refined target (a teacher row of its own in "
        "results.csv); the others align to the prior above.")

    def teachers(self) -> list[str | None]:
        """The study's prior (None), then each regularizer's own teacher, in the order given."""
        return [None, *self.parts]

    def part(self, name: str | None) -> tuple[str, dict[str, Any]]:
        """(registry name, params) of the teacher `name` (None: the study's prior)."""
        if name is None:
            return self.name, self.params
        part = self.parts[name]
        if part.name is None or part.name == self.name:
            return self.name, {**self.params, **part.params}
        return part.name, part.params


class RefineConfig(Strict):
    """The refined prior: a projector to the latent width trained with a Gram loss."""

    enabled: bool = Field(True, description="False: targets are a PCA projection of the raw VFM features.")
    steps: int = Field(300, ge=0, description="Training steps of projector + deprojector.")
    batch_size: int = Field(64, ge=1, description="Feature maps per step.")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate.")
    depth: int = Field(2, ge=1, description="Deprojector transformer layers.")
    standardize: bool = Field(True, description="Standardise every VFM channel (train mean / std) before refining, so the "
                              "MSE term is O(1) and the Gram term acts too (raw features: ~10^4 : 1).")
    l_rep: float = Field(1.0, ge=0, description="Weight of the feature-reconstruction term.")
    l_gram: float = Field(1.0, ge=0, description="Weight of the Gram term against the low-pass target.")
    lowpass: float = Field(0.4, ge=0, description="Low-pass strength of the Gram target.")
    seed: int = Field(0, ge=0, description="Seed of the refiner (shared by every run).")
    whiten: bool = Field(False, json_schema_extra={"identity": "when_set"}, description="With enabled: false, scale each principal direction to unit variance, so "
                         "the cosine Gram SSR matches weighs every kept direction alike, not the first one most.")

    @model_validator(mode="after")
    def _whiten_is_pca(self) -> "RefineConfig":
        if self.whiten and self.enabled:
            raise ValueError("refine.whiten: true whitens the PCA targets; set refine.enabled: false with it "
                             "(the learned refiner has its own scale)")
        return self


class PerceptualConfig(Strict):
    """The perceptual distance: LPIPS needs local weights; the default is the embedded prior's feature distance."""

    name: str = Field("effnet_lite0", description="Perceptual distance registry entry (`lpips` needs local weights).")
    weight: float = Field(1.0, ge=0, description="Weight in the reconstruction loss.")
    params: dict[str, Any] = Field(default_factory=dict, description="Extra keyword arguments of the distance.")


class TrainingConfig(Strict):
    """How each tokenizer variant is trained."""

    steps: int = Field(400, ge=1, description="Optimiser steps per tokenizer.")
    batch_size: int = Field(64, ge=1, description="Images per step.")
    lr: float = Field(2e-4, gt=0, description="AdamW learning rate (tokenizer and trainable regularizer heads).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    grad_clip: float = Field(1.0, gt=0, description="Global gradient-norm clip.")
    regularizer_warmup: int = Field(0, ge=0, description="Steps over which every regularizer weight ramps linearly from 0 "
                                    "to its value: lets the decoder learn to reconstruct before invariance terms such as "
                                    "MCR can pull it to a constant output. 0 = full weights from step 0 (the paper).")
    l1_weight: float = Field(1.0, ge=0, description="Weight of the L1 reconstruction term.")
    perceptual: PerceptualConfig = Field(default_factory=PerceptualConfig, description="Perceptual term of the reconstruction loss (also the LPC distance).")
    log_every: int = Field(10, ge=1, description="Steps between logged metrics.", json_schema_extra=NO_IDENTITY)
    checkpoint_every: int = Field(50, ge=1, description="Steps between resumable checkpoints (resume is exact, so results do not depend on it).", json_schema_extra=NO_IDENTITY)


class ControlsConfig(Strict):
    """The `evaluation.controls:` block: what every generation score must not reward."""

    runs: Literal["baseline", "all", "none"] = Field(
        "baseline", description="Which runs' images the controls change: baseline (runs without regularizers), all, or none "
        "(then no score is accepted or refused, and the report says so).")
    blur_sigmas: list[Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: [0.5, 1.0, 2.0], min_length=1,
        description="Gaussian blurs (pixels) applied to the generated images and the reconstructions; a score must worsen under each.")
    mode_keep: float = Field(0.5, gt=0, lt=1, description="Share of the classes the mode-dropping control keeps; the subset must "
                             "score worse than random subsets of the same size, on average.")
    mode_draws: int = Field(5, ge=1, description="How many random subsets the mode-dropping control is compared with (their mean).")


class DecoderRefitConfig(Strict):
    """The `evaluation.decoder_refit:` block: an optional stage that trains a fresh decoder on each
    run's frozen encoder, with one budget for every variant, and decodes the samples with it."""

    enabled: bool = Field(False, description="Run the decoder refit stage (off by default: it costs a second decoder training per run).")
    steps: int | None = Field(None, ge=1, description="Decoder steps; default: training.steps (the same budget for every variant).")
    lr: float | None = Field(None, gt=0, description="AdamW learning rate; default: training.lr.")


class EvaluationConfig(Strict):
    """The gFID / rFID protocol, fixed per study and stored beside every value."""

    num_samples: int = Field(1024, ge=16, description="Generated images per evaluation (50000 for a paper's FID-50K), and "
                             "the N of the reference set drawn from the train split and of the held-out reals, where the "
                             "splits hold that many; a score on fewer carries its own N (`run` says so): compare at equal N only.")
    reference_images: str | None = Field(None, description="ADM-format .npz (`arr_0` uint8 [N, H, W, 3] at data.resolution): "
                                         "the real reference set of gFD / gKD, precision / recall and lFD. Default: the first "
                                         "num_samples train images.")
    reference_stats: str | None = Field(None, description="ADM-format .npz with `mu` / `sigma` of the extractor's features "
                                        "(e.g. ADM's VIRTUAL_imagenet256_labeled.npz with the Inception extractor): gFD and "
                                        "the floors come from these statistics, as FID-50K is quoted; a file made by "
                                        "another network or feature size is refused.")
    extractor: Literal["auto", "inception", "effnet-lite0", "effnet-lite0-96"] = Field(
        "auto", description="auto: Inception when `inception_weights` is set or the file is in the torch hub cache, else the embedded "
        "EfficientNet-Lite0 (named fd_effnet_lite0); effnet-lite0-96: the same network on 96 px resizes, ~10x cheaper on a CPU.")
    correlation_target: Literal["frontier", "gfd", "gkd", "lfd", "lkd", "val_loss"] = Field(
        "frontier", description="What correlations and the report's summary read as generation quality: frontier (log gFD "
        "minus the unregularized baselines' log-gFD-vs-PSNR line at the run's PSNR: generation at equal reconstruction; "
        "needs baselines at 2 or more latent widths, else the study reads gfd and says why), gfd / gkd (generated vs "
        "real: learnability plus decoder blur), lfd / lkd (generated vs the tokenizer's own reconstructions, which a "
        "blurrier decoder makes easier), val_loss (the generator's held-out flow-matching loss less its closed-form "
        "Gaussian baseline, gen_val_loss_gap: the raw loss falls with the latent's rank whatever the generator learned).")
    kid_subsets: int = Field(100, ge=1, description="KD subsets (torch-fidelity's kid_subsets).")
    prdc_k: int = Field(3, ge=1, description="k of precision / recall / density / coverage (k-NN in the FD features; "
                        "3 is ADM's improved precision / recall).")
    controls: ControlsConfig = Field(default_factory=ControlsConfig, description="Blur, constant-decoder and mode-dropping controls.")
    decoder_refit: DecoderRefitConfig = Field(default_factory=DecoderRefitConfig, description="A fresh decoder per run on its "
                                              "frozen encoder: what a regularizer costs the decoder apart from what it does to the latent.")
    allow_failed_target: bool = Field(False, description="Keep `correlation_target` even when it fails its controls (the report "
                                      "then says so first and claims no agreement with the paper); otherwise the first "
                                      "target that passes is read instead.")
    val_loss_t: list[float] = Field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
                                    min_length=1, description="Fixed t-grid of the held-out flow-matching loss (t = 1 is data).")
    val_loss_images: int = Field(256, ge=1, description="Held-out latents the validation loss averages over (first n of val).")
    inception_weights: str | None = Field(None, description="Local path of torch-fidelity's Inception weights (pt_inception-2015-12-05); "
                                          "with them the generation stage also scores IS and sFID as ADM's evaluator does.")
    dinov2_weights: str | None = Field(None, description="Local path of DINOv2 ViT-L/14 weights (timm's vit_large_patch14_dinov2.lvd142m "
                                       "model.safetensors): the generation stage then adds fd_dinov2 (EDM2's FD-DINOv2); never downloaded.")
    dinov2_model: str = Field(DINOV2_TIMM_MODEL, description="The timm architecture of `dinov2_weights` (EDM2's: ViT-L/14).")
    sampler: SamplerConfig = Field(default_factory=SamplerConfig, description="How samples are drawn for gFID.")
    batch_size: int = Field(256, ge=1, description="Decoding batch size (memory only).", json_schema_extra=NO_IDENTITY)

    def columns(self) -> FidelityColumns:
        """Every FD / KD column of the study, named from the extractor `auto` resolves to."""
        return fidelity_columns(self.extractor, self.inception_weights)


class AnalysisConfig(Strict):
    """How the study's results are tested: declared before the run, so the tests cannot be picked after it."""

    primary: list[str] | None = Field(
        None, description=f"The primary family: at most {MAX_PRIMARY} tests 'response ~ effect' (e.g. 'gfd ~ ssr', "
        "'ssc ~ ssr', 'gsq ~ mcr:scr'; gfd / gkd / lfd / lkd / val_loss name the generation columns), Holm-adjusted "
        "together; only they get a verdict against the paper, every other effect is exploratory. null: each "
        "regularizer on its own metric and on gfd.")

    @field_validator("primary")
    @classmethod
    def _small_family(cls, primary: list[str] | None) -> list[str] | None:
        if primary is None:
            return None
        if len(primary) > MAX_PRIMARY:
            raise ValueError(f"{len(primary)} tests, but the primary family holds at most {MAX_PRIMARY}: "
                             "keep the rest exploratory")
        for test in primary:
            parse_test(test)
        return primary


class TrackingConfig(Strict):
    """MLflow: one parent run per study, one child run per (variant, seed)."""

    uri: str | None = Field(None, description="MLflow tracking URI; default: sqlite:///<study dir>/mlflow.db. http(s):// works.")
    experiment: str | None = Field(None, description="Experiment name; default: the study name.")
    log_images: bool = Field(True, description="Log reconstruction and sample grids as images.")
    system_metrics: Literal["auto", "on", "off"] = Field(
        "auto", description="MLflow system metrics (CPU, memory, disk, network, and GPU memory and utilisation through "
        "nvidia-ml-py) of each run's job as system/* curves: auto = on for CUDA jobs.")
    system_metrics_interval: float = Field(10.0, gt=0, description="Seconds between system-metric samples.")


class StudyConfig(Strict):
    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$", description="Study name: experiment, folder and report title.")
    description: str = Field("", description="One line on what the study asks.")
    output_dir: str | None = Field(None, description="Study folder; default outputs/<name> (relative to the working directory).")
    seeds: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0], min_length=1, description="Training seeds: every variant runs once per seed.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA (bf16 autocast, channels-last) when present, else CPU.")
    plugins: list[str] = Field(default_factory=list, description="Python modules imported first: they register datasets, priors, regularizers, variants.")
    data: DataConfig = Field(default_factory=DataConfig)
    prior: PriorConfig = Field(default_factory=PriorConfig)
    refine: RefineConfig = Field(default_factory=RefineConfig)
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerConfig, description="Tokenizer architecture: `name` picks conv, pae, external or a plugin's entry; the other keys are that architecture's.")
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    variants: list[str | dict[str, Any]] = Field(default_factory=lambda: ["baseline", "pae"], min_length=1, description="Registered variant names, or inline {name, base, regularizers: {reg: {weight, ...} | null}}.")
    metrics: PanelConfig = Field(default_factory=PanelConfig)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    launcher: LauncherSpec = Field(default_factory=default_launcher, description="Where the runs execute: `name` picks inline, local, slurm or a plugin's launcher; the other keys are that launcher's.")
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    search: SearchConfig | None = Field(None, description="Optuna search block (`pae-lab tune`, see pae_lab/config/search.py).")

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be unique")
        return seeds

    @model_validator(mode="after")
    def _guidance_has_a_null_label(self) -> "StudyConfig":
        """Classifier-free guidance mixes in the unconditional model, which only class dropout trains."""
        if self.evaluation.sampler.cfg_grid and self.generator.class_dropout == 0:
            raise ValueError(f"evaluation.sampler.cfg_grid: {self.evaluation.sampler.cfg_grid} needs the unconditional "
                             "model guidance mixes in, which generator.class_dropout: 0 never trains: set it above 0 "
                             "(0.1 is the default) or drop the grid")
        return self

    @model_validator(mode="after")
    def _batches_split(self) -> "StudyConfig":
        """Data-parallel steps give each process an equal slice of the global batch."""
        n = self.launcher.processes_per_job()
        sizes = (("refine.batch_size", self.refine.batch_size), ("training.batch_size", self.training.batch_size),
                 ("generator.batch_size", self.generator.batch_size))
        for key, size in sizes:
            if size % n:
                raise ValueError(f"{key}: {size} does not split over the {n} processes per job the launcher "
                                 f"starts: use a multiple of {n}")
        return self

    @property
    def latent_grid(self) -> int:
        """Side of the latent token grid (and of the prior features aligned to it)."""
        return self.data.resolution // self.tokenizer.downsample

    @property
    def sample_n(self) -> int:
        """Generated images per evaluation: evaluation.num_samples, whatever the splits hold."""
        return self.evaluation.num_samples

    @property
    def reference_n(self) -> int:
        """Real reference images drawn from the train split (evaluation.reference_images replaces them)."""
        return min(self.evaluation.num_samples, self.data.train_size)

    @property
    def heldout_n(self) -> int:
        """Held-out reals: the rFD originals and the sampling floor's set."""
        return min(self.evaluation.num_samples, self.data.val_size)

    @property
    def fd_n(self) -> int:
        """The equal N at which the controls compare generated images with reconstructions and originals."""
        return min(self.sample_n, self.reference_n, self.heldout_n)

    def fd_n_note(self) -> str | None:
        """One line when a score reads fewer images than evaluation.num_samples asks for, else None."""
        lowered = [f"{what} {n} (data.{key} holds {n})" for what, n, key in (
            ("the train reference set", self.reference_n, "train_size"), ("the held-out set (rFD, floors)", self.heldout_n, "val_size"))
            if n < self.sample_n and not (key == "train_size" and self.evaluation.reference_images)]
        if not lowered:
            return None
        return (f"evaluation.num_samples: {self.sample_n} generated images per score, but {' and '.join(lowered)}: "
                f"those scores carry their own N (protocol `n_*`), and the controls compare at {self.fd_n}")

    def guidance_note(self) -> str | None:
        """One line when the guidance sweep scores fewer images than the FD features have dimensions, else None."""
        sampler, ev = self.evaluation.sampler, self.evaluation
        if not sampler.cfg_grid:
            return None
        dim = fidelity_feature_dim(ev.extractor, ev.inception_weights)
        if sampler.cfg_grid_samples >= dim:
            return None
        return (f"evaluation.sampler.cfg_grid_samples: {sampler.cfg_grid_samples} images for {dim}-d features: FD's "
                f"small-N bias shrinks with the samples' spread, so the sweep leans to strong guidance; use at least {dim}")

    def notes(self) -> list[str]:
        """What the study's settings leave unequal or biased, one line each (console, study.json, report)."""
        return [note for note in (self.fd_n_note(), self.guidance_note()) if note]

    def study_dir(self) -> Path:
        return Path(self.output_dir or Path("outputs") / self.name).resolve()


