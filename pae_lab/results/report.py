"""Study reports: read a study directory, say in words what it found, and render the notebook.

`build_report(study_dir)` executes the parameterised template reports/study_report.ipynb with
papermill and writes study_dir/report/report.ipynb, a code-free report.html and one PNG per figure
under study_dir/report/figures/. The notebook stays thin: it calls `load_study`, `summarize`,
`variants_table` from here and the figure functions of pae_lab/results/plots.py, so all of them can be
used (and tested) outside the notebook.

The template lives in the top-level reports/ folder, found next to the installed package (the
project is installed editable from the repository root). A wheel install has no reports/ folder:
pass `template=` then.

Only results.csv is required; every other file of the study directory may be missing, and the
notebook shows a "not available" note in its place.
"""
from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.fidelity_names import fidelity_role
from analysis.metric import METRICS
from analysis.metric_info import direction_of, headline_columns
from pae_lab.results.plots import metric_label, objective_columns, save_figure
from pae_lab.fsutil import atomic_write
from pae_lab.plan.layout import IMAGES, METRIC_LOG, RunLayout, StudyLayout, figure
from pae_lab.results.report_inputs import ReportError, find_template
from pae_lab.tracking.store import iter_jsonl

KERNEL_NAME = "python3"
KINDS = ("study", "tune")
IMAGE_KINDS = tuple(IMAGES)
ID_COLUMNS = ("variant", "kind", "seed", "run_id", "status", "correlation_target")
GENERATION_OUTPUTS = ("speedup",)
SPREAD_SUFFIXES = ("_std", "_p95", "_median", "_max")  # per-run spreads of a metric, not metrics


@dataclass(frozen=True)
class ReportPaths:
    ipynb: Path
    html: Path
    figures: list[Path]


# ----------------------------------------------------------------------------- reading a study
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
# paper's own `gfid` name for a generation FD.
def is_generation_fd(column: str) -> bool:
    return column == "gfid" or fidelity_role(column) == "fd"


def is_generation_kd(column: str) -> bool:
    return fidelity_role(column) == "kd"


def is_reconstruction_fd(column: str) -> bool:
    return fidelity_role(column) == "rfd"


def _first(columns: Sequence[str], named: Any, match: Callable[[str], bool]) -> str | None:
    """`named` if it is one of the columns, else the first column that matches."""
    return named if named in columns else next((c for c in columns if match(c)), None)


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
        return _first(self.metrics, self.info.get("target"), is_generation_fd)

    @property
    def generation(self) -> str | None:
        """The gFD column (generated vs real): study.json's `gfd`, else the first generation FD column."""
        return _first(self.metrics, self.info.get("gfd"), is_generation_fd)

    @property
    def contrast(self) -> str | None:
        """The rFID-like column (reconstruction FD), the contrast every latent metric is held against."""
        return _first(self.metrics, self.info.get("contrast"), is_reconstruction_fd)

    @property
    def kid(self) -> str | None:
        """The KID-like column: study.json's `kid`, else the first generation KD column."""
        return _first(self.metrics, self.info.get("kid"), is_generation_kd)

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
        info=info,
        kind=kind,
        correlations=_read_csv(files.correlations),
        convergence=_read_csv(files.convergence),
        speedups=_read_csv(files.speedups),
        training=_training_curves(runs),
        images=_images(runs, list(dict.fromkeys(results["variant"]))),
        trials=_read_csv(files.trials),
        pareto=_read_csv(files.pareto),
        importances=_read_csv(files.importances),
    )


# ----------------------------------------------------------------------------- tables and words
def _fmt(value: float) -> str:
    """Numbers for people: 8,208 not 8.21e+03; three significant digits below 1000."""
    if not np.isfinite(value):
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def main_metrics(study: "StudyData") -> list[str]:
    """The main results table's columns: the headline metrics, KD and speed-up; metrics only."""
    found = headline_columns(study.metrics, study.generation)
    return found + [c for c in (study.kid, "speedup") if c and c in study.metrics and c not in found]


def folded(title: str, html: str) -> None:
    """A section the reader unfolds on demand (configuration, protocols)."""
    from IPython.display import HTML, display

    display(HTML(f"<details><summary><b>{title}</b></summary>{html}</details>"))


