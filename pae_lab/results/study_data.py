"""Read a study directory into one object the report works from; only results.csv must exist.

Every other file (study.json, correlations, convergence, effects, trials, the runs' training logs
and pictures) may be missing: its field is then None or empty, and the report says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from analysis.metric import METRICS
from analysis.metric_info import direction_of
from analysis.result import SPREAD_SUFFIXES
from pae_lab.plan.layout import GUIDANCE, IMAGES, METRIC_LOG, RunLayout, StudyLayout
from pae_lab.results.plots import metric_label, objective_columns
from pae_lab.results.report_columns import (GENERATION_OUTPUTS, ID_COLUMNS, first_column,
                                            is_generation_fd, is_generation_kd, is_reconstruction_fd)
from pae_lab.results.report_inputs import ReportError
from pae_lab.tracking.store import iter_jsonl

KINDS = ("study", "tune")
IMAGE_KINDS = tuple(IMAGES)


def _read_csv(path: Path) -> pd.DataFrame | None:
    """An optional table: None when the file is missing or holds no rows (the aggregator writes
    empty files for stages that produced nothing). Variant names stay strings even when numeric."""
    try:
        frame = pd.read_csv(path, dtype={"variant": str})
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return None
    return None if frame.empty else frame


def _seed_value(name: str) -> int | str:
    digits = name.removeprefix("seed_").removeprefix("seed")
    return int(digits) if digits.isdigit() else name


def _training_curves(runs: Path) -> pd.DataFrame | None:
    """Long table (variant, seed, step, key, value) from runs/<variant>/<seed>/tokenizer/metrics.jsonl."""
    frames = []
    for path in sorted(runs.glob(f"*/*/tokenizer/{METRIC_LOG}")):
        records = [r for r in iter_jsonl(path) if "step" in r]
        if not records:
            continue
        wide = pd.DataFrame.from_records(records)
        numeric = [c for c in wide.columns if c != "step" and pd.api.types.is_numeric_dtype(wide[c])]
        long = wide.melt(id_vars="step", value_vars=numeric, var_name="key").dropna(subset=["value"])
        long.insert(0, "seed", _seed_value(path.parts[-3]))
        long.insert(0, "variant", path.parts[-4])
        frames.append(long)
    return pd.concat(frames, ignore_index=True) if frames else None


def _guidance(runs: Path) -> pd.DataFrame | None:
    """Long table (variant, seed, cfg_scale, scores) of every run's guidance sweep (guidance/guidance.json)."""
    frames = []
    for path in sorted(runs.glob(f"*/*/guidance/{GUIDANCE}")):
        rows = json.loads(path.read_text()).get("rows") or []
        if rows:
            frames.append(pd.DataFrame(rows).assign(variant=path.parts[-4], seed=_seed_value(path.parts[-3])))
    return pd.concat(frames, ignore_index=True) if frames else None


def _images(runs: Path, variants: Sequence[str]) -> dict[str, dict[str, Path]]:
    """Per variant, the pictures of its first seed (by name) that has any."""
    found: dict[str, dict[str, Path]] = {}
    for variant in variants:
        for seed_dir in sorted(p for p in (runs / variant).glob("*") if p.is_dir()):
            pictures = {k: RunLayout(seed_dir).image(k) for k in IMAGE_KINDS}
            pictures = {k: p for k, p in pictures.items() if p.is_file()}
            if pictures:
                found[variant] = pictures
                break
    return found


# Fidelity columns are recognised by lookup among the declared ones (FidelityColumns), plus the


