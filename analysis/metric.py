"""A metric, declared once: name, which way is better, label, unit, headline or not, what it needs,
and for a panel metric the function that computes it.

results.csv, `pae-lab status`, MLflow's columns, the report's labels and best marks and the
correlations' expected signs all read these declarations, so a plugin metric declared in its own
module with `@panel_metric` appears everywhere with no other edit. A column computed elsewhere
(a speed-up, a published table's gFID) is declared with `declare_column` beside its computation;
the FD / KD columns are declared by `analysis.fidelity_names.FidelityColumns`. Read the
declarations through `analysis.metric_info`, which registers the built-ins first. Imports no torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

from analysis.registry import Registry, RegistryError

Direction = Literal["higher", "lower"]
DIRECTIONS: tuple[Direction, ...] = ("higher", "lower")

# Optional panel inputs a metric may need; the panel skips (or, if asked by name, refuses) a
# metric whose needs were not given.
OPTIONAL_INPUTS = ("labels", "segments", "distance")


@dataclass(frozen=True)
class Metric:
    """One metric's declaration. `direction` None: better neither way (a count, a chance level, a
    hyper-parameter), so nothing is marked best and no correlation sign is expected. `extras`: the
    direction of the metric's secondary columns (`lpc_rho0.1` -> {"rho*": "lower"}), by suffix
    pattern; an extra not listed has none (`linprobe_C`, `gsq_chance`)."""

    name: str
    fn: Callable[[Any], Any] | None = None  # panel metrics: fn(PanelContext) -> MetricResult
    direction: Direction | None = None
    label: str = ""
    unit: str = ""
    headline: bool = False
    needs: tuple[str, ...] = ()
    extras: Mapping[str, Direction] = field(default_factory=dict)
    meaning: str = ""

    @property
    def title(self) -> str:
        """How figures and tables label it: "PSNR [dB]"."""
        label = self.label or self.name
        return f"{label} [{self.unit}]" if self.unit else label

    def missing(self, ctx: Any) -> list[str]:
        """The optional inputs this metric needs that the panel context lacks."""
        return [n for n in self.needs if getattr(ctx, n) is None]


METRICS: Registry[Metric] = Registry("metric")


def register_metric(name: str, fn: Callable[[Any], Any] | None = None, needs: tuple[str, ...] = (), *,
                    direction: Direction | None = None, label: str = "", unit: str = "", headline: bool = False,
                    extras: Mapping[str, Direction] | None = None, meaning: str = "",
                    overwrite: bool = False) -> Metric:
    """Declare metric `name`; with `fn(ctx) -> MetricResult` the panel computes it."""
    if fn is not None and not callable(fn):
        raise RegistryError(f"metric {name!r} must be a callable taking a PanelContext, got {fn!r}")
    if unknown := [n for n in needs if n not in OPTIONAL_INPUTS]:
        raise RegistryError(f"metric {name!r} needs unknown inputs {unknown}; choose from {list(OPTIONAL_INPUTS)}")
    for d in (direction, *(extras or {}).values()):
        if d is not None and d not in DIRECTIONS:
            raise RegistryError(f"metric {name!r}: direction {d!r} must be one of {list(DIRECTIONS)} or None")
    entry = Metric(name, fn, direction, label, unit, headline, tuple(needs), dict(extras or {}), meaning)
    return METRICS.register(name, entry, overwrite=overwrite)


def panel_metric(name: str, needs: tuple[str, ...] = (), **declaration: Any) -> Callable[[Callable], Callable]:
    """Decorator form of `register_metric`; returns the function unchanged."""

    def wrap(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        register_metric(name, fn, needs, **declaration)
        return fn

    return wrap


def declare_column(name: str, **declaration: Any) -> Metric:
    """Declare a column another part computes (no panel function), for its direction and label."""
    return register_metric(name, **declaration, overwrite=True)