def variants_table(
    results: pd.DataFrame,
    metrics: Sequence[str],
    directions: Mapping[str, str],
    *,
    unit: str = "variant",
) -> pd.DataFrame:
    """Mean ± std over seeds per variant; the best variant of each column is marked with ★.

    Column headers carry ↑ (higher is better) or ↓ (lower); a column with no known direction gets
    no mark, since "best" means nothing there.
    """
    grouped = results.groupby(unit, sort=False)[list(metrics)]
    means, stds = grouped.mean(), grouped.std()
    table = pd.DataFrame(index=means.index)
    table["seeds"] = results.groupby(unit, sort=False).size()
    for metric in metrics:
        direction = directions.get(metric)
        column = means[metric]
        best = column.max() if direction == "higher" else column.min() if direction == "lower" else np.nan
        cells = []
        for variant in means.index:
            mean, std = column[variant], stds.at[variant, metric]
            cell = _fmt(mean) if not np.isfinite(std) else f"{_fmt(mean)} ± {_fmt(std)}"
            cells.append(cell + (" ★" if np.isfinite(mean) and mean == best else ""))
        arrow = {"higher": " ↑", "lower": " ↓"}.get(direction or "", "")
        table[f"{metric}{arrow}"] = cells
    return table


def effects_table(effects: pd.DataFrame, max_order: int = 2) -> pd.DataFrame:
    """effects.csv as response x effect cells "estimate [lo, hi]" (✓ / ✗ where the interval excludes 0 on
    the paper's / the other side), main effects and two-way interactions by default."""
    rows = effects[effects["order"] <= max_order]
    mark = {"yes": " ✓", "no": " ✗"}

    def cell(r: pd.Series) -> str:
        if not np.isfinite(r["estimate"]):
            return "-"
        ci = f" [{_fmt(r['lo'])}, {_fmt(r['hi'])}]" if np.isfinite(r["lo"]) else ""
        return f"{_fmt(r['estimate'])}{ci}{mark.get(str(r.get('agrees_with_paper')), '')}"

    table = rows.assign(cell=rows.apply(cell, axis=1)).pivot(index="response", columns="effect", values="cell")
    order = list(dict.fromkeys(rows["effect"]))
    return table.reindex(index=list(dict.fromkeys(rows["response"])), columns=order)


def effects_summary(effects: pd.DataFrame | None, target: str | None, own_metric: Mapping[str, str]) -> str:
    """One sentence per regularizer, read from effects.csv: its main effect on its own metric and on the
    generation score, each with its interval; "agrees with the paper" only where the interval excludes 0."""
    if effects is None or effects.empty:
        return ""
    main = effects[effects["order"] == 1].set_index(["effect", "response"])
    lines = []
    for factor in dict.fromkeys(main.index.get_level_values("effect")):
        parts = []
        for response in (own_metric.get(factor), target):
            if response is None or (factor, response) not in main.index:
                continue
            r = main.loc[(factor, response)]
            text = f"{metric_label(response)} {float(r['estimate']):+.3g}"
            if np.isfinite(r["lo"]):
                text += f" [{_fmt(r['lo'])}, {_fmt(r['hi'])}]"
                if r["lo"] <= 0 <= r["hi"]:
                    text += " (interval spans 0: no conclusion)"
                elif str(r.get("agrees_with_paper")) in ("yes", "no"):
                    text += " (agrees with the paper)" if r["agrees_with_paper"] == "yes" else " (opposite to the paper)"
                if np.isfinite(r.get("p_holm", np.nan)):
                    text += f", Holm p = {float(r['p_holm']):.2g}"
            else:
                text += " (one seed per variant: no interval)"
            parts.append(text)
        if parts:
            lines.append(f"Switching **{factor}** on changes " + "; ".join(parts) + ".")
    return "\n\n".join(lines)


def _spearman_text(row: pd.Series, confidence: float) -> str:
    """ "Spearman 0.71, 95% CI [0.12, 0.95], n=8" from one correlations.csv row."""
    rho, lo, hi, n = (float(row.get(k, np.nan)) for k in ("spearman", "spearman_lo", "spearman_hi", "n"))
    n_text = f", n={int(n)}" if np.isfinite(n) else ""
    if np.isfinite(lo) and np.isfinite(hi):
        return f"Spearman {rho:.2f}, {confidence:.0%} CI [{lo:.2f}, {hi:.2f}]{n_text}"
    return f"Spearman {rho:.2f}, no CI{n_text}"


