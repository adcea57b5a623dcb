"""A user plugin for the tests: a regularizer that holds training at a chosen step until the run's
stop request (stop.json) appears, so a pruner always acts while the trial is still running.

Without it, a pruning test races the pruner's poll against training: on a fast machine the run
finishes first. The wait is bounded; a stop file that never comes fails the run with that message.
"""
import time
from pathlib import Path

from pae_lab.losses.regularizers import Regularizer, register_regularizer

BOUND_S = 120


@register_regularizer("wait_stop")
class WaitForStop(Regularizer):
    """Loss 0; at step `at_step` waits until `stop_file` exists (the training loop then stops the run)."""

    default_weight = 1.0

    def __init__(self, at_step: int = 4, stop_file: str = "") -> None:
        super().__init__()
        self.at_step, self.stop_file = at_step, stop_file

    def forward(self, ctx):
        if ctx.step == self.at_step and self.stop_file:
            deadline = time.monotonic() + BOUND_S
            while not Path(self.stop_file).exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"wait_stop: {self.stop_file} did not appear within {BOUND_S} s")
                time.sleep(0.05)
        return ctx.z.sum() * 0.0
