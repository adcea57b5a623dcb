"""Run one stage of the graph: hand it the folders it reads, cache it by its hash.

Nothing heavy is imported until the stage really has to run, so a rerun of a finished study
skips every stage without loading torch or the stage's code.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pae_lab.plan.graph import Stage
from pae_lab.plan.layout import StudyLayout
from pae_lab.plan.cache import StageResult, run_cached

if TYPE_CHECKING:
    import torch

    from pae_lab.stages.distributed import Dist
    from pae_lab.plan.runs import RunSpec
    from pae_lab.plan.progress import ProgressWriter
    from pae_lab.config.schema import StudyConfig
    from pae_lab.tracking.store import RunLogger


def run_stage(stage: Stage, study: "StudyConfig", folders: dict[str, Path], digest: str, *,
              logger: "RunLogger | None" = None, progress: "ProgressWriter | None" = None,
              spec: "RunSpec | None" = None, dist: "Dist | None" = None,
              device: "torch.device | None" = None) -> StageResult:
    """`folders`: every stage's folder (this one's and those it reads); `digest`: this stage's hash.

    `dist`, `device`: this process's rank in a multi-process job and its device (a job's ranks run
    every stage together: rank 0 alone where the stage is not `distributed`).
    """

    def work(out: Path) -> dict:
        from pae_lab.stages.distributed import SINGLE
        from pae_lab.stages.context import StageContext
        from pae_lab.stages.training import resolve_device

        root = Path(spec.study_dir) if spec is not None else study.study_dir()
        ctx = StageContext(stage.name, study, {r: Path(folders[r]) for r in stage.reads}, StudyLayout(root),
                           device or resolve_device(study.device), logger, progress, spec, dist or SINGLE)
        return stage.function()(ctx, out)

    return run_cached(Path(folders[stage.name]), digest, work, dist=dist, every_rank=stage.distributed)
