"""The prior registry: a study names a prior, `build_prior` turns the name into a frozen `Prior`.

Entries are factories `(**params) -> Prior`; the built-ins register through `register_prior`,
the same decorator a user puts on their own factory.
"""
from __future__ import annotations

from typing import Any, Callable

from pae_lab.priors.base import Prior
from pae_lab.catalog import PRIORS

PriorFactory = Callable[..., Prior]


def register_prior(name: str) -> Callable[[PriorFactory], PriorFactory]:
    """`@register_prior("name")` on a factory `(**params) -> Prior`."""
    return PRIORS.decorator(name)


def build_prior(name: str, **params: Any) -> Prior:
    """Build the registered prior `name` with `params`, frozen and in eval mode."""
    return PRIORS.build(name, **params).freeze()
