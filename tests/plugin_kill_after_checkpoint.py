"""Test plugin: with PAE_LAB_KILL_AT=<stage>:<step> set, SIGKILL this process right after that checkpoint.

A deterministic kill: the process dies exactly once the checkpoint is on disk, never racing training.
"""
import os
import signal

from pae_lab.training import TrainLoop

_save = TrainLoop._save


def _save_then_die(self, step, last=None):
    _save(self, step, last)
    if os.environ.get("PAE_LAB_KILL_AT") == f"{self.stage}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


TrainLoop._save = _save_then_die
