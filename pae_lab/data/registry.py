"""The dataset registry: a study names a dataset, `build_dataset` turns the name into an ImageSet.

Entries are factories `(**params) -> ImageSet`. The built-ins register through
`register_dataset`, the same decorator a user puts on their own factory.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from pae_lab.data.imageset import ImageSet
from pae_lab.registry import Registry

DatasetFactory = Callable[..., ImageSet]

DATASETS: Registry[DatasetFactory] = Registry("dataset")


def register_dataset(name: str) -> Callable[[DatasetFactory], DatasetFactory]:
    """`@register_dataset("name")` on a factory `(**params) -> ImageSet`."""

    def wrap(factory: DatasetFactory) -> DatasetFactory:
        if not callable(factory):
            raise TypeError(f"dataset {name!r} must be a callable factory returning an ImageSet, got {factory!r}")
        return DATASETS.register(name, factory)

    return wrap


def check_params(kind: str, name: str, factory: Callable[..., Any], params: dict[str, Any]) -> None:
    """Unknown keyword -> an error that lists the parameters the factory does take."""
    sig = inspect.signature(factory)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    unknown = sorted(set(params) - set(sig.parameters))
    if unknown:
        raise TypeError(f"{kind} {name!r} has no parameter(s) {', '.join(unknown)}; "
                        f"it takes: {', '.join(sig.parameters) or 'nothing'}")


def build_dataset(name: str, **params: Any) -> ImageSet:
    """Build the registered dataset `name` with `params` (see each factory for its defaults)."""
    factory = DATASETS.get(name)
    check_params("dataset", name, factory, params)
    out = factory(**params)
    if not isinstance(out, ImageSet):
        raise TypeError(f"dataset {name!r} returned {type(out).__name__}; a dataset factory must return an ImageSet")
    return out
