"""The study schema: one pydantic model per concern, defaults that run on a laptop CPU.

`load_study(path)` is the only way in: it reads YAML safely, imports the study's plugin modules
(so user registries are filled before names are checked), validates, and turns every problem into
one `StudyError` line that names the file, the key path and the bad value.
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from analysis.panel import PanelConfig
from pae_lab.generation.samplers import SamplerConfig
from pae_lab.models.generator import GeneratorConfig
from pae_lab.architectures import TokenizerSpec
from pae_lab.models.tokenizer import TokenizerConfig
from pae_lab.models.zoo import ARCHITECTURES  # noqa: F401  (built-in architectures register on import)
from pae_lab.tuning.space import SearchConfig


class StudyError(ValueError):
    """A study file that cannot run; the message is the one line the CLI prints."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DataConfig(Strict):
    """The images every run trains and is measured on."""

    name: str = Field("scenes", description="Dataset registry entry (`pae-lab registry datasets`).")
    resolution: int = Field(32, ge=8, description="Image side in pixels; divisible by tokenizer.downsample.")
    train_size: int = Field(2048, ge=16, description="Training images (tokenizer, prior, generator).")
    val_size: int = Field(256, ge=16, description="Held-out images for the manifold metrics and rFID.")
    seed: int = Field(0, description="Seed of the dataset itself (procedural data, subsets).")
    params: dict[str, Any] = Field(default_factory=dict, description="Extra keyword arguments of the dataset factory.")
    workers: int = Field(2, ge=0, description="DataLoader workers decoding a streamed dataset (imagefolder) while it is written.")


class PriorConfig(Strict):
    """The frozen vision foundation model whose features the regularizers align to."""

    name: str = Field("effnet_lite0", description="Prior (frozen VFM) registry entry.")
    params: dict[str, Any] = Field(default_factory=dict, description="Extra keyword arguments, e.g. timm `model` and `weights`.")
    batch_size: int = Field(64, ge=1, description="Batch size for the one-off feature extraction.")


class RefineConfig(Strict):
    """The refined prior: a projector to the latent width trained with a Gram loss (method.md)."""

    enabled: bool = Field(True, description="False: targets are a PCA projection of the raw VFM features.")
    steps: int = Field(300, ge=0, description="Training steps of projector + deprojector.")
    batch_size: int = Field(64, ge=1, description="Feature maps per step.")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate.")
    depth: int = Field(2, ge=1, description="Deprojector transformer layers.")
    l_rep: float = Field(1.0, ge=0, description="Weight of the feature-reconstruction term.")
    l_gram: float = Field(1.0, ge=0, description="Weight of the Gram term against the low-pass target.")
    lowpass: float = Field(0.4, ge=0, description="Low-pass strength of the Gram target.")
    seed: int = Field(0, description="Seed of the refiner (shared by every run).")


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
    log_every: int = Field(10, ge=1, description="Steps between logged metrics.")
    checkpoint_every: int = Field(50, ge=1, description="Steps between resumable checkpoints.")


class EvaluationConfig(Strict):
    """The gFID / rFID protocol, fixed per study and stored beside every value."""

    num_samples: int = Field(1024, ge=16, description="Generated images per gFID evaluation.")
    extractor: Literal["auto", "inception", "effnet-lite0"] = Field(
        "auto", description="auto: Inception when `inception_weights` is set or the file is in the torch hub cache, else the embedded "
        "EfficientNet-Lite0 (named fd_effnet_lite0).")
    inception_weights: str | None = Field(None, description="Local path of torch-fidelity's Inception weights (pt_inception-2015-12-05).")
    sampler: SamplerConfig = Field(default_factory=SamplerConfig, description="How samples are drawn for gFID.")
    batch_size: int = Field(256, ge=1, description="Decoding batch size.")
    reference_size: int | None = Field(None, ge=16, description="gFID reference: the first this many train images "
                                       "(None: the whole train split). Bounds the FD step's time and memory at scale.")


class SlurmConfig(Strict):
    """SLURM settings of the `slurm` launcher (submitit job arrays)."""

    partition: str | None = Field(None, description="SLURM partition.")
    account: str | None = Field(None, description="SLURM account.")
    qos: str | None = Field(None, description="SLURM QOS.")
    gpus_per_node: int = Field(1, ge=0, description="GPUs per job.")
    cpus_per_task: int = Field(8, ge=1, description="CPU cores per job (also torch threads).")
    mem_gb: int = Field(32, ge=1, description="Memory per job in GB.")
    timeout_min: int = Field(240, ge=3, description="Checkpointable jobs are requeued on timeout (>= 3: submitit signals 90 s early).")
    max_num_timeout: int = Field(3, ge=0, description="Requeues on timeout before giving up.")
    array_parallelism: int = Field(64, ge=1, description="Array jobs running at once (slurm_array_parallelism).")
    additional_parameters: dict[str, Any] = Field(default_factory=dict, description="Extra sbatch options, e.g. {constraint: a100}.")


