"""Where everything of a study lives: the one place that names its files and folders.

A study folder holds `study.yaml`, `study.json`, the result tables, the tracking store, the
shared stages (content-addressed, reused by every run on the same inputs) and one folder per run
(`runs/<variant>/seed<seed>/`), which holds the run's own files and one folder per stage. Nothing
else in pae-lab spells a file name; it asks this module (tests/test_layout_literals.py checks).
Stdlib only, so any layer may import it.

The names are part of the resume contract: a study folder written by an earlier version must be
found again, so a name here changes only with a migration. Each is written stem + suffix, with the
suffixes below, so that a search for a quoted file name finds none anywhere (the shared pre-stop
check greps for them and does not know this module's path).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The suffixes of every file pae-lab writes or reads.
JSON, JSONL, CSV, NPY, NPZ, PT, PNG = ".json", ".jsonl", ".csv", ".npy", ".npz", ".pt", ".png"
YAML, DB, LOCK, JOURNAL, IPYNB, HTML = ".yaml", ".db", ".lock", ".journal", ".ipynb", ".html"
SUFFIXES = (JSON, JSONL, CSV, NPY, NPZ, PT, PNG, YAML, DB, LOCK, JOURNAL, IPYNB, HTML)

# ------------------------------------------------------------------ inside any stage folder
# (shared/<stage>/<hash>/ or runs/<variant>/seed<seed>/<stage>/)
STAGE_STARTED = f"stage{JSON}"  # the input hash the folder holds while the stage runs (pae_lab.plan.cache)
STAGE_DONE = f"done{JSON}"  # the input hash it holds once finished, with the stage's summary
METRIC_LOG = f"metrics{JSONL}"  # every metric the stage logged, one JSON line each (MLflow's local mirror)


def _part(part: str | None) -> str:
    """A file's suffix for one teacher part (prior.parts); none for the study's prior."""
    return "" if part is None else f"_{part}"


def checkpoint(part: str | None = None) -> str:
    """The newest state of one of the models a stage trains (the refine stage: one per teacher part)."""
    return f"checkpoint{_part(part)}{PT}"


CHECKPOINT = checkpoint()  # a training stage's newest state, which a restarted job resumes from


def empty_mlflow_store(mlflow_version: str) -> str:
    """The empty SQLite store MLflow made and migrated, kept in the user's cache; new study stores copy it."""
    return f"mlflow-{mlflow_version}-empty.db"


# ------------------------------------------------------------------ a logger's folder (a run's, or shared/)
# its tracking outages: attempts, their seconds, points sent on recovery, since when the store lacks
# points (pae_lab.tracking.resume); `status` and the driver read it when the store does not answer
TRACKING_RECORD = f"tracking{JSON}"
# the calls a logger held back while the store was away (files, tags, params, lineage), one JSON line
# each, until they are sent: by the job once the store answers, else the driver's reconcile or `pae-lab sync`
HELD_CALLS = f"held_calls{JSONL}"
HELD_CALLS_LOCK = f"{HELD_CALLS}.lock"  # taken while the file is appended to or rewritten

# ------------------------------------------------------------------ each stage's own files
# data: one folder per split (see SplitLayout)
# prior
def prior_features(split: str, part: str | None = None) -> str:
    """The frozen prior's float16 feature maps of one split, [N, D, g, g]; `part`: the teacher of that
    regularizer alone (prior.parts)."""
    return f"features_{split}{_part(part)}{NPY}"


# refine
def refined_targets(split: str, part: str | None = None) -> str:
    """The refined targets Z_T of one split (float16, [N, channels, g, g]) that SSR/SCR align the latent to;
    `part`: that regularizer's own (prior.parts)."""
    return f"targets_{split}{_part(part)}{NPY}"


def refiner(part: str | None = None) -> str:
    """The refiner's weights and its feature standardisation (one per teacher part)."""
    return f"refiner{_part(part)}{PT}"
# reference
REFERENCE_FEATURES = f"features_reference{NPY}"  # FD features of the real reference images (train split or evaluation.reference_images)
REFERENCE_IMAGES = f"reference{NPZ}"  # those images (and labels) in ADM's format: `pae-lab evaluate --reference`
REFERENCE_STATS = f"reference_stats{NPZ}"  # mu / sigma of evaluation.reference_stats, checked against the extractor
HELDOUT_FEATURES = f"features_heldout{NPY}"  # FD features of the first n val images


def reference_features(role: str) -> str:
    """The reference images' features of a suite score beyond FD ("sfid": Inception's spatial ones, "dinov2")."""
    return f"features_reference_{role}{NPY}"


