"""The study's plugin modules: imported first, so their registrations exist before names are checked."""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

from pae_lab.config.errors import StudyError


def import_plugins(path: Path, modules: Any) -> None:
    """Import the study's plugin modules; they are looked up in the working directory too."""
    if modules and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for i, module in enumerate(modules or []):
        try:
            importlib.import_module(str(module))
        except Exception as exc:  # a broken plugin must name itself, not crash with a traceback
            raise StudyError(f"{path}: plugins[{i}]: cannot import {module!r}: {exc}") from None
