"""What a stage gets: its study config, device, logger, progress writer and the folders it reads.

The graph (`pae_lab.plan.graph`) decides which folders those are; a stage asks `ctx.input(name)` and
is refused any stage it did not declare in `reads`. Shared stages get `spec=None`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from pae_lab.data.diskarray import DiskArray
from pae_lab.data.splits import DiskSplit
from pae_lab.stages.distributed import SINGLE, Dist
from pae_lab.plan.layout import RunLayout, SplitLayout, StudyLayout
from pae_lab.plan.runs import RunSpec
from pae_lab.plan.progress import ProgressWriter
from pae_lab.config.schema import StudyConfig
from pae_lab.tracking.store import RunLogger


@dataclass
class StageContext:
    stage: str
    study: StudyConfig
    inputs: dict[str, Path]
    study_layout: StudyLayout
    device: torch.device
    logger: RunLogger | None = None
    progress: ProgressWriter | None = None
    spec: RunSpec | None = None
    dist: Dist = SINGLE  # this process's rank when the job runs several (pae_lab.stages.distributed)
    _cache: dict = field(default_factory=dict)

    @property
    def run_layout(self) -> RunLayout:
        if self.spec is None:
            raise RuntimeError(f"stage {self.stage!r} is shared: it has no run folder")
        return self.spec.layout

    @property
    def seed(self) -> int:
        return self.spec.seed if self.spec is not None else 0

    def input(self, stage: str) -> Path:
        """The folder of a stage this one reads (declared in the graph)."""
        try:
            return self.inputs[stage]
        except KeyError:
            raise KeyError(f"stage {self.stage!r} does not read {stage!r}: add it to the stage's `reads` "
                           f"in pae_lab/plan/graph.py (it reads {', '.join(self.inputs) or 'nothing'})") from None

    def split(self, name: str) -> DiskSplit:
        """A data split, opened once per job; its images stay on disk and are read batch by batch."""
        key = f"split:{name}"
        if key not in self._cache:
            self._cache[key] = DiskSplit.open(split_file(self.input("data"), name))
        return self._cache[key]

    def array(self, stage: str, filename: str) -> DiskArray:
        """A `.npy` file of a stage this one reads, read row by row (never loaded whole)."""
        key = f"{stage}:{filename}"
        if key not in self._cache:
            self._cache[key] = DiskArray(self.input(stage) / filename)
        return self._cache[key]


def split_file(data_dir: Path, split: str) -> SplitLayout:
    """Where the data stage keeps one split (a folder, see pae_lab.data.splits)."""
    return SplitLayout(Path(data_dir) / split)
