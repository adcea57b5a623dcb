"""A user plugin for the tests: a regularizer that makes one job wait where a test can kill it.

The first job to reach its first training step (across processes: an O_EXCL claim file in
$PAE_TEST_BLOCK_DIR) writes its pid to `pid` and waits until `release` appears (bounded); every
other job passes straight through. So a test kills a job in a known stage without racing it.
"""
import os
import time
from pathlib import Path

import torch

from pae_lab.losses.regularizers import REGULARIZERS, Regularizer
from pae_lab.variants import register_variant


class BlockOnce(Regularizer):
    """Zero loss; the first job to call it waits on a file (see the module docstring)."""

    default_weight = 1.0

    def forward(self, ctx):
        folder = os.environ.get("PAE_TEST_BLOCK_DIR")
        if folder and not getattr(self, "_passed", False):
            self._passed = True
            try:
                os.close(os.open(Path(folder) / "claimed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return ctx.z.sum() * 0.0
            tmp = Path(folder) / f"pid.{os.getpid()}"
            tmp.write_text(str(os.getpid()))
            tmp.replace(Path(folder) / "pid")
            deadline = time.monotonic() + 300
            while not (Path(folder) / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return ctx.z.sum() * torch.tensor(0.0)


# Imported only by the job and driver subprocesses a test starts (study `plugins:`), never by the
# test process itself, so no global registry of the test session changes.
REGULARIZERS.register("block_once", BlockOnce, overwrite=True)
register_variant("blocks", {"block_once": {"weight": 1.0}}, description="test: waits to be killed", overwrite=True)