@dataclass
class StudyData:
    """Everything the report reads from one study directory; missing files are None / empty."""

    study_dir: Path
    results: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)
    kind: str = "study"
    correlations: pd.DataFrame | None = None
    convergence: pd.DataFrame | None = None
    speedups: pd.DataFrame | None = None
    training: pd.DataFrame | None = None
    images: dict[str, dict[str, Path]] = field(default_factory=dict)
    trials: pd.DataFrame | None = None
    pareto: pd.DataFrame | None = None
    importances: pd.DataFrame | None = None
    references: pd.DataFrame | None = None  # results.csv's teacher / reference rows (kind != variant)
    effects: pd.DataFrame | None = None  # effects.csv: factorial main effects and interactions
    controls: pd.DataFrame | None = None  # controls.csv: every score under blur, a constant decoder, dropped modes
    column_notes: pd.DataFrame | None = None  # columns.csv: what each generation column means, its controls' verdict
    guidance: pd.DataFrame | None = None  # every run's guidance sweep: gFD per cfg scale (evaluation.sampler.cfg_grid)

    def verdict(self, column: object) -> tuple[bool | None, str]:
        """(passed its controls: True / False / None when not measured, what it failed) from columns.csv."""
        notes = self.column_notes
        if notes is None or "passes_controls" not in notes or column not in set(notes["column"]):
            return None, ""
        row = notes[notes["column"] == column].iloc[0]
        passed = row["passes_controls"]
        failed = "" if pd.isna(row.get("failed_controls")) else str(row["failed_controls"])
        return (None if pd.isna(passed) else str(passed) == "True"), failed

    @property
    def target_failed_controls(self) -> bool:
        """Whether the score the study reads failed its controls (kept by `allow_failed_target`, or no
        target passed)."""
        return self.verdict(self.info.get("target"))[0] is False

    @property
    def variants(self) -> list[str]:
        return list(dict.fromkeys(self.results["variant"]))

    @property
    def metrics(self) -> list[str]:
        """Every numeric column of results.csv except id columns and per-run spreads (`*_std`, ...)."""
        return [c for c in self.results.columns if c not in ID_COLUMNS and not c.endswith(SPREAD_SUFFIXES)
                and pd.api.types.is_numeric_dtype(self.results[c])]

    @property
    def target(self) -> str | None:
        """The gFID-like column: study.json's `target`, else the first generation FD column."""
        return first_column(self.metrics, self.info.get("target"), is_generation_fd)

    @property
    def generation(self) -> str | None:
        """The gFD column (generated vs real): study.json's `gfd`, else the first generation FD column."""
        return first_column(self.metrics, self.info.get("gfd"), is_generation_fd)

    @property
    def contrast(self) -> str | None:
        """The rFID-like column (reconstruction FD), the contrast every latent metric is held against."""
        return first_column(self.metrics, self.info.get("contrast"), is_reconstruction_fd)

    @property
    def kid(self) -> str | None:
        """The KID-like column: study.json's `kid`, else the first generation KD column."""
        return first_column(self.metrics, self.info.get("kid"), is_generation_kd)

    @property
    def extras(self) -> list[str]:
        """Secondary columns of a registered panel metric (`lpc_rho0.1`, `linprobe_C`, ...): shown in
        the full table and the forest plot, left out of the headline table, scatters and summary."""
        registered = set(METRICS.names())
        return [c for c in self.metrics
                if c not in registered and any(c.startswith(f"{m}_") for m in registered)]

    @property
    def headline(self) -> list[str]:
        """The predictors that are a metric's own value (not an extra); all predictors if < 2 remain."""
        extras = set(self.extras)
        found = [m for m in self.predictors if m not in extras]
        return found if len(found) >= 2 else self.predictors

    @property
    def predictors(self) -> list[str]:
        """Metrics compared with the target: the rows of correlations.csv, else every metric that is
        not itself a generation result (target, KID-like, speed-up) or a spread (`*_std`)."""
        if self.correlations is not None and "metric" in self.correlations:
            return [m for m in self.correlations["metric"] if m in self.metrics]
        skip = {self.target, self.kid, *GENERATION_OUTPUTS}
        return [m for m in self.metrics if m not in skip]

    @property
    def directions(self) -> dict[str, str]:
        """'higher' or 'lower' is better, per metric, as declared (analysis.metric_info); the study's
        own statements (metric protocols, correlations.csv) override. Undeclared columns and those
        declared without a direction (a hyper-parameter, a chance level, the speed-up) have none."""
        found = {m: d for m in self.metrics if (d := direction_of(m))}
        for metric, protocol in (self.info.get("protocols") or {}).items():
            if isinstance(protocol, Mapping) and protocol.get("direction") in ("higher", "lower"):
                found[metric] = protocol["direction"]
        if self.correlations is not None and "direction" in self.correlations:
            for metric, direction in zip(self.correlations["metric"], self.correlations["direction"]):
                if direction in ("higher", "lower"):
                    found[metric] = direction
        return found

    @property
    def _tune(self) -> dict[str, Any]:
        return (self.info.get("config") or {}).get("tune") or {}

    @property
    def _n_objectives(self) -> int:
        return len(objective_columns(self.trials)) if self.trials is not None else 1

    @property
    def objective_directions(self) -> list[str]:
        """Optuna directions of a tuning study: study.json `directions`, else config.tune, else minimize."""
        found = self.info.get("directions") or self._tune.get("directions") or self._tune.get("direction") or "minimize"
        found = [str(d).lower() for d in ([found] if isinstance(found, str) else found)]
        return found * self._n_objectives if len(found) == 1 else found

    @property
    def objective_names(self) -> list[str] | None:
        """Readable objective names from study.json `objectives` or config.tune.objectives, if given."""
        found = self.info.get("objectives") or self._tune.get("objectives")
        if isinstance(found, str):
            found = [found]
        if not found or len(found) != self._n_objectives:
            return None
        return [metric_label(str(name)) for name in found]


def load_study(study_dir: Path | str, *, kind: str | None = None) -> StudyData:
    """Read a study directory (see the module docstring); only results.csv must exist."""
    study_dir = Path(study_dir)
    files = StudyLayout(study_dir)
    results_path = files.results
    if not results_path.is_file():
        raise ReportError(f"no results.csv in {study_dir}: run the study first (`pae-lab run STUDY.yaml`), "
                          "or point the report at the study directory that holds it")
    results = pd.read_csv(results_path, dtype={"variant": str})
    if "variant" not in results:
        raise ReportError(f"{results_path} has no 'variant' column (columns: {', '.join(results.columns)})")
    info_path = files.study_json
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    kind = kind or info.get("kind") or "study"
    if kind not in KINDS:
        raise ReportError(f"unknown report kind {kind!r}; use one of {', '.join(KINDS)}")
    runs = files.runs_root
    references = None
    if "kind" in results:  # teacher's ceiling and sampling floor rows sit beside the runs
        references = results[results["kind"] != "variant"].dropna(axis=1, how="all").reset_index(drop=True)
        results = results[results["kind"] == "variant"].reset_index(drop=True)
    return StudyData(
        study_dir=study_dir,
        results=results,
        references=references if references is not None and not references.empty else None,
        effects=_read_csv(files.effects),
        controls=_read_csv(files.controls),
        column_notes=_read_csv(files.columns),
        info=info,
        kind=kind,
        correlations=_read_csv(files.correlations),
        convergence=_read_csv(files.convergence),
        speedups=_read_csv(files.speedups),
        training=_training_curves(runs),
        guidance=_guidance(runs),
        images=_images(runs, list(dict.fromkeys(results["variant"]))),
        trials=_read_csv(files.trials),
        pareto=_read_csv(files.pareto),
        importances=_read_csv(files.importances),
    )

