"""The dataset registry: a study names a dataset, `build_dataset` turns the name into an ImageSet.

Entries are factories `(**params) -> ImageSet`. The built-ins register through
`register_dataset`, the same decorator a user puts on their own factory.
"""
from __future__ import annotations

from typing import Any, Callable

from pae_lab.data.imageset import ImageSet
from pae_lab.catalog import DATASETS

DatasetFactory = Callable[..., ImageSet]


def register_dataset(name: str) -> Callable[[DatasetFactory], DatasetFactory]:
    """`@register_dataset("name")` on a factory `(**params) -> ImageSet`."""
    return DATASETS.decorator(name)


def build_dataset(name: str, **params: Any) -> ImageSet:
    """Build the registered dataset `name` with `params` (see each factory for its defaults)."""
    return DATASETS.build(name, **params)
