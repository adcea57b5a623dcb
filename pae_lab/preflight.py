"""Checks a study can run before anything trains: names exist, files exist, shapes fit.

Each failure is a StudyError naming the file, the key path and the bad value, and saying what to do.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pae_lab.errors import StudyError
from pae_lab.registry import RegistryError

if TYPE_CHECKING:
    from pae_lab.schema import StudyConfig


def _fail(path: Path, key: str, message: str) -> None:
    raise StudyError(f"{path}: {key}: {message}")


def _check_name(path: Path, key: str, registry, name: str) -> None:
    if name not in registry:
        _fail(path, key, f"unknown {registry.kind} {name!r}; registered: {', '.join(registry.names()) or 'none'}")


def missing_files(study: "StudyConfig") -> list[tuple[str, str]]:
    """(key, message) for every file or folder the study names that is not there."""
    named = [("data.params.root", study.data.params.get("root"), "image folder"),
             ("prior.params.weights", study.prior.params.get("weights"), "prior weights file"),
             ("evaluation.inception_weights", study.evaluation.inception_weights, "Inception weights file")]
    return [(key, f"{what} not found: {value!r} (paths are relative to the working directory)")
            for key, value, what in named if value is not None and not Path(value).expanduser().exists()]


def check_study(study: "StudyConfig", path: Path, check_files: bool = True) -> None:
    """Raise a StudyError for the first problem; `check_files=False` leaves file checks to `missing_files`."""
    from pae_lab.catalog import DATASETS, PERCEPTUAL, PRIORS, SAMPLERS
    from pae_lab.launch import LAUNCHERS

    _check_name(path, "data.name", DATASETS, study.data.name)
    _check_name(path, "prior.name", PRIORS, study.prior.name)
    _check_name(path, "training.perceptual.name", PERCEPTUAL, study.training.perceptual.name)
    _check_name(path, "launcher.name", LAUNCHERS, study.launcher.name)
    _check_name(path, "evaluation.sampler.method", SAMPLERS, study.evaluation.sampler.method)
    for key, message in missing_files(study) if check_files else []:
        _fail(path, key, message)
    from analysis.fidelity_names import inception_weights_or_cached

    if study.evaluation.extractor == "inception" and not inception_weights_or_cached(study.evaluation.inception_weights):
        _fail(path, "evaluation.inception_weights", "extractor 'inception' needs a local weights file "
              "(torch-fidelity's pt_inception-2015-12-05-6726825d.pth, named here or in the torch hub cache); "
              "nothing is downloaded")
    f = study.tokenizer.downsample
    if study.data.resolution % f:
        _fail(path, "data.resolution", f"{study.data.resolution} is not divisible by tokenizer.downsample ({f})")
    grid = study.data.resolution // f
    if grid % study.generator.patch:
        _fail(path, "generator.patch", f"{study.generator.patch} does not divide the latent grid ({grid})")
    from pae_lab.plan import cached_variants

    cached = cached_variants(study)  # specs resolved when the study was planned need no torch to check
    names = set()
    for i, entry in enumerate(study.variants):
        name = cached[i]["name"] if cached is not None else _resolved_name(path, i, entry)
        if name in names:
            _fail(path, f"variants[{i}]", f"variant name {name!r} appears twice")
        names.add(name)


def _resolved_name(path: Path, i: int, entry) -> str:
    from pae_lab.variants import resolve_variant  # validating a variant builds its regularizers: torch

    try:
        return resolve_variant(entry).name
    except (RegistryError, ValueError, TypeError) as exc:
        raise StudyError(f"{path}: variants[{i}]: {exc}") from None
