"""The study's shared stages as one job, on the nodes the runs use and as data-parallel as a run.

The driver runs the shared stages itself when its launcher runs jobs on this machine with one
process each (inline; local with `tasks_per_job: 1`). Otherwise (SLURM, whose driver sits on a
login node; several processes per job) it writes `shared/job.json` and submits it through the
same launcher as the runs: every rank trains the refiner on its slice of the global batch, rank 0
alone extracts the prior features and writes every file. By hand:

    torchrun --nproc-per-node 2 -m pae_lab.execution.job outputs/smoke/shared/job.json
"""
from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from pae_lab.stages import distributed
from pae_lab.fsutil import read_json, write_json
from pae_lab.plan.graph import ordered
from pae_lab.plan.layout import StudyLayout
from pae_lab.config.plugins import import_plugins
from pae_lab.config.schema import StudyConfig


def write_shared_job(layout: StudyLayout, study: StudyConfig, tracking_uri: str, parent_run_id: str | None) -> Path:
    """The job file: the resolved study and where the parent run's metrics (the refiner's losses) go."""
    path = layout.shared_job
    write_json(path, {"config": study.model_dump(mode="json"), "tracking_uri": tracking_uri,
                      "mlflow_run_id": parent_run_id})
    return path


def is_shared_job(path: str | Path) -> bool:
    return Path(path) == StudyLayout(Path(path).parent.parent).shared_job


def execute_shared(job_json: str | Path, threads: int | None = None) -> dict[str, Any]:
    """Every shared stage in order on every rank of this job; a failure is returned, not raised."""
    from pae_lab.plan.runs import shared_plan
    from pae_lab.plan.progress import ProgressWriter
    from pae_lab.stages.execute import run_stage
    from pae_lab.tracking.store import RunLogger
    from pae_lab.stages.training import resolve_device, set_threads

    path = Path(job_json).resolve()
    job, root = read_json(path), path.parent.parent
    set_threads(threads)
    files = StudyLayout(root)
    import_plugins(files.study_yaml, job["config"].get("plugins"))
    study = StudyConfig.model_validate({**job["config"], "output_dir": str(root)})
    dist, device = distributed.init(resolve_device(study.device))
    hashes, folders = shared_plan(study)
    main = dist.is_main
    logger = RunLogger(files.shared_root, job["tracking_uri"] if main else None, job["mlflow_run_id"], mirror=main)
    progress = ProgressWriter(files.shared_root) if main else None
    stage = None
    try:
        for stage in ordered("shared"):
            run_stage(stage, study, folders, hashes[stage.name], logger=logger, progress=progress, dist=dist,
                      device=device)
    except Exception as exc:  # the driver reports it, naming the stage
        return {"status": "failed", "stage": stage.name, "error": f"rank {dist.rank}: {type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc()}
    finally:
        dist.close()
    return {"status": "done"}
