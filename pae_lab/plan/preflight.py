"""Checks a study can run before anything trains: names exist, files exist, shapes fit.

Each failure is a StudyError naming the file, the key path and the bad value, and saying what to do.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from pae_lab.config.errors import StudyError
from pae_lab.config.loading import load_config
from pae_lab.registry import RegistryError

if TYPE_CHECKING:
    from pae_lab.config.schema import StudyConfig


def _fail(path: Path, key: str, message: str) -> None:
    raise StudyError(f"{path}: {key}: {message}")


def _check_name(path: Path, key: str, registry, name: str) -> None:
    if name not in registry:
        _fail(path, key, f"unknown {registry.kind} {name!r}; registered: {', '.join(registry.names()) or 'none'}")


def _check_part(path: Path, study: "StudyConfig", part: str) -> None:
    """A teacher part names a regularizer that aligns to a target (ssr, scr), and a registered prior."""
    from pae_lab.catalog import PRIORS, REGULARIZERS

    key = f"prior.parts.{part}"
    _check_name(path, key, REGULARIZERS, part)
    needs = REGULARIZERS.get(part).needs
    if "target" not in needs:
        reads = f"it reads {', '.join(sorted(needs))}" if needs else "it reads no prior"
        _fail(path, key, f"regularizer {part!r} aligns to no refined target ({reads}, always the study's prior); "
                         "a part is for one that does, e.g. ssr or scr")
    _check_name(path, f"{key}.name", PRIORS, study.prior.part(part)[0])


def variant_tokenizers(study: "StudyConfig") -> list[tuple[str, Any]]:
    """(key, tokenizer config) of the study's tokenizer and of every variant that brings its own."""
    from pae_lab.architectures import validate_tokenizer
    from pae_lab.plan.runs import cached_variants

    cached = cached_variants(study)  # resolved when the study was planned: no torch needed
    out: list[tuple[str, Any]] = [("tokenizer", study.tokenizer)]
    for i, entry in enumerate(study.variants):
        try:
            own = cached[i].get("tokenizer") if cached is not None else _resolved(Path(), i, entry).tokenizer
        except StudyError:
            continue  # reported by check_study under variants[i]
        if own is not None:
            try:
                out.append((f"variants[{i}].tokenizer", validate_tokenizer(own)))
            except ValidationError:
                continue  # reported by check_study with the exact key
    return out


def missing_files(study: "StudyConfig") -> list[tuple[str, str]]:
    """(key, message) for every file or folder the study names that is not there."""
    named = [("data.params.root", study.data.params.get("root"), "image folder"),
             ("prior.params.weights", study.prior.params.get("weights"), "prior weights file"),
             ("evaluation.inception_weights", study.evaluation.inception_weights, "Inception weights file"),
             ("evaluation.dinov2_weights", study.evaluation.dinov2_weights, "DINOv2 weights file"),
             ("evaluation.reference_images", study.evaluation.reference_images, "reference images file"),
             ("evaluation.reference_stats", study.evaluation.reference_stats, "reference statistics file")]
    named += [(f"prior.parts.{part}.params.weights", own.params.get("weights"), "prior weights file")
              for part, own in study.prior.parts.items()]
    named += [(f"{key}.{sub}", value, what) for key, tok in variant_tokenizers(study) for sub, value, what in tok.local_files()]
    return [(key, f"{what} not found: {value!r} (paths are relative to the working directory)")
            for key, value, what in named if value is not None and not Path(value).expanduser().exists()]


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a parent we may not search: look further up
        return False


def output_dir_problem(study: "StudyConfig") -> str | None:
    """Why the study folder cannot be made or written, or None.

    Its nearest existing parent must be a folder we can create in. That is probed (a folder made and
    removed at once) rather than asked of `os.access`, which tells root yes even for /proc or a read-only mount.
    """
    folder = study.study_dir()
    parent = next(p for p in (folder, *folder.parents) if _exists(p))
    if not parent.is_dir():
        return f"{parent} is a file, not a folder"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".pae-lab-probe-", dir=parent))
    except OSError as exc:
        return f"cannot create folders in {parent} ({exc.strerror})"
    return None


def describe_data(study: "StudyConfig") -> tuple[str, bool] | None:
    """For `--dry-run`: (one line on a streamed image folder's layout and image counts, whether it is usable), or
    None when the study names no such folder that exists (a missing one is reported by `missing_files`)."""
    from pae_lab.data.stream import STREAMING, describe_folder

    root = study.data.params.get("root")
    if study.data.name not in STREAMING or not root or not Path(root).expanduser().is_dir():
        return None
    try:
        return f"data.params.root: {describe_folder(seed=study.data.seed, **study.data.params)}", True
    except FileNotFoundError as exc:
        return str(exc), False


