"""What a per-run stage gets: the run's spec, its study config, device, logger and progress writer."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pae_lab.config import StudyConfig
from pae_lab.data.splits import DiskSplit
from pae_lab.plan import RunSpec
from pae_lab.progress import ProgressWriter
from pae_lab.tracking import RunLogger


@dataclass
class RunContext:
    spec: RunSpec
    study: StudyConfig
    device: torch.device
    logger: RunLogger
    progress: ProgressWriter
    _cache: dict = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return Path(self.spec.run_dir)

    def stage_dir(self, stage: str) -> Path:
        return self.run_dir / stage

    def shared(self, stage: str) -> Path:
        return Path(self.spec.shared_dirs[stage])

    def split(self, name: str) -> DiskSplit:
        """A data split, opened once per job; its images stay on disk and are read batch by batch."""
        key = f"split:{name}"
        if key not in self._cache:
            self._cache[key] = DiskSplit.open(self.shared("data") / name)
        return self._cache[key]

    def array(self, stage: str, filename: str) -> np.ndarray:
        key = f"{stage}:{filename}"
        if key not in self._cache:
            self._cache[key] = np.load(self.shared(stage) / filename)
        return self._cache[key]
