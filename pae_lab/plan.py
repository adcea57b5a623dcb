"""Expand a study into runs (variant x seed) and give every stage its identity and folder.

Shared stages (data, prior, refine) live in content-addressed folders under `shared/`, so every run
on the same data and prior reuses them; per-run stages live under `runs/<variant>/seed<seed>/`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pae_lab.architectures import validate_tokenizer
from pae_lab.config import StudyConfig
from pae_lab.identity import content_hash
from pae_lab.variants import resolve_variant

RUN_STAGES = ("tokenizer", "manifold", "generator", "generation")
SHARED_STAGES = ("data", "prior", "refine")


def latent_grid(study: StudyConfig) -> int:
    return study.data.resolution // study.tokenizer.downsample


def shared_hashes(study: StudyConfig) -> dict[str, str]:
    data = content_hash("data", study.data)
    prior = content_hash("prior", data, study.prior.name, study.prior.params, latent_grid(study))
    refine = content_hash("refine", prior, study.refine, study.tokenizer.latent_channels)
    return {"data": data, "prior": prior, "refine": refine}


def run_hashes(study: StudyConfig, shared: dict[str, str], regularizers: dict[str, Any], seed: int) -> dict[str, str]:
    tokenizer = content_hash("tokenizer", shared["refine"], study.tokenizer, study.training, regularizers, seed, study.device)
    fidelity = (study.evaluation.extractor, study.evaluation.inception_weights)
    manifold = content_hash("manifold", tokenizer, study.metrics, fidelity)
    generator = content_hash("generator", tokenizer, study.generator, seed)
    generation = content_hash("generation", generator, study.evaluation)
    return {"tokenizer": tokenizer, "manifold": manifold, "generator": generator, "generation": generation}


@dataclass(frozen=True)
class Layout:
    """Where everything of one study lives."""

    root: Path

    def shared(self, stage: str, digest: str) -> Path:
        return self.root / "shared" / stage / digest

    def run_dir(self, variant: str, seed: int) -> Path:
        return self.root / "runs" / variant / f"seed{seed}"

    @property
    def submitit(self) -> Path:
        return self.root / ".submitit"


class RunSpec(BaseModel):
    """Everything a job needs, written as run.json so any process or node can execute it."""

    study: str
    variant: str
    seed: int
    description: str = ""
    regularizers: dict[str, dict[str, Any]]
    study_dir: str
    run_dir: str
    hashes: dict[str, str]
    shared_dirs: dict[str, str]
    config: dict[str, Any]
    tracking_uri: str | None = None
    mlflow_run_id: str | None = None

    @property
    def key(self) -> str:
        return f"{self.study}/{self.variant}/seed{self.seed}"

    def study_config(self) -> StudyConfig:
        return StudyConfig.model_validate(self.config)


def run_study(study: StudyConfig, tokenizer: dict[str, Any] | None) -> StudyConfig:
    """The study as one variant sees it: its own `tokenizer` block, if it has one, replaces the study's."""
    return study if tokenizer is None else study.model_copy(update={"tokenizer": validate_tokenizer(tokenizer)})


def expand(study: StudyConfig) -> list[RunSpec]:
    layout = Layout(study.study_dir())
    shared = shared_hashes(study)
    shared_dirs = {stage: str(layout.shared(stage, digest)) for stage, digest in shared.items()}
    runs = []
    for entry in study.variants:
        variant = resolve_variant(entry)
        own = run_study(study, variant.tokenizer)
        config = own.model_dump(mode="json")
        regularizers = {name: dict(params) for name, params in variant.regularizers.items()}
        for seed in study.seeds:
            runs.append(
                RunSpec(
                    study=study.name, variant=variant.name, seed=seed, description=variant.description,
                    regularizers=regularizers, study_dir=str(layout.root),
                    run_dir=str(layout.run_dir(variant.name, seed)),
                    hashes={**shared, **run_hashes(own, shared, regularizers, seed)},
                    shared_dirs=shared_dirs, config=config,
                )
            )
    return runs
