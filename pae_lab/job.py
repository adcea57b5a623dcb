"""One job = one run (variant x seed): its stages in order, each skipped when already done.

The same function runs in-process (inline), in a submitit subprocess (local) or on a SLURM node;
it reads everything from run.json and writes only inside the run's folder, so a requeued or
restarted job resumes from the stage checkpoints.
"""
from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any, Callable

import submitit

from pae_lab.config import import_plugins
from pae_lab.fsutil import read_json, write_json
from pae_lab.plan import RunSpec
from pae_lab.progress import ProgressWriter
from pae_lab.runfiles import FAILED_FILE, RESULT_FILE
from pae_lab.stages.cache import run_cached
from pae_lab.stages.context import RunContext
from pae_lab.stages.generation import generation_stage
from pae_lab.stages.generator import generator_stage
from pae_lab.stages.manifold import manifold_stage
from pae_lab.stages.tokenizer import tokenizer_stage
from pae_lab.tracking import RunLogger
from pae_lab.training import resolve_device, set_threads

RUN_STAGE_FUNCS: dict[str, Callable[[RunContext, Path], dict[str, Any]]] = {
    "tokenizer": tokenizer_stage,
    "manifold": manifold_stage,
    "generator": generator_stage,
    "generation": generation_stage,
}


def execute_run(run_json: str | Path, threads: int | None = None) -> dict[str, Any]:
    """Run every stage of one run; never raises for a stage failure (it is recorded instead)."""
    spec = RunSpec.model_validate(read_json(Path(run_json)))
    set_threads(threads)
    run_dir = Path(spec.run_dir)
    # user registries, in this process too, before any validator looks names up
    import_plugins(Path(spec.study_dir) / "study.yaml", spec.config.get("plugins"))
    study = spec.study_config()
    logger = RunLogger(run_dir, spec.tracking_uri, spec.mlflow_run_id)
    progress = ProgressWriter(run_dir)
    ctx = RunContext(spec, study, resolve_device(study.device), logger, progress)
    summaries: dict[str, Any] = {}
    for name, fn in RUN_STAGE_FUNCS.items():
        try:
            progress.update(name, 0, 1, force=True)
            summaries[name] = run_cached(ctx.stage_dir(name), spec.hashes[name], lambda d, fn=fn: fn(ctx, d)).summary
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            write_json(run_dir / FAILED_FILE, {"stage": name, "error": error, "traceback": traceback.format_exc()})
            progress.update(name, 0, 1, status="failed", force=True, error=error)
            logger.tags({"pae.failed_stage": name, "pae.error": error[:5000]})
            logger.finish("FAILED")
            return {"status": "failed", "stage": name, "error": error}
    (run_dir / FAILED_FILE).unlink(missing_ok=True)
    write_json(run_dir / RESULT_FILE, summaries)
    progress.update("done", 1, 1, status="done", force=True)
    logger.finish("FINISHED")
    return {"status": "done"}


class RunJob(submitit.helpers.Checkpointable):
    """Checkpointable: on timeout or preemption submitit requeues it, and the stages resume."""

    def __call__(self, run_json: str, threads: int | None = None) -> dict[str, Any]:
        import resource

        outcome = execute_run(run_json, threads)
        # this process's peak, so the local launcher can tell how many such jobs fit in memory
        outcome["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return outcome
