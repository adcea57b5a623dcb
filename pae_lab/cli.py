"""`pae-lab`: run, inspect and report tokenizer ablation studies."""
from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

from analysis.fidelity_names import DINOV2_TIMM_MODEL

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub lookup fails at once instead of retrying

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Ablation studies of latent-diffusion tokenizers: train, measure, generate, correlate, report.")
# Piped output (CI, logs) gets a wide console instead of rich's 80 columns, so tables stay readable.
console = Console() if sys.stdout.isatty() else Console(width=160)
errors = Console(stderr=True)  # an error goes where a caller reading stdout for results will not take it as one


def show(table: Table) -> None:
    """A table, whole: piped, it gets the width it needs (a status table grows a column per stage)."""
    if console.is_terminal:
        console.print(table)
    else:
        Console(width=max(160, Console(width=10_000).measure(table).maximum)).print(table)


def friendly(fn: Callable) -> Callable:
    """Known user errors become one red line and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if os.environ.get("PAE_LAB_DEBUG"):
            return fn(*args, **kwargs)
        try:
            return fn(*args, **kwargs)
        except typer.Exit:  # click's Exit is a RuntimeError: a normal exit, not an error
            raise
        except (ValueError, KeyError, TypeError, RuntimeError, FileNotFoundError) as exc:
            # StudyError, RegistryError, ReportError, bad params and missing files all land here;
            # PAE_LAB_DEBUG=1 shows the traceback instead.
            errors.print(f"[red]error:[/] {type(exc).__name__ + ': ' if type(exc).__module__ == 'builtins' else ''}{exc}",
                          soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _print_version(value: bool) -> None:
    if value:
        from pae_lab import __version__

        print(f"pae-lab {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Ablation studies of latent-diffusion tokenizers: train, measure, generate, correlate, report."""


def parse_sets(sets: list[str] | None) -> dict:
    from pae_lab.config.loading import StudyError

    out = {}
    for item in sets or []:
        if "=" not in item:
            raise StudyError(f"--set {item!r}: expected KEY=VALUE, e.g. --set training.steps=100")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def load(path: Path, sets: list[str] | None = None, check_files: bool = True, preflight: bool = True):
    from pae_lab.plan.preflight import load_study

    return load_study(path, parse_sets(sets), check_files, preflight)


PluginOpt = typer.Option(None, "--plugin", help="Import a plugin module first, as a study's `plugins:` does (repeatable).")
SetOpt = typer.Option(None, "--set", help="Override a study key, e.g. --set training.steps=50 (repeatable).")


