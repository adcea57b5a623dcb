"""A user plugin for the tests: a zero-loss regularizer that makes jobs wait where a test wants them.

Driven by environment variables the job inherits (locally or through sbatch), all in
$PAE_TEST_BLOCK_DIR:
- PAE_TEST_BARRIER=N: every job waits at its first step until N jobs have arrived (a job that waits
  in vain fails after a bound: proof that N jobs ran at once);
- otherwise the first job to reach step $PAE_TEST_BLOCK_STEP (default 0; claimed across processes
  with an O_EXCL file) writes `pid` and `jobid` (SLURM's, if any) and waits until `release`
  appears (bounded); every other job, and the same job after a restart, passes straight through.
Without PAE_TEST_BLOCK_DIR it is a plain zero loss. Imported only by the job and driver
subprocesses a test starts (study `plugins:`), never by the test process itself.
"""
import os
import time
from pathlib import Path

from pae_lab.losses.regularizers import REGULARIZERS, Regularizer
from pae_lab.variants import register_variant

BOUND_S = 240


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def _wait(condition) -> bool:
    deadline = time.monotonic() + BOUND_S
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class TestWait(Regularizer):
    """Zero loss; waits on files for the tests (see the module docstring)."""

    default_weight = 1.0

    def forward(self, ctx):
        folder = os.environ.get("PAE_TEST_BLOCK_DIR")
        if folder and not getattr(self, "_passed", False):
            folder = Path(folder)
            if os.environ.get("PAE_TEST_BARRIER"):
                self._passed = True
                n = int(os.environ["PAE_TEST_BARRIER"])
                (folder / f"arrived.{os.getpid()}").touch()
                if not _wait(lambda: len(list(folder.glob("arrived.*"))) >= n):
                    raise RuntimeError(f"barrier: only {len(list(folder.glob('arrived.*')))} of {n} jobs ran at once")
            elif ctx.step >= int(os.environ.get("PAE_TEST_BLOCK_STEP", "0")):
                self._passed = True
                try:
                    os.close(os.open(folder / "claimed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    return ctx.z.sum() * 0.0
                task = os.environ.get("SLURM_ARRAY_TASK_ID")
                job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{task}" if task else os.environ.get("SLURM_JOB_ID", "")
                _write(folder / "jobid", job)
                _write(folder / "pid", str(os.getpid()))
                _wait(lambda: (folder / "release").exists())
        return ctx.z.sum() * 0.0


REGULARIZERS.register("test_wait", TestWait, overwrite=True)
register_variant("waits", {"test_wait": {"weight": 1.0}}, description="test: waits on files", overwrite=True)