def check_study(study: "StudyConfig", path: Path, check_files: bool = True) -> None:
    """Raise a StudyError for the first problem; `check_files=False` leaves input file checks to `missing_files`.

    The output folder is checked first and always, dry runs included: reading the study's cached plan
    from a folder under a file fails, and nothing would run anyway.
    """
    from pae_lab.catalog import DATASETS, LAUNCHERS, PERCEPTUAL, PRIORS, SAMPLERS

    problem = output_dir_problem(study)
    if problem:
        shown = repr(study.output_dir) if study.output_dir else f"(default) {str(Path('outputs') / study.name)!r}"
        _fail(path, "output_dir", f"{shown} cannot be created: {problem}")

    _check_name(path, "data.name", DATASETS, study.data.name)
    _check_name(path, "prior.name", PRIORS, study.prior.name)
    for part in study.prior.parts:
        _check_part(path, study, part)
    _check_name(path, "training.perceptual.name", PERCEPTUAL, study.training.perceptual.name)
    _check_name(path, "launcher.name", LAUNCHERS, study.launcher.name)
    _check_name(path, "evaluation.sampler.method", SAMPLERS, study.evaluation.sampler.method)
    for key, message in missing_files(study) if check_files else []:
        _fail(path, key, message)
    root = study.data.params.get("root")
    if check_files and root:  # only a study on a folder imports the data package (torch)
        from pae_lab.data.stream import STREAMING, folder_problem

        problem = folder_problem(root) if study.data.name in STREAMING else None
        if problem:
            _fail(path, "data.params.root", f"{root!r}: {problem}")
    from analysis.fidelity_names import inception_weights_or_cached

    if study.evaluation.extractor == "inception" and not inception_weights_or_cached(study.evaluation.inception_weights):
        _fail(path, "evaluation.inception_weights", "extractor 'inception' needs a local weights file "
              "(torch-fidelity's pt_inception-2015-12-05-6726825d.pth, named here or in the torch hub cache); "
              "nothing is downloaded")
    from pae_lab.plan.runs import cached_variants

    cached = cached_variants(study)  # specs resolved when the study was planned need no torch to check
    names = set()
    for i, entry in enumerate(study.variants):
        variant = SimpleNamespace(**cached[i]) if cached is not None else _resolved(path, i, entry)
        if variant.name in names:
            _fail(path, f"variants[{i}]", f"variant name {variant.name!r} appears twice")
        names.add(variant.name)
        if variant.tokenizer is not None:
            _check_variant_tokenizer(study, path, f"variants[{i}]", variant)
    for key, tok in variant_tokenizers(study):
        _check_tokenizer_names(path, key, tok)
        _check_grid(study, path, key, tok)


def _check_tokenizer_names(path: Path, key: str, tok) -> None:
    """The registry entries a tokenizer block names: an external model's adapter, a `pae` encoder's VFM."""
    from pae_lab.catalog import ADAPTERS, PRIORS
    from pae_lab.config.tokenizers import ExternalConfig, PAEConfig

    if isinstance(tok, ExternalConfig):
        _check_name(path, f"{key}.adapter", ADAPTERS, tok.adapter)
    if isinstance(tok, PAEConfig):
        _check_name(path, f"{key}.vfm.name", PRIORS, tok.vfm.name)


def _check_variant_tokenizer(study: "StudyConfig", path: Path, key: str, variant) -> None:
    """A variant's own tokenizer: valid; if trained, on the study's downsample (the prior features are at its
    grid) and, where a regularizer reads the shared refined targets, on its latent_channels too. An
    unregularized baseline may change its width: the frontier's width arm."""
    from pae_lab.architectures import architecture, validate_tokenizer

    try:
        tok = validate_tokenizer(variant.tokenizer)
    except ValidationError as err:
        first = err.errors()[0]
        where = "".join(f".{p}" for p in first["loc"])
        _fail(path, f"{key}.tokenizer{where}", f"{first['msg'].removeprefix('Value error, ')} (got {first.get('input')!r})")
    if architecture(tok).trainable:
        theirs, ours = (tok.latent_channels, tok.downsample), (study.tokenizer.latent_channels, study.tokenizer.downsample)
        reads_target = False  # a variant planned before is a plain record (no `needs`): ask the registry
        if theirs[0] != ours[0] and variant.regularizers:  # and only here (it imports torch)
            from pae_lab.variants import regularizer_needs

            reads_target = "target" in regularizer_needs(variant.regularizers)
        if theirs[1] != ours[1] or reads_target:
            _fail(path, f"{key}.tokenizer", f"a trained variant tokenizer must keep the study's (latent_channels, downsample) "
                  f"{ours}, got {theirs}: the refined prior targets its regularizers read are shared by every run "
                  "(only the downsample must stay for a variant without ssr / scr)")
    elif variant.regularizers:
        _fail(path, f"{key}.regularizers", f"{sorted(variant.regularizers)} cannot act on the pretrained "
              f"{tok.name!r} tokenizer (it is not trained); drop them")


def _check_grid(study: "StudyConfig", path: Path, key: str, tok) -> None:
    f = tok.downsample
    if study.data.resolution % f:
        _fail(path, "data.resolution", f"{study.data.resolution} is not divisible by {key}.downsample ({f})")
    grid = study.data.resolution // f
    if grid % study.generator.patch:
        _fail(path, "generator.patch", f"{study.generator.patch} does not divide the latent grid ({grid}) of {key}")


def _resolved(path: Path, i: int, entry):
    from pae_lab.variants import resolve_variant  # validating a variant builds its regularizers: torch

    try:
        return resolve_variant(entry)
    except (RegistryError, ValueError, TypeError) as exc:
        raise StudyError(f"{path}: variants[{i}]: {exc}") from None


def load_study(path: str | Path, overrides: dict[str, Any] | None = None, check_files: bool = True,
               preflight: bool = True) -> "StudyConfig":
    """Read, validate and preflight a study file: the one way in; `overrides` are dotted keys set on top.

    `check_files=False` (dry runs on a machine without the data) skips only the input file checks;
    `preflight=False` (reading the state of a study, `pae-lab status`) skips the registry and file
    checks, which import the registries' code (torch).
    """
    study = load_config(path, overrides)
    if preflight:
        check_study(study, Path(path), check_files)
    return study