@app.command()
@friendly
def run(study_file: Path = typer.Argument(..., help="Study YAML."),
        force: bool = typer.Option(False, "--force", help="Delete this study's stage outputs and redo everything."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Validate and print the plan; train nothing."),
        report: bool = typer.Option(True, "--report/--no-report", help="Build the report notebook at the end."),
        sets: Optional[List[str]] = SetOpt):
    """Train every variant x seed of a study, measure, generate, correlate and report."""
    study = load(study_file, sets, check_files=not dry_run)
    from pae_lab.plan.layout import StudyLayout
    from pae_lab.plan.runs import expand
    from pae_lab.plan.settled import is_settled
    from pae_lab.plan.status import plan_table, status_table

    files, runs = StudyLayout(study.study_dir()), expand(study)  # planned once, handed down
    for note in study.notes():
        console.print(f"[yellow]note:[/] {study_file}: {note}")
    if not (dry_run or force) and is_settled(study, runs):  # before MLflow, pandas and torch are imported
        from pae_lab.tracking.lag import status_column

        show(status_table(study, runs, status_column(study, runs)))
        console.print(f"all runs finished; results and MLflow runs are current: nothing to train, aggregate or log\n"
                      f"results: {files.results}   correlations: {files.correlations}")
        if report:
            build_report_for(study, only_if_changed=True)
        return
    if dry_run:
        from pae_lab.plan.preflight import describe_data, missing_files

        for key, message in missing_files(study):
            console.print(f"[yellow]warning:[/] {study_file}: {key}: {message}")
        found = describe_data(study)
        if found is not None:
            line, ok = found
            console.print(f"{'' if ok else '[yellow]warning:[/] '}{study_file}: {line}")
        show(plan_table(study, runs))
        console.print(f"[green]{study_file}: valid[/] ({len(runs)} runs, launcher {study.launcher.name})")
        return
    from pae_lab.execution.driver import Driver

    from pae_lab.tracking.lag import status_cells

    driver = Driver(study, console, runs)
    outcome = driver.run(force=force)
    show(status_table(study, runs, status_cells(outcome.lag)))
    console.print(f"results: {files.results}   correlations: {files.correlations}")
    if outcome.failed:
        console.print(f"[red]{len(outcome.failed)} run(s) failed:[/] {', '.join(outcome.failed)} "
                      f"(see runs/<variant>/<seed>/failed.json; `pae-lab run` again retries them)")
    if report:
        build_report_for(study, only_if_changed=True)
    say_lag(outcome.lag, study, study_file)
    if outcome.failed:
        raise typer.Exit(1)


def say_lag(lag, study, study_file: Path) -> None:
    """The driver's last line where the store still lacks points after its reconcile."""
    if lag is not None and (lag.total or lag.held_total):
        from pae_lab.tracking.outage import lag_line

        console.print(f"[yellow]{lag_line(lag, study.study_dir(), study_file)}[/]", soft_wrap=True)


def build_report_for(study, kind: str | None = None, only_if_changed: bool = False) -> None:
    from pae_lab.results.publish import publish_report
    from pae_lab.tracking.store import answers, is_server

    uri = study.tracking.uri
    if is_server(uri) and not answers(uri):  # the report is logged to the parent run: not now
        console.print(f"[yellow]report: not built: {uri} does not answer; `pae-lab report` builds it once it does[/]")
        return
    publish_report(study, console, kind, only_if_changed)


@app.command()
@friendly
def status(study_file: Path = typer.Argument(..., help="Study YAML."), sets: Optional[List[str]] = SetOpt):
    """Variant x seed x stage: done / running / failed / pending, run ids, whether the tracking store
    lacks points of each run's mirror, and key metrics."""
    from pae_lab.plan.runs import expand
    from pae_lab.plan.status import status_table
    from pae_lab.tracking.lag import status_column

    study = load(study_file, sets, preflight=False)
    runs = expand(study)
    show(status_table(study, runs, status_column(study, runs)))


@app.command()
@friendly
def variants(pattern: str = typer.Argument("*", help="Wildcard, e.g. 'ssr*'."),
             plugin: Optional[List[str]] = typer.Option(None, "--plugin", help="Module registering extra variants.")):
    """The variant registry: every variant with its regularizers and weights."""
    from pae_lab.catalog import REGULARIZERS, VARIANTS
    from pae_lab.config.plugins import import_plugins

    import_plugins(Path("--plugin"), plugin)
    table = Table(title="variants")
    for col in ("variant", "regularizers (weight, params)", "description"):
        table.add_column(col)
    for name in VARIANTS.names(pattern):  # a built-in no plugin touched is listed from its declaration
        v = VARIANTS.peek(name)
        entries, description = (v.regularizers, v.description) if v else (VARIANTS.info(name)["regularizers"],
                                                                           VARIANTS.info(name)["description"])
        regs = "; ".join(f"{r} {p.get('weight')}" + "".join(f" {k}={val}" for k, val in p.items() if k != "weight")
                         for r, p in entries.items()) or "(none)"
        table.add_row(name, regs, description)
    console.print(table)
    regs = Table(title="regularizers")
    for col in ("regularizer", "default weight", "what it does"):
        regs.add_column(col)
    for name in REGULARIZERS.names(pattern):
        cls, info = REGULARIZERS.peek(name), REGULARIZERS.info(name)
        weight = info["default_weight"] if "default_weight" in info else cls.default_weight
        regs.add_row(name, f"{weight:g}", info.get("summary") or (cls.__doc__ or "").strip().splitlines()[0])
    console.print(regs)


@app.command()
@friendly
def registry(kind: str = typer.Argument("all", help="a section (architectures, datasets, stages, launchers, "
                                        "tuning_samplers, pruners, ...: see the full listing) or all"),
             plugins: Optional[List[str]] = PluginOpt):
    """List every registry (what a study can name)."""
    from pae_lab.config.plugins import import_plugins
    from pae_lab.config.registries import all_registries

    import_plugins(Path("--plugin"), plugins)

    regs = all_registries()
    chosen = regs if kind == "all" else {kind: regs.get(kind)}
    if None in chosen.values():
        raise typer.BadParameter(f"unknown registry {kind!r}; choose from {', '.join(regs)} or all")
    for name, reg in chosen.items():
        console.print(f"[bold]{name}[/]: {', '.join(reg.names())}")


@app.command()
@friendly
def schema(plugins: Optional[List[str]] = PluginOpt):
    """Print the study YAML reference (every key, its default and meaning) as Markdown."""
    from pae_lab.config.plugins import import_plugins
    from pae_lab.plan.schema_doc import study_reference

    import_plugins(Path("--plugin"), plugins)

    print(study_reference())


@app.command()
@friendly
def ui(study_file: Path = typer.Argument(..., help="Study YAML."),
       host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; 0.0.0.0 serves every interface "
                                "(warned: MLflow has no login)."),
       port: int = typer.Option(5000, "--port", help="Port.")):
    """Serve the MLflow UI over the study's tracking store and print the URL of its experiment."""
    from pae_lab.tracking.study_runs import experiment_name, tracking_uri
    from pae_lab.tracking.ui import serve

    study = load(study_file)
    raise typer.Exit(serve(tracking_uri(study.tracking.uri, study.study_dir()), experiment_name(study), host, port, console))


