"""One job = one run (variant x seed): its stages in order, each skipped when already done.

The same function runs in-process (inline), in a submitit subprocess (local) or on a SLURM node;
it reads everything from run.json and writes only inside the run's folder, so a requeued or
restarted job resumes from the stage checkpoints. A job of several processes (torchrun, or a
submitit job with several tasks) runs this on every rank; rank 0 alone writes and logs
(pae_lab.stages.distributed).

    torchrun --nproc-per-node 2 -m pae_lab.execution.job outputs/smoke/runs/baseline/seed0/run.json
"""
from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import submitit

from pae_lab.stages import distributed
from pae_lab.fsutil import write_json
from pae_lab.plan.graph import ordered
from pae_lab.plan.layout import StudyLayout
from pae_lab.config.plugins import import_plugins
from pae_lab.plan.runs import RunSpec
from pae_lab.plan.progress import ProgressWriter
from pae_lab.execution.shared_job import execute_shared, is_shared_job
from pae_lab.stages.execute import run_stage
from pae_lab.tracking.lineage import run_datasets, tokenizer_model
from pae_lab.tracking.store import RunLogger
from pae_lab.tracking.system import system_metrics
from pae_lab.tracking.study_runs import tracking_uri
from pae_lab.stages.training import resolve_device, set_threads


def execute_run(run_json: str | Path, threads: int | None = None) -> dict[str, Any]:
    """Run every per-run stage of one run; never raises for a stage failure (it is recorded instead)."""
    spec = RunSpec.load(run_json)
    set_threads(threads)
    # user registries, in this process too, before any validator looks names up
    import_plugins(StudyLayout(Path(spec.study_dir)).study_yaml, spec.config.get("plugins"))
    study = spec.study_config()
    dist, device = distributed.init(resolve_device(study.device))
    folders = {name: spec.stage_dir(name) for name in spec.stage_paths}
    try:
        run = _execute if dist.is_main else _follow
        return run(spec, study, folders, dist, device)
    finally:
        dist.close()


def _follow(spec: RunSpec, study, folders: dict[str, Path], dist, device) -> dict[str, Any]:
    """A rank > 0: trains beside rank 0 and writes nothing; rank 0 records how the run ended."""
    quiet = RunLogger(spec.run_dir, None, None, mirror=False)
    for stage in ordered("run"):
        try:
            run_stage(stage, study, folders, spec.hashes[stage.name], logger=quiet, spec=spec, dist=dist, device=device)
        except Exception as exc:  # rank 0 sees the same failure (or this rank's exit) and records it
            return {"status": "failed", "stage": stage.name, "error": f"rank {dist.rank}: {type(exc).__name__}: {exc}"}
    return {"status": "done"}


def _execute(spec: RunSpec, study, folders: dict[str, Path], dist, device) -> dict[str, Any]:
    logger = RunLogger(spec.run_dir, tracking_uri(spec.tracking_uri, spec.study_dir), spec.mlflow_run_id)
    logger.started()  # a store left down by an earlier job is asked again here, before the monitor needs it
    with system_metrics(study, device.type, logger):
        return _stages(spec, study, folders, dist, device, logger)


def _stages(spec: RunSpec, study, folders: dict[str, Path], dist, device, logger: RunLogger) -> dict[str, Any]:
    files = spec.layout
    logger.inputs(run_datasets(study, spec))
    if dist.world > 1:
        logger.tags({"pae.processes_per_job": dist.world})
    progress = ProgressWriter(spec.run_dir)
    summaries: dict[str, Any] = {}
    for stage in ordered("run"):
        try:
            progress.update(stage.name, 0, 1, force=True)
            summaries[stage.name] = run_stage(stage, study, folders, spec.hashes[stage.name], logger=logger,
                                              progress=progress, spec=spec, dist=dist, device=device).summary
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            write_json(files.failed, {"stage": stage.name, "error": error, "traceback": traceback.format_exc()})
            progress.update(stage.name, 0, 1, status="failed", force=True, error=error)
            logger.tags({"pae.failed_stage": stage.name, "pae.error": error[:5000]})
            logger.finish("FAILED")
            return {"status": "failed", "stage": stage.name, "error": error}
    files.failed.unlink(missing_ok=True)
    logger.model(*tokenizer_model(study, spec))  # every run, also one whose tokenizer stage was cached
    write_json(files.result, summaries)
    progress.update("done", 1, 1, status="done", force=True)
    logger.finish("FINISHED")
    return {"status": "done"}


def execute(job_json: str | Path, threads: int | None = None) -> dict[str, Any]:
    """A run's job (run.json) or the study's shared stages (shared/job.json, pae_lab.execution.shared_job)."""
    return (execute_shared if is_shared_job(job_json) else execute_run)(job_json, threads)


class RunJob(submitit.helpers.Checkpointable):
    """Checkpointable: on timeout or preemption submitit requeues it, and the stages resume."""

    def __call__(self, job_json: str, threads: int | None = None) -> dict[str, Any]:
        import resource

        import torch

        outcome = execute(job_json, threads)
        # this process's peak, so the local launcher can tell how many such jobs fit in memory
        outcome["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        # a GPU stays held until the process has exited: the launcher then waits for that before the next job
        outcome["holds_gpu"] = torch.cuda.is_initialized()
        return outcome


if __name__ == "__main__":  # torchrun --nproc-per-node N -m pae_lab.execution.job RUN_JSON|SHARED_JOB_JSON [THREADS]
    import sys

    result = execute(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None)
    sys.exit(0 if result["status"] == "done" else 1)