def summarize(
    results: pd.DataFrame,
    correlations: pd.DataFrame | None,
    target: str | None,
    *,
    contrast: str | None = None,
    directions: Mapping[str, str] | None = None,
    candidates: Sequence[str] | None = None,
    confidence: float = 0.95,
    unit: str = "variant",
) -> str:
    """A few sentences (Markdown) on what the study found, each number with the interval that qualifies it.

    Which metric has the strongest rank correlation with the target (and whether its CI excludes 0),
    how the rFID-like `contrast` fares, and which variant has the best target value, with its seed
    spread and whether the runner-up's spread overlaps it. `candidates` limits which metrics may be
    named the best predictor (default: every row of `correlations`). The target is taken as
    lower-is-better unless `directions` says otherwise.
    """
    directions = dict(directions or {})
    target_label = f"generation score `{target}`" if target else "generation score"
    n_runs, n_units = len(results), results[unit].nunique()
    lines = [f"The study holds {n_runs} runs over {n_units} {unit}s."]
    if "status" in results:
        bad = results["status"].astype(str).str.lower()
        bad = bad[~bad.isin(["done", "finished", "complete", "completed", "ok", "success"])]
        if len(bad):
            counts = ", ".join(f"{k}: {v}" for k, v in bad.value_counts().items())
            lines.append(f"{len(bad)} of {n_runs} runs did not finish ({counts}); their metrics are missing.")

    if n_units < 3:
        lines.append(f"With {n_units} {unit}(s) the study is too small for rank correlations (at least 3 are needed).")
    elif correlations is None or not len(correlations):
        lines.append(f"No rank correlations with {target_label} are available (correlations.csv is missing or empty).")
    else:
        usable = correlations[correlations["spearman"].notna() & (correlations["metric"] != target)]
        if candidates is not None:
            usable = usable[usable["metric"].isin(list(candidates))]
        if not len(usable):
            lines.append(f"No metric has a defined rank correlation with {target_label}.")
        else:
            best = usable.loc[usable["spearman"].abs().idxmax()]
            sentence = (f"**{metric_label(best['metric'])}** has the strongest rank correlation with {target_label} "
                        f"({_spearman_text(best, confidence)})")
            lo, hi = float(best.get("spearman_lo", np.nan)), float(best.get("spearman_hi", np.nan))
            if np.isfinite(lo) and np.isfinite(hi) and lo <= 0 <= hi:
                sentence += "; its interval includes 0, so the data do not rule out no association"
            if "agrees" in best and str(best["agrees"]).lower() in ("false", "0"):
                sentence += (f"; the sign is opposite to what its direction of better "
                             f"({best.get('direction', 'unknown')}) predicts")
            loo = float(best.get("loo_rank_acc", np.nan))
            if np.isfinite(loo):
                sentence += f"; leave-one-variant-out rank accuracy {loo:.2f}"
            lines.append(sentence + ".")
            if contrast and contrast != best["metric"]:
                rows = correlations[correlations["metric"] == contrast]
                if len(rows) and np.isfinite(rows["spearman"].iloc[0]):
                    row = rows.iloc[0]
                    lines.append(f"For contrast, {metric_label(contrast)} (reconstruction): "
                                 f"{_spearman_text(row, confidence)}.")
            elif contrast == best["metric"]:
                lines.append(f"Note that the strongest predictor is the reconstruction metric {metric_label(contrast)} itself.")

    if target is None or target not in results or results[target].isna().all():
        lines.append(f"No {target_label} values are available, so no variant can be named the winner.")
    else:
        stats = results.groupby(unit, sort=False)[target].agg(["mean", "std", "count"]).dropna(subset=["mean"])
        ascending = directions.get(target, "lower") != "higher"
        stats = stats.sort_values("mean", ascending=ascending)
        winner, first = stats.index[0], stats.iloc[0]
        spread = f" ± {_fmt(first['std'])}" if np.isfinite(first["std"]) else ""
        over = (f"mean ± std over {int(first['count'])} seeds" if spread else "one seed, so no spread")
        sentence = f"Variant **{winner}** has the best {target_label}: {_fmt(first['mean'])}{spread} ({over})"
        if len(stats) > 1:
            runner, second = stats.index[1], stats.iloc[1]
            sentence += f"; runner-up **{runner}** {_fmt(second['mean'])}"
            if np.isfinite(first["std"]) and np.isfinite(second["std"]):
                sentence += f" ± {_fmt(second['std'])}"
                overlap = abs(first["mean"] - second["mean"]) <= first["std"] + second["std"]
                sentence += ("; their seed spreads overlap, so the order of the two is not settled"
                             if overlap else "; their seed spreads do not overlap")
        lines.append(sentence + ".")
    return "\n\n".join(lines)


def best_trials(trials: pd.DataFrame, directions: Sequence[str], *, k: int = 5) -> pd.DataFrame:
    """The k best completed trials of a single-objective study (by `value`, in its direction)."""
    complete = trials[trials["state"].astype(str).str.upper() == "COMPLETE"]
    column = "value" if "value" in complete else "values_0"
    return complete.sort_values(column, ascending=directions[0] == "minimize").head(k)


