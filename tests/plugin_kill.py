"""A user plugin for the tests: a regularizer that SIGKILLs its own process once, at a chosen step.

The kill is deterministic (always at `at_step`, always after the checkpoint before it), where
killing from outside after "some" progress races the training it tries to interrupt. A marker
file makes it fire only on the first attempt, so the rerun can resume and finish.
"""
import os
import signal
from pathlib import Path

from pae_lab.losses.regularizers import Regularizer, register_regularizer


@register_regularizer("kill_once")
class KillOnce(Regularizer):
    """Loss 0; at step `at_step` of the first attempt the process dies as if the OOM killer took it."""

    default_weight = 1.0

    def __init__(self, at_step: int = 5, marker: str = "", rank: int | None = None) -> None:
        super().__init__()
        self.at_step, self.marker, self.rank = at_step, marker, rank  # rank: only that process of a DDP job dies

    def forward(self, ctx):
        mine = self.rank is None or int(os.environ.get("RANK", "0")) == self.rank
        if mine and ctx.step == self.at_step and self.marker and not Path(self.marker).exists():
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return ctx.z.sum() * 0.0