class LauncherConfig(Strict):
    """Where the runs execute."""

    name: str = Field("inline", description="Launcher registry entry: inline (this process), local (submitit "
                      "subprocesses) or slurm (submitit job arrays).")
    max_parallel: int = Field(1, ge=1, description="Runs in flight at once (local).")
    threads_per_job: int | None = Field(None, ge=1, description="torch threads per job; default: CPU cores / max_parallel.")
    timeout_min: int = Field(120, ge=1, description="Wall-clock limit of one local job.")
    slurm: SlurmConfig = Field(default_factory=SlurmConfig, description="Used by the slurm launcher.")


class TrackingConfig(Strict):
    """MLflow: one parent run per study, one child run per (variant, seed)."""

    uri: str | None = Field(None, description="MLflow tracking URI; default: sqlite:///<study dir>/mlflow.db. http(s):// works.")
    experiment: str | None = Field(None, description="Experiment name; default: the study name.")
    log_images: bool = Field(True, description="Log reconstruction and sample grids as images.")


class StudyConfig(Strict):
    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$", description="Study name: experiment, folder and report title.")
    description: str = Field("", description="One line on what the study asks.")
    output_dir: str | None = Field(None, description="Study folder; default outputs/<name> (relative to the working directory).")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="Training seeds: every variant runs once per seed.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA (bf16 autocast, channels-last) when present, else CPU.")
    plugins: list[str] = Field(default_factory=list, description="Python modules imported first: they register datasets, priors, regularizers, variants.")
    data: DataConfig = Field(default_factory=DataConfig)
    prior: PriorConfig = Field(default_factory=PriorConfig)
    refine: RefineConfig = Field(default_factory=RefineConfig)
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerConfig, description="Tokenizer architecture: `name` picks conv, pae, external or a plugin's entry; the keys below are per architecture.")
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    variants: list[str | dict[str, Any]] = Field(default_factory=lambda: ["baseline", "pae"], min_length=1, description="Registered variant names, or inline {name, base, regularizers: {reg: {weight, ...} | null}}.")
    metrics: PanelConfig = Field(default_factory=PanelConfig)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    launcher: LauncherConfig = Field(default_factory=LauncherConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    search: SearchConfig | None = Field(None, description="Optuna search block (`pae-lab tune`, see pae_lab/tuning/space.py).")

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be unique")
        return seeds

    def study_dir(self) -> Path:
        return Path(self.output_dir or Path("outputs") / self.name).resolve()


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _format_validation(path: Path, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith(("str", "dict["))))
    msg = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    shown = "" if first["type"] == "missing" or isinstance(value, dict) else f" (got {value!r})"
    more = f" [+{len(err.errors()) - 1} more]" if len(err.errors()) > 1 else ""
    return f"{path}: {_loc(loc) or '<top>'}: {msg}{shown}{more}"


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise StudyError(f"{path}: study file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise StudyError(f"{path}: invalid YAML: {where}{getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: the study must be a YAML mapping, got {type(raw).__name__}")
    return raw


def import_plugins(path: Path, modules: Any) -> None:
    """Import the study's plugin modules; they are looked up in the working directory too."""
    if modules and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for i, module in enumerate(modules or []):
        try:
            importlib.import_module(str(module))
        except Exception as exc:  # a broken plugin must name itself, not crash with a traceback
            raise StudyError(f"{path}: plugins[{i}]: cannot import {module!r}: {exc}") from None


def parse_study(raw: dict[str, Any], path: Path, check_files: bool = True) -> StudyConfig:
    import_plugins(path, raw.get("plugins"))
    try:
        study = StudyConfig.model_validate(raw)
    except ValidationError as err:
        raise StudyError(_format_validation(path, err)) from None
    from pae_lab.preflight import check_study

    check_study(study, path, check_files)
    return study


def load_study(path: str | Path, overrides: dict[str, Any] | None = None, check_files: bool = True) -> StudyConfig:
    """Read, validate and preflight a study file; `overrides` are dotted keys set on top.

    `check_files=False` (dry runs on a machine without the data) skips only the existence checks.
    """
    path = Path(path)
    raw = read_yaml(path)
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value)
    return parse_study(raw, path, check_files)


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set `a.b.c` in nested dicts, creating levels as needed."""
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise StudyError(f"cannot set {key!r}: {part!r} is not a mapping")
    node[leaf] = value