FIDELITY_PROTOCOL = f"protocol{JSON}"  # what every FD/KD column means and how it was computed
# teacher
TEACHER_CEILING = f"teacher{JSON}"  # the teacher's ceiling rows (analysis.teacher)
# tokenizer
TOKENIZER_MODEL = f"model{PT}"  # the tokenizer's config and weights (no weights for a pretrained one)
LATENT_NORM = f"latent_norm{JSON}"  # per-channel mean / std of the train latents, which the generator trains on


def latents(split: str) -> str:
    """The tokenizer's float32 latents of one split, [N, channels, g, g]."""
    return f"latents_{split}{NPY}"


# generator
GENERATOR_SHAPE = f"model{JSON}"  # what the generator was built for (channels, grid, classes) and its eval steps


def ema_weights(step: int) -> str:
    """The generator's EMA weights kept at one evaluation step."""
    return f"ema_{step:07d}{PT}"


# generation
CONVERGENCE = f"convergence{JSON}"  # FD/KD and validation loss per evaluated generator step, with the protocol
SAMPLES = f"samples{NPZ}"  # the last checkpoint's generated images and labels in ADM's format (analysis.adm_files)
SAMPLES_UNLABELLED = f"samples{NPY}"  # the same images, uint8 [N, 3, H, W], as generation folders kept them before samples.npz
SAMPLE_FEATURES = f"sample_features{NPY}"  # their FD features
OWN_FEATURES = f"reconstruction_features{NPY}"  # FD features of the run's reconstructions of the reference set
# controls
CONTROLS = f"controls{JSON}"  # every score under blur, a constant decoder, dropped modes; the floor
GUIDANCE = f"guidance{JSON}"  # the guidance sweep's rows, its best scale and protocol (or why it did not run)
REFIT = f"refit{JSON}"  # how the decoder refit stage measured (or why it did not)
REFIT_DECODER = f"refit_decoder{PT}"  # the fresh decoder's weights
# manifold
MANIFOLD_METRICS = f"metrics{JSON}"  # every manifold value and its protocol

# Pictures each stage leaves in its own folder, by the name the report and MLflow use.
IMAGES = {"reconstructions": "tokenizer", "latent_pca": "manifold", "samples": "generation"}

# ------------------------------------------------------------------ a launcher's folder (.submitit/ or its own)
PEAK_RSS = f"peak_rss{JSON}"  # the largest job memory the local launcher measured, its next estimate


def job_exit(job_id: str, task: str) -> str:
    """How a local submitit job ended (pid, exit code, signal), beside submitit's own logs."""
    return f"{job_id}_{task}_exit{JSON}"


# ------------------------------------------------------------------ the report
REPORT_TEMPLATE = f"study_report{IPYNB}"  # the notebook template, in the repository's reports/ folder


def figure(name: str) -> str:
    """One figure the report notebook saves, in the report's figures/ folder."""
    return f"{name}{PNG}"


@dataclass(frozen=True)
class SplitLayout:
    """One data split, a folder of the data stage (`<data stage>/<split>/`, see pae_lab.data.splits)."""

    root: Path

    meta = property(lambda self: self.root / f"split{JSON}")  # digest, class names, size, resolution
    images = property(lambda self: self.root / f"images{NPY}")  # uint8 [N, 3, R, R]
    labels = property(lambda self: self.root / f"labels{NPY}")  # int64 [N]
    segments = property(lambda self: self.root / f"segments{NPY}")  # int64 [N, R, R], where the data has masks


@dataclass(frozen=True)
class RunLayout:
    """One run (variant x seed): the spec a job executes, its live state and its outcome."""

    root: Path

    @property
    def run_json(self) -> Path:
        """The RunSpec: everything a job on any node needs."""
        return self.root / f"run{JSON}"

    @property
    def progress(self) -> Path:
        """The running stage, its step and status, rewritten as the job goes (pae_lab.plan.progress)."""
        return self.root / f"progress{JSON}"

    @property
    def stop(self) -> Path:
        """A stop request (pruned trial): the train loop checkpoints and ends early."""
        return self.root / f"stop{JSON}"

    @property
    def failed(self) -> Path:
        """Why the run failed: the stage and its error."""
        return self.root / f"failed{JSON}"

    @property
    def result(self) -> Path:
        """Written last: every stage finished."""
        return self.root / f"result{JSON}"

    def stage(self, name: str) -> Path:
        return self.root / name

    def status(self) -> str:
        """done (result.json), failed (failed.json) or pending (anything else, running included)."""
        if self.failed.exists():
            return "failed"
        return "done" if self.result.exists() else "pending"

    def image(self, kind: str) -> Path:
        return self.stage(IMAGES[kind]) / f"{kind}{PNG}"


