"""Expand a study into runs (variant x seed), each with every stage's hash and folder from the graph.

Shared stages live in content-addressed folders (`shared/<stage>/<hash>/`), so every run on the
same inputs reuses them; per-run stages live under `runs/<variant>/seed<seed>/<stage>/`. A RunSpec
records its folders relative to the study folder, so a copied or moved study still works and never
writes into the folder it came from.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pae_lab import __version__
from pae_lab.fsutil import read_json, write_json
from pae_lab.plan.graph import STAGES, RunKey, ordered, result_columns, run_identity, run_tokenizer, stage_hashes
from pae_lab.plan.layout import STAGE_DONE, RunLayout, StudyLayout
from pae_lab.config.schema import StudyConfig
from pae_lab.plan.identity import content_hash


class RunSpec(BaseModel):
    """Everything a job needs, written as run.json so any process or node can execute it."""

    study: str
    variant: str
    seed: int
    description: str = ""
    regularizers: dict[str, dict[str, Any]]
    run_path: str  # relative to the study folder
    stage_paths: dict[str, str]  # every stage the run uses, relative to the study folder
    hashes: dict[str, str]
    config: dict[str, Any]
    tracking_uri: str | None = None  # None: the study folder's own store
    mlflow_run_id: str | None = None
    study_dir: str = ""  # absolute; set from where the spec is found, never trusted from the file

    @classmethod
    def load(cls, run_json: str | Path) -> "RunSpec":
        path = Path(run_json).resolve()
        spec = cls.model_validate(read_json(path))
        root = path.parent
        for _ in Path(spec.run_path).parts:
            root = root.parent
        spec.study_dir = str(root)
        return spec

    def to_file(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"study_dir"})

    @property
    def key(self) -> str:
        return f"{self.study}/{self.variant}/seed{self.seed}"

    @property
    def identity(self) -> str:
        """The run's configuration identity: a changed config is another run (and MLflow run)."""
        return run_identity(self.hashes)

    @property
    def run_dir(self) -> Path:
        return Path(self.study_dir) / self.run_path

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir)

    def stage_dir(self, stage: str) -> Path:
        return Path(self.study_dir) / self.stage_paths[stage]

    def summary(self, stage: str) -> dict[str, Any]:
        """A finished stage's summary, only if it was finished for this configuration."""
        done = read_json(self.stage_dir(stage) / STAGE_DONE)
        return done.get("summary", {}) if done and done.get("hash") == self.hashes[stage] else {}

    def result_row(self) -> dict[str, Any]:
        """This run's values in results.csv, from the stages that declare columns (plan.graph)."""
        return result_columns({s: self.summary(s) for s in run_stage_names()})

    def study_config(self) -> StudyConfig:
        return StudyConfig.model_validate(self.config)


def stage_paths(study: StudyConfig, hashes: dict[str, str], run_path: str | None) -> dict[str, str]:
    """Folder of every stage, relative to the study folder."""
    paths = {}
    for name, digest in hashes.items():
        if STAGES.get(name).scope == "shared":
            paths[name] = f"shared/{name}/{digest}"
        elif run_path is not None:
            paths[name] = f"{run_path}/{name}"
    return paths


def shared_plan(study: StudyConfig) -> tuple[dict[str, str], dict[str, Path]]:
    """(hash, absolute folder) of every shared stage."""
    layout = StudyLayout(study.study_dir())
    hashes = stage_hashes(study)
    return hashes, {name: layout.shared(name, digest) for name, digest in hashes.items()}


def resolved_variants(study: StudyConfig) -> list[dict[str, Any]]:
    """Each variant of the study resolved to {name, description, regularizers, tokenizer} (every weight explicit).

    Resolving validates regularizers, which imports torch; the result is kept in the study folder,
    keyed by the variant specs, the plugins and pae-lab's version, so planning a study that has been
    run before (`pae-lab status`, a rerun) needs no torch at all.
    """
    cached = cached_variants(study)
    if cached is not None:
        return cached
    from pae_lab.variants import resolve_variant

    variants = [resolve_variant(entry).model_dump(mode="json") for entry in study.variants]
    cache = StudyLayout(study.study_dir()).variants
    if cache.parent.is_dir():
        write_json(cache, {"key": _variants_key(study), "variants": variants})
    return variants


def run_study(study: StudyConfig, key: RunKey) -> StudyConfig:
    """The study as one run sees it: the variant's own `tokenizer` block, if it has one, replaces the study's."""
    return study if key.tokenizer is None else study.model_copy(update={"tokenizer": run_tokenizer(study, key)})


def _variants_key(study: StudyConfig) -> str:
    return content_hash("variants", study.variants, study.plugins, __version__)


def cached_variants(study: StudyConfig) -> list[dict[str, Any]] | None:
    """The study's variants as resolved (and so validated) before, or None when they changed since."""
    cached = read_json(StudyLayout(study.study_dir()).variants) or {}
    return cached["variants"] if cached.get("key") == _variants_key(study) else None


def expand(study: StudyConfig) -> list[RunSpec]:
    layout = StudyLayout(study.study_dir())
    runs = []
    for variant in resolved_variants(study):
        name, regularizers = variant["name"], variant["regularizers"]
        for seed in study.seeds:
            key = RunKey(name, regularizers, seed, variant.get("tokenizer"))
            config = run_study(study, key).model_dump(mode="json")
            hashes = stage_hashes(study, key)
            run_path = str(layout.run(name, seed).root.relative_to(layout.root))
            runs.append(RunSpec(
                study=study.name, variant=name, seed=seed, description=variant["description"],
                regularizers=regularizers, run_path=run_path, stage_paths=stage_paths(study, hashes, run_path),
                hashes=hashes, config=config, tracking_uri=study.tracking.uri, study_dir=str(layout.root)))
    return runs


def run_stage_names() -> list[str]:
    return [s.name for s in ordered("run")]
