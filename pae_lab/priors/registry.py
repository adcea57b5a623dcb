"""The prior registry: a study names a prior, `build_prior` turns the name into a frozen `Prior`.

Entries are factories `(**params) -> Prior`; the built-ins register through `register_prior`,
the same decorator a user puts on their own factory.
"""
from __future__ import annotations

from typing import Any, Callable

from pae_lab.data.registry import check_params
from pae_lab.priors.base import Prior
from pae_lab.registry import Registry

PriorFactory = Callable[..., Prior]

PRIORS: Registry[PriorFactory] = Registry("prior")


def register_prior(name: str) -> Callable[[PriorFactory], PriorFactory]:
    """`@register_prior("name")` on a factory `(**params) -> Prior`."""

    def wrap(factory: PriorFactory) -> PriorFactory:
        if not callable(factory):
            raise TypeError(f"prior {name!r} must be a callable factory returning a Prior, got {factory!r}")
        return PRIORS.register(name, factory)

    return wrap


def build_prior(name: str, **params: Any) -> Prior:
    """Build the registered prior `name` with `params`, frozen and in eval mode."""
    factory = PRIORS.get(name)
    check_params("prior", name, factory, params)
    prior = factory(**params)
    if not isinstance(prior, Prior):
        raise TypeError(f"prior {name!r} returned {type(prior).__name__}; a prior factory must return a pae_lab.priors.Prior")
    return prior.freeze()
