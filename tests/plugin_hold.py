"""A user plugin for the tests: a zero-loss regularizer that holds every job at chosen steps, so a
test can stop and start the tracking server while all of a study's jobs are mid-training.

Driven by environment variables the jobs inherit: $PAE_TEST_HOLD_DIR (a folder) and
$PAE_TEST_HOLD_STEPS (e.g. "2,4"). At each listed step of the first training stage a job touches
`at<step>.<pid>` in the folder and waits until `go<step>` appears there (bounded: a job that
waits in vain fails with that message, so a test never hangs). Without the variables it is a
plain zero loss. Imported only by the processes a test starts (study `plugins:`).
"""
import os
import time
from pathlib import Path

from pae_lab.losses.regularizers import REGULARIZERS, Regularizer
from pae_lab.variants import register_variant

BOUND_S = 240


class TestHold(Regularizer):
    """Zero loss; holds at the steps the environment names (see the module docstring)."""

    default_weight = 1.0

    def forward(self, ctx):
        folder, steps = os.environ.get("PAE_TEST_HOLD_DIR"), os.environ.get("PAE_TEST_HOLD_STEPS", "")
        held = getattr(self, "_held", set())
        if folder and str(ctx.step) in steps.split(",") and ctx.step not in held:
            self._held = held | {ctx.step}
            (Path(folder) / f"at{ctx.step}.{os.getpid()}").touch()
            deadline = time.monotonic() + BOUND_S
            while not (Path(folder) / f"go{ctx.step}").exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"test_hold: go{ctx.step} did not appear in {folder} within {BOUND_S} s")
                time.sleep(0.05)
        return ctx.z.sum() * 0.0


REGULARIZERS.register("test_hold", TestHold, overwrite=True)
register_variant("holds", {"test_hold": {"weight": 1.0}}, description="test: holds at steps", overwrite=True)
