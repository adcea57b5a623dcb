"""Errors a user can act on: the CLI prints their message as one line, never a traceback."""
from __future__ import annotations


class StudyError(ValueError):
    """A study file that cannot run; the message names the file, the key path and the bad value."""