@app.command()
@friendly
def server(study_file: Path = typer.Argument(..., help="Study YAML whose tracking.uri is http://host:port."),
           backend_store_uri: Optional[str] = typer.Option(None, "--backend-store-uri", help="Where runs are stored: "
                                                          "postgresql://user@host:port/db or sqlite:///file; default "
                                                          "the study folder's mlflow.db."),
           artifacts: Optional[Path] = typer.Option(None, "--artifacts-destination", help="Folder the server keeps "
                                                    "artifacts in (jobs upload through it); default <study dir>/mlartifacts."),
           workers: int = typer.Option(4, "--workers", min=1, help="Server worker processes."),
           host: Optional[str] = typer.Option(None, "--host", help="Bind address instead of the URI's host, "
                                              "e.g. 0.0.0.0 (warned: MLflow has no login).")):
    """Serve a tracking server at the study's tracking.uri that every job logs to (artifacts proxied)."""
    from pae_lab.plan.layout import StudyLayout
    from pae_lab.tracking.store import default_uri
    from pae_lab.tracking.server import serve

    study = load(study_file, preflight=False)
    files = StudyLayout(study.study_dir())
    backend = backend_store_uri or default_uri(files.root)
    files.root.mkdir(parents=True, exist_ok=True)
    raise typer.Exit(serve(study.tracking.uri, study_file, backend, artifacts or files.artifacts, workers, console, host))


@app.command()
@friendly
def sync(study_file: Path = typer.Argument(..., help="Study YAML."), sets: Optional[List[str]] = SetOpt):
    """Replay every run's JSON-lines metric mirror into the study's tracking store (only missing points), and send
    the files, tags and lineage jobs held back while it was away."""
    from pae_lab.tracking.sync import sync_study

    study = load(study_file, sets, preflight=False)
    outcome = sync_study(study, console)
    console.print(f"synced {outcome.runs} run(s) into {study.tracking.uri or 'the study folder store'}: "
                  f"{outcome.added} point(s) added, {outcome.present} already there, {outcome.held} held call(s) sent"
                  + (f", {outcome.dropped} dropped (refused for good)" if outcome.dropped else "")
                  + (f", {outcome.left} still kept (see the warnings; sync again)" if outcome.left else ""))


@app.command()
@friendly
def correlate(table: Path = typer.Argument(..., help="CSV with one row per run and one column per metric."),
              target: Optional[str] = typer.Option(None, "--target", help="Column to correlate every metric with "
                                                   "(default: the table's correlation_target, else its generation FD column)."),
              unit: str = typer.Option("variant", "--unit", help="Column naming the unit seeds are averaged over ('' for none)."),
              out: Optional[Path] = typer.Option(None, "--out", help="Write the correlation table here (CSV)."),
              n_boot: int = typer.Option(2000, help="Bootstrap resamples for the intervals.")):
    """Spearman / Kendall of every metric with a target, bootstrap intervals, permutation p-values."""
    import pandas as pd

    from analysis.correlation import correlate_file

    result = correlate_file(table, target or generation_score_column(table), out=out, unit=unit or None, n_boot=n_boot)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        console.print(result.round(3).to_string(index=False))


