"""`pae-lab status`: variant x seed x stage -> done / running / failed / pending, with key metrics."""
from __future__ import annotations

from pathlib import Path

from rich.table import Table

from analysis.metric_info import headline_names
from pae_lab.fsutil import read_json
from pae_lab.plan.layout import STAGE_STARTED
from pae_lab.plan.runs import RunSpec, expand, run_stage_names
from pae_lab.plan.progress import read_progress
from pae_lab.config.schema import StudyConfig
from pae_lab.plan.cache import is_done

STYLE = {"done": "green", "running": "cyan", "failed": "red", "pending": "dim", "stale": "yellow"}


def stage_state(spec: RunSpec, stage: str) -> str:
    folder, digest = spec.stage_dir(stage), spec.hashes[stage]
    if is_done(folder, digest):
        return "done"
    failed = read_json(spec.layout.failed)
    if failed and failed.get("stage") == stage:
        return "failed"
    started = read_json(folder / STAGE_STARTED)
    if started and started.get("hash") == digest:
        progress = read_progress(spec.run_dir)
        return "running" if progress.get("stage") == stage and progress.get("status") == "running" else "stale"
    return "pending"


def status_table(study: StudyConfig, runs: list[RunSpec] | None = None,
                 store: tuple[dict[Path, str], str] | None = None) -> Table:
    """The state of every run; `runs` as planned by the caller (planned here when None). `store`:
    whether the tracking store is behind each run's mirror (resolved run folder -> cell) and the
    table's caption, as tracking.lag.status_cells gives them (this layer does not ask the store)."""
    target = study.evaluation.columns().fd
    stages, key_metrics = run_stage_names(), headline_names()
    table = Table(title=f"study {study.name}  ({study.study_dir()})", caption=store[1] if store else None)
    for col in ("variant", "seed", *stages, "run id", *(["store"] if store else []), *key_metrics, target):
        table.add_column(col)
    for spec in expand(study) if runs is None else runs:
        cells = []
        for stage in stages:
            state = stage_state(spec, stage)
            if state == "running":
                p = read_progress(spec.run_dir)
                state = f"running {p.get('step', 0)}/{p.get('total', '?')}"
            cells.append(f"[{STYLE[state.split()[0]]}]{state}[/]")
        values = spec.result_row()  # only this config's numbers
        run = read_json(spec.layout.run_json) or {}
        fmt = lambda v: f"{v:.3f}" if isinstance(v, (int, float)) else "-"  # noqa: E731
        lag = [store[0].get(spec.run_dir.resolve(), "-")] if store else []
        table.add_row(spec.variant, str(spec.seed), *cells, (run.get("mlflow_run_id") or "-")[:8], *lag,
                      *(fmt(values.get(k)) for k in key_metrics), fmt(values.get(target)))
    return table


def plan_table(study: StudyConfig, runs: list[RunSpec]) -> Table:
    """`pae-lab run --dry-run`: what would run, with the hash that names each run's tokenizer."""
    table = Table(title=f"plan of {study.name} -> {study.study_dir()}")
    for col in ("variant", "seed", "regularizers", "tokenizer hash"):
        table.add_column(col)
    for spec in runs:
        regs = ", ".join(f"{n}={p['weight']:g}" for n, p in spec.regularizers.items()) or "-"
        table.add_row(spec.variant, str(spec.seed), regs, spec.hashes["tokenizer"])
    return table
