"""Which columns of results.csv are which: ids, per-run spreads, generation and reconstruction FD / KD.

Fidelity columns are recognised by lookup among the declared ones (analysis.fidelity_names), plus
the paper's own `gfid` name for a generation FD; nothing here parses a column name.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from analysis.fidelity_names import fidelity_role

ID_COLUMNS = ("variant", "kind", "seed", "run_id", "status", "correlation_target")
GENERATION_OUTPUTS = ("speedup",)


def is_generation_fd(column: str) -> bool:
    return column == "gfid" or fidelity_role(column) == "fd"


def is_generation_kd(column: str) -> bool:
    return fidelity_role(column) == "kd"


def is_reconstruction_fd(column: str) -> bool:
    return fidelity_role(column) == "rfd"


def first_column(columns: Sequence[str], named: Any, match: Callable[[str], bool]) -> str | None:
    """`named` if it is one of the columns, else the first column that matches."""
    return named if named in columns else next((c for c in columns if match(c)), None)