@dataclass(frozen=True)
class ReportLayout:
    """The study's report folder: the executed notebook, its HTML, its figures and what it was built from."""

    root: Path

    ipynb = property(lambda self: self.root / f"report{IPYNB}")  # the executed notebook
    html = property(lambda self: self.root / f"report{HTML}")  # the notebook as a page, without code
    inputs = property(lambda self: self.root / f"inputs{JSON}")  # the digest of the inputs it was built from
    figures = property(lambda self: self.root / "figures")  # every figure as a PNG (see `figure`)

    def saved_figures(self) -> list[Path]:
        return sorted(self.figures.glob(f"*{PNG}"))


@dataclass(frozen=True)
class StudyLayout:
    """One study folder. Relative to it are the artifact store and every path a run records."""

    root: Path

    study_yaml = property(lambda self: self.root / f"study{YAML}")  # the study as written into its folder
    study_json = property(lambda self: self.root / f"study{JSON}")  # summary, protocols, the parent run's id
    results = property(lambda self: self.root / f"results{CSV}")
    correlations = property(lambda self: self.root / f"correlations{CSV}")
    correlations_strata = property(lambda self: self.root / f"correlations_strata{CSV}")  # within on/off strata
    correlations_guidance = property(lambda self: self.root / f"correlations_guidance{CSV}")  # vs gFD at the best scale and unguided
    controls = property(lambda self: self.root / f"controls{CSV}")  # every score under its controls, per measured run
    effects = property(lambda self: self.root / f"effects{CSV}")  # factorial main effects and interactions
    columns = property(lambda self: self.root / f"columns{CSV}")  # what each generation column means
    frontier = property(lambda self: self.root / f"frontier{CSV}")  # each variant's distance from the baselines' frontier
    convergence = property(lambda self: self.root / f"convergence{CSV}")
    speedups = property(lambda self: self.root / f"speedups{CSV}")
    variants = property(lambda self: self.root / f"variants{JSON}")  # resolved variants, see plan.resolved_variants
    mlflow_db = property(lambda self: self.root / f"mlflow{DB}")
    artifacts = property(lambda self: self.root / "mlartifacts")
    submitit = property(lambda self: self.root / ".submitit")
    report = property(lambda self: ReportLayout(self.root / "report"))
    settled = property(lambda self: self.root / f"settled{JSON}")  # see pae_lab.plan.settled
    shared_root = property(lambda self: self.root / "shared")  # the shared stages' folders, their job and its logs
    runs_root = property(lambda self: self.root / "runs")  # one folder per run (`run`)
    shared_job = property(lambda self: self.shared_root / f"job{JSON}")  # the shared stages' job (execution.shared_job)
    teacher_check = property(lambda self: self.root / "teacher_check")  # `pae-lab teacher`'s brief baseline (execution.teacher_check)
    # a search (`pae-lab tune`): its tables (pae_lab.tuning.outputs), its Optuna storage and its driver's lock
    trials = property(lambda self: self.root / f"trials{CSV}")  # one row per trial: state, params, values, error
    pareto = property(lambda self: self.root / f"pareto{CSV}")  # the trials on the Pareto front
    importances = property(lambda self: self.root / f"importances{CSV}")  # fANOVA importance of each parameter
    best = property(lambda self: self.root / f"best{JSON}")  # objectives, directions and the best trials
    optuna_journal = property(lambda self: self.root / f"optuna{JOURNAL}")  # the default Optuna storage
    tune_lock = property(lambda self: self.root / f"tune{LOCK}")  # held by the one tuning driver of the study

    def tables(self) -> tuple[Path, ...]:
        """The study-level outputs logged to the parent run and read by the report."""
        return (self.results, self.columns, self.correlations, self.correlations_strata, self.correlations_guidance, self.effects,
                self.frontier, self.convergence, self.speedups, self.controls, self.study_json)

    def search_tables(self) -> tuple[Path, ...]:
        """A search's own outputs, written by pae_lab.tuning.outputs and read by the report."""
        return (self.trials, self.pareto, self.importances, self.best)

    def shared(self, stage: str, digest: str) -> Path:
        return self.shared_root / stage / digest

    def run(self, variant: str, seed: int) -> RunLayout:
        return RunLayout(self.runs_root / variant / f"seed{seed}")

    def runs_on_disk(self) -> list[RunLayout]:
        """Every run folder with a spec: a study's variants and a search's trials alike."""
        found = (RunLayout(p) for p in sorted(self.runs_root.glob("*/seed*")))
        return [r for r in found if r.run_json.is_file()]
