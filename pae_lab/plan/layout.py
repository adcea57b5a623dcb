"""Where everything of a study lives: the one place that names its files and folders.

A study folder holds `study.yaml`, `study.json`, the result tables, the tracking store, the
shared stages (content-addressed, reused by every run on the same inputs) and one folder per run
(`runs/<variant>/seed<seed>/`), which holds the run's own files and one folder per stage. Nothing
else in pae-lab spells a file name; it asks this module. Stdlib only, so any layer may import it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Inside a stage folder: which input hash it holds (stage.json while running, done.json when finished).
STAGE_STARTED = "stage.json"
STAGE_DONE = "done.json"

# Pictures each stage leaves in its own folder, by the name the report and MLflow use.
IMAGES = {"reconstructions": "tokenizer", "latent_pca": "manifold", "samples": "generation"}


@dataclass(frozen=True)
class RunLayout:
    """One run (variant x seed): the spec a job executes, its live state and its outcome."""

    root: Path

    @property
    def run_json(self) -> Path:
        """The RunSpec: everything a job on any node needs."""
        return self.root / "run.json"

    @property
    def progress(self) -> Path:
        return self.root / "progress.json"

    @property
    def stop(self) -> Path:
        """A stop request (pruned trial): the train loop checkpoints and ends early."""
        return self.root / "stop.json"

    @property
    def failed(self) -> Path:
        return self.root / "failed.json"

    @property
    def result(self) -> Path:
        """Written last: every stage finished."""
        return self.root / "result.json"

    def stage(self, name: str) -> Path:
        return self.root / name

    def status(self) -> str:
        """done (result.json), failed (failed.json) or pending (anything else, running included)."""
        if self.failed.exists():
            return "failed"
        return "done" if self.result.exists() else "pending"

    def image(self, kind: str) -> Path:
        return self.stage(IMAGES[kind]) / f"{kind}.png"


@dataclass(frozen=True)
class StudyLayout:
    """One study folder. Relative to it are the artifact store and every path a run records."""

    root: Path

    study_yaml = property(lambda self: self.root / "study.yaml")
    study_json = property(lambda self: self.root / "study.json")
    results = property(lambda self: self.root / "results.csv")
    correlations = property(lambda self: self.root / "correlations.csv")
    correlations_strata = property(lambda self: self.root / "correlations_strata.csv")  # within on/off strata
    effects = property(lambda self: self.root / "effects.csv")  # factorial main effects and interactions
    columns = property(lambda self: self.root / "columns.csv")  # what each generation column means
    convergence = property(lambda self: self.root / "convergence.csv")
    speedups = property(lambda self: self.root / "speedups.csv")
    variants = property(lambda self: self.root / "variants.json")  # resolved variants, see plan.resolved_variants
    mlflow_db = property(lambda self: self.root / "mlflow.db")
    artifacts = property(lambda self: self.root / "mlartifacts")
    submitit = property(lambda self: self.root / ".submitit")
    report_dir = property(lambda self: self.root / "report")
    settled = property(lambda self: self.root / "settled.json")  # see pae_lab.plan.settled

    def tables(self) -> tuple[Path, ...]:
        """The study-level outputs logged to the parent run and read by the report."""
        return (self.results, self.columns, self.correlations, self.correlations_strata, self.effects,
                self.convergence, self.speedups, self.study_json)

    def shared(self, stage: str, digest: str) -> Path:
        return self.root / "shared" / stage / digest

    def run(self, variant: str, seed: int) -> RunLayout:
        return RunLayout(self.root / "runs" / variant / f"seed{seed}")

    def runs_on_disk(self) -> list[RunLayout]:
        """Every run folder with a spec: a study's variants and a search's trials alike."""
        found = (RunLayout(p) for p in sorted((self.root / "runs").glob("*/seed*")))
        return [r for r in found if r.run_json.is_file()]
