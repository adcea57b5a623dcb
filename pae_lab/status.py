"""`pae-lab status`: variant x seed x stage -> done / running / failed / pending, with key metrics."""
from __future__ import annotations

from pathlib import Path

from rich.table import Table

from pae_lab.aggregate import stage_summary, target_columns
from pae_lab.config import StudyConfig
from pae_lab.fsutil import read_json
from pae_lab.runfiles import FAILED_FILE
from pae_lab.plan import RUN_STAGES, expand
from pae_lab.progress import read_progress
from pae_lab.stages.cache import is_done

STYLE = {"done": "green", "running": "cyan", "failed": "red", "pending": "dim", "stale": "yellow"}
KEY_METRICS = ("psnr", "ssc", "lpc", "gsq")


def stage_state(run_dir: Path, stage: str, digest: str) -> str:
    if is_done(run_dir / stage, digest):
        return "done"
    failed = read_json(run_dir / FAILED_FILE)
    if failed and failed.get("stage") == stage:
        return "failed"
    started = read_json(run_dir / stage / "stage.json")
    if started and started.get("hash") == digest:
        progress = read_progress(run_dir)
        return "running" if progress.get("stage") == stage and progress.get("status") == "running" else "stale"
    return "pending"


def status_table(study: StudyConfig) -> Table:
    target, _ = target_columns(study)
    table = Table(title=f"study {study.name}  ({study.study_dir()})")
    for col in ("variant", "seed", *RUN_STAGES, "run id", *KEY_METRICS, target):
        table.add_column(col)
    for spec in expand(study):
        run_dir = Path(spec.run_dir)
        cells = []
        for stage in RUN_STAGES:
            state = stage_state(run_dir, stage, spec.hashes[stage])
            if state == "running":
                p = read_progress(run_dir)
                state = f"running {p.get('step', 0)}/{p.get('total', '?')}"
            cells.append(f"[{STYLE[state.split()[0]]}]{state}[/]")
        metrics = stage_summary(run_dir, "manifold", spec.hashes["manifold"])  # only this config's numbers
        gen = stage_summary(run_dir, "generation", spec.hashes["generation"])
        run = read_json(run_dir / "run.json") or {}
        fmt = lambda v: f"{v:.3f}" if isinstance(v, (int, float)) else "-"  # noqa: E731
        table.add_row(spec.variant, str(spec.seed), *cells, (run.get("mlflow_run_id") or "-")[:8],
                      *(fmt(metrics.get(k)) for k in KEY_METRICS), fmt(gen.get(target)))
    return table