@app.command()
@friendly
def teacher(study_file: Path = typer.Argument(..., help="Study YAML."),
            steps: Optional[int] = typer.Option(None, min=1, help="Baseline tokenizer steps (default: the study's "
                                                "training.steps; fewer are quicker and score a less trained latent)."),
            seeds: int = typer.Option(3, min=2, help="Baseline seeds: the 95% interval the teacher is judged against."),
            refiner_seeds: int = typer.Option(3, min=1, help="Refiner seeds: the teacher's own spread, and whether another "
                                              "seed's target would change the verdict (1: not measured)."),
            sets: Optional[List[str]] = SetOpt):
    """Is the teacher stronger than the latent a plain tokenizer learns? Its ceiling rows (raw prior, refined target,
    each regularizer's own teacher, the network-free controls) against the study's unregularized baseline latent,
    the teacher's own spread over refiner seeds included, in minutes, before the study's hour."""
    study = load(study_file, sets)
    import numpy as np

    from pae_lab.execution.teacher_check import SPREAD, image_error, teacher_check, verdicts

    rows, how = teacher_check(study, steps, seeds, refiner_seeds, log=console.log)
    metrics = [m for m in ("ssc_ami", "ssc", "gsq", "linprobe", "knn", "coherence") if all(m in r for r in rows.values())]
    table = Table("source", *metrics, title=f"teacher check: {study.prior.name} prior, latent grid {study.latent_grid}",
                  caption="± : the images' 95% error (1.96 standard errors over the held-out images)")
    cell = lambda row, m: f"{row[m]:.3f}" + (f" ±{image_error(row, m):.3f}" if np.isfinite(image_error(row, m)) else "")  # noqa: E731
    for name, row in rows.items():
        table.add_row(name, *(f"{row[m]:.3f}" if name == SPREAD else cell(row, m) for m in metrics))
    for name, values in how["refiner"].items():  # the teacher's own spread, where it has refiner seeds
        n_seeds = len(next(iter(values.values())))
        if n_seeds > 1:
            table.add_row(f"{name} sd ({n_seeds} refiner seeds)", *(f"{np.std(values[m], ddof=1):.3f}" for m in metrics))
    show(table)
    for line in verdicts(rows, how):
        console.print(line)


@app.command()
@friendly
def evaluate(samples: Path = typer.Argument(..., help="Generated images in ADM's .npz format (arr_0: uint8 [N, H, W, 3]), "
                                            "e.g. a run's generation/samples.npz."),
             reference: Path = typer.Option(..., "--reference", help="Reference images in the same format (a study's "
                                            "shared/reference/<hash>/reference.npz), or their statistics (mu, sigma)."),
             extractor: str = typer.Option("auto", help="Feature network: effnet-lite0, effnet-lite0-96, or inception "
                                           "(needs --inception-weights); auto: inception when its weights are given."),
             inception_weights: Optional[Path] = typer.Option(None, help="Local Inception weights file (never downloaded): "
                                                              "FID, IS and sFID as ADM's evaluator computes them."),
             dinov2_weights: Optional[Path] = typer.Option(None, help="Local DINOv2 ViT-L/14 weights file (timm's "
                                                           "vit_large_patch14_dinov2.lvd142m): adds fd_dinov2 (EDM2's FD-DINOv2)."),
             dinov2_model: str = typer.Option(DINOV2_TIMM_MODEL, help="The timm architecture of --dinov2-weights."),
             k: int = typer.Option(3, "--k", help="Neighbours of precision / recall / density / coverage (ADM's: 3)."),
             kid_subsets: int = typer.Option(100, help="KD subsets (each of half the smaller set, at most 1000 images)."),
             seed: int = typer.Option(0, help="KD's subset draws (a study uses its evaluation.sampler.seed)."),
             save_stats: Optional[Path] = typer.Option(None, "--save-reference-stats",
                                                       help="Also write the reference images' mu / sigma here, to score against later."),
             json_out: Optional[Path] = typer.Option(None, "--json", help="Write the scores here as JSON.")):
    """Score a sample file against a reference file with a study's scores: FD, KD, precision / recall / density / coverage,
    IS, and sFID and FD-DINOv2 where their weights are given."""
    from analysis.sample_scores import score_sample_file
    from pae_lab.fsutil import write_json

    scores, protocol, notes = score_sample_file(samples, reference, extractor=extractor, inception_weights=inception_weights,
                                                k=k, kid_subsets=kid_subsets, seed=seed, save_reference_statistics=save_stats,
                                                dinov2_weights=dinov2_weights, dinov2_model=dinov2_model)
    table = Table("score", "value", title=f"{samples} vs {reference}")
    for name, value in {**scores, **protocol}.items():
        table.add_row(name, f"{value:.6g}" if isinstance(value, float) else str(value))
    show(table)
    for note in notes:
        errors.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    if json_out is not None:
        write_json(json_out, {"samples": str(samples), "reference": str(reference), "scores": scores,
                              "protocol": protocol, "notes": notes})