# ----------------------------------------------------------------------------- notebook helpers
class FigureSink:
    """Saves each report figure as a PNG under one folder and shows that PNG inline.

    Showing the saved file (rather than the live figure) guarantees the HTML report and the PNGs
    on disk are the same pictures.
    """

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        self.paths: list[Path] = []

    def __call__(self, fig: Any, name: str) -> None:
        from IPython.display import Image, display

        path = save_figure(fig, self.folder / figure(name))
        self.paths.append(path)
        display(Image(filename=str(path)))


def note(text: str) -> None:
    """An italic remark in the report, e.g. for a missing input."""
    from IPython.display import Markdown, display

    display(Markdown(f"*{text}*"))


def missing(what: str) -> None:
    note(f"Not available: {what} is missing or empty in the study directory.")


# ----------------------------------------------------------------------------- building
def ensure_kernel(name: str = KERNEL_NAME) -> None:
    """Make sure the Jupyter kernel `name` exists and runs this interpreter.

    ipykernel's wheel installs a `python3` spec into the environment, and jupyter_client falls back
    to ipykernel's built-in spec when none is installed; its argv "python" is replaced with
    sys.executable at launch. A spec of the same name earlier on the Jupyter path (e.g. a user-level
    one pointing at another Python) would shadow ours: we refuse it with a fix rather than run the
    report in a Python that has no pae-lab.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    try:
        spec = manager.get_kernel_spec(name)
    except NoSuchKernel:
        from ipykernel.kernelspec import install

        install(kernel_name=name, prefix=sys.prefix)
        spec = KernelSpecManager().get_kernel_spec(name)
    launcher = spec.argv[0] if spec.argv else ""
    python_aliases = {"python", f"python{sys.version_info[0]}", f"python{sys.version_info[0]}.{sys.version_info[1]}"}
    if launcher not in python_aliases and Path(launcher).resolve() != Path(sys.executable).resolve():
        raise ReportError(f"Jupyter kernel {name!r} at {spec.resource_dir} runs {launcher}, not this Python "
                          f"({sys.executable}); remove that kernelspec or run "
                          f"`{sys.executable} -m ipykernel install --sys-prefix`")


def build_report(
    study_dir: Path | str,
    *,
    kind: str | None = None,
    log_artifact: Callable[[Path], None] | None = None,
    timeout: int = 600,
    template: Path | str | None = None,
    confidence: float = 0.95,
) -> ReportPaths:
    """Execute the report notebook over `study_dir`; write report/report.ipynb, report.html, figures/*.png.

    kind: "study" or "tune" (default: study.json's `kind`, else "study"). log_artifact: called with
    the notebook and the HTML path once both exist (e.g. MLflow's parent-run `log_artifact`).
    timeout: seconds any one cell may run. A failing cell raises ReportError with the cell's
    error; the partly executed notebook is left at report/report.ipynb for inspection.
    """
    import papermill
    from nbconvert import HTMLExporter
    from papermill.exceptions import PapermillExecutionError

    study_dir = Path(study_dir).resolve()
    study = load_study(study_dir, kind=kind)  # fail early, with a clear message, on a bad directory
    template = Path(template) if template else find_template()
    out = StudyLayout(study_dir).report
    figures_dir = out.figures
    shutil.rmtree(figures_dir, ignore_errors=True)  # stale figures of an earlier report would mislead
    figures_dir.mkdir(parents=True)
    ipynb, html = out.ipynb, out.html
    ensure_kernel()
    try:
        papermill.execute_notebook(
            str(template), str(ipynb),
            parameters={"study_dir": str(study_dir), "kind": study.kind, "figures_dir": str(figures_dir),
                        "confidence": confidence},
            kernel_name=KERNEL_NAME, cwd=str(study_dir), progress_bar=False, execution_timeout=timeout,
        )
    except PapermillExecutionError as err:
        raise ReportError(f"report cell {err.cell_index} failed: {err.ename}: {err.evalue} "
                          f"(the partly executed notebook is at {ipynb})") from err
    body, _ = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                           exclude_output_prompt=True).from_filename(str(ipynb))
    atomic_write(html, lambda tmp: tmp.write_text(body, encoding="utf-8"))
    paths = ReportPaths(ipynb=ipynb, html=html, figures=out.saved_figures())
    if log_artifact is not None:
        for path in (paths.ipynb, paths.html):
            log_artifact(path)
    return paths