def generation_score_column(table: Path) -> str:
    """The target a pae-lab results table names: its `correlation_target` column's value (what the study
    reads as generation quality), else its generation FD column (fid with Inception, else fd_<extractor>)."""
    import pandas as pd

    from analysis.fidelity_names import DINOV2, FIDELITY_EXTRACTORS

    try:
        head = pd.read_csv(table, nrows=1)
    except (OSError, ValueError):
        return "fid"  # correlate_file reports the unreadable file
    if "correlation_target" in head and head["correlation_target"].notna().any():
        return str(head["correlation_target"].iloc[0])
    names = [FIDELITY_EXTRACTORS.get(n).fid_key for n in FIDELITY_EXTRACTORS.names() if n != DINOV2]  # fd_dinov2 is scored beside
    return next((c for c in names if c in head.columns), names[0])


@app.command()
@friendly
def report(study_file: Path = typer.Argument(..., help="Study YAML."), sets: Optional[List[str]] = SetOpt):
    """Execute the report notebook over a study's results; writes .ipynb + HTML and logs them to MLflow."""
    study = load(study_file, sets)
    from pae_lab.plan.layout import StudyLayout

    results = StudyLayout(study.study_dir()).results
    if not results.exists():
        from pae_lab.config.loading import StudyError

        raise StudyError(f"{results} not found: run `pae-lab run {study_file}` first")
    build_report_for(study)


@app.command()
@friendly
def tune(study_file: Path = typer.Argument(..., help="Study YAML with a `search:` block."),
         trials: Optional[int] = typer.Option(None, "--trials", min=1, help="Trials the search holds in the end "
                                              "(overrides search.n_trials); a finished search continues up to it."),
         dashboard: bool = typer.Option(False, "--dashboard", help="Then serve optuna-dashboard on 127.0.0.1 over "
                                        "the search's storage (Ctrl-C stops it)."),
         search: bool = typer.Option(True, "--search/--no-search", help="--no-search --dashboard: only the dashboard."),
         port: int = typer.Option(8080, "--port", help="Dashboard port on 127.0.0.1."),
         report: bool = typer.Option(True, "--report/--no-report", help="Build the report notebook (kind tune) at the end."),
         sets: Optional[List[str]] = SetOpt):
    """Search regularizer weights (or any numeric study value) with Optuna over the study's own pipeline.

    Rerunning continues the same search; finished trials are reused. The dashboard by hand:
    optuna-dashboard <study dir>/optuna.journal --host 127.0.0.1 --port 8080
    """
    from pae_lab.plan.layout import StudyLayout
    from pae_lab.plan.preflight import load_study
    from pae_lab.tuning.driver import TuneDriver, dashboard_command
    from pae_lab.tuning.outputs import trials_table

    overrides = parse_sets(sets)
    if trials is not None:
        overrides["search.n_trials"] = trials
    study = load_study(study_file, overrides)
    completed = 1
    if search:
        outcome = TuneDriver(study, console, source=study_file).run()
        console.print(trials_table(outcome.search, f"search {study.name}", study.study_dir()))
        if len(outcome.search.importances):
            console.print("importances: " + ", ".join(f"{p}={v:.2f}" for p, v in zip(
                outcome.search.importances["param"], outcome.search.importances["importance"])))
        files = StudyLayout(study.study_dir())
        console.print(f"trials: {files.trials}   best: {files.best}   pareto: {files.pareto}")
        completed = outcome.states.get("COMPLETE", 0)
        if report and completed:
            build_report_for(study, kind="tune")
        say_lag(outcome.lag, study, study_file)
    if dashboard:
        cmd = dashboard_command(study, port)
        console.print(f"optuna-dashboard on http://127.0.0.1:{port}  ({' '.join(cmd)}); Ctrl-C stops it")
        raise typer.Exit(subprocess.call(cmd))
    if not completed:
        console.print("[red]no trial completed[/] (see trials.csv `error` and runs/trial-*/seed*/failed.json)")
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover
    app()
