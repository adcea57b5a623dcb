"""Named registries: the library registers its built-ins through the same public call a user does.

One small class serves regularizers, variants, datasets, priors, perceptual distances, samplers
and feature extractors, so every registry checks names the same way and fails at registration
with the name in the message.
"""
from __future__ import annotations

import fnmatch
import inspect
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """An unknown or badly named registry entry; the message says which and what exists."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """A dict of named entries with validated registration and wildcard listing."""

    def __init__(self, kind: str, base: type | None = None, returns: type | None = None):
        """`base`: entries must be subclasses of it; `returns`: entries are factories building one."""
        self.kind = kind
        self.base = base
        self.returns = returns
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T, *, overwrite: bool = False) -> T:
        if not isinstance(name, str) or not name or any(c.isspace() for c in name) or "/" in name:
            raise RegistryError(f"invalid {self.kind} name {name!r}: use a non-empty name without spaces or '/'")
        if name in self._entries and not overwrite:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        if self.base is not None and not (isinstance(entry, type) and issubclass(entry, self.base)):
            raise RegistryError(f"{self.kind} {name!r} must be a subclass of {self.base.__name__}, got {entry!r}")
        if self.returns is not None and not callable(entry):
            raise RegistryError(f"{self.kind} {name!r} must be a factory returning a {self.returns.__name__}, got {entry!r}")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str, **kwargs: Any) -> Callable[[T], T]:
        """`@registry.decorator("name")` registers the decorated class or function."""

        def wrap(entry: T) -> T:
            return self.register(name, entry, **kwargs)

        return wrap

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise RegistryError(f"unknown {self.kind} {name!r}; registered: {known}") from None

    def build(self, name: str, **params: Any) -> Any:
        """Call the factory `name` with `params`; unknown keywords and wrong return types fail clearly."""
        factory = self.get(name)
        check_params(self.kind, name, factory, params)
        out = factory(**params)
        if self.returns is not None and not isinstance(out, self.returns):
            raise TypeError(f"{self.kind} {name!r} returned {type(out).__name__}; it must return a {self.returns.__name__}")
        return out

    def unregister(self, name: str) -> T:
        """Remove an entry (tests and plugins that clean up after themselves)."""
        return self._entries.pop(name)

    def order(self) -> list[str]:
        """Names in registration order (the stage graph runs in it)."""
        return list(self._entries)

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


def check_params(kind: str, name: str, factory: Callable[..., Any], params: dict[str, Any]) -> None:
    """Unknown keyword -> an error that lists the parameters the factory does take."""
    sig = inspect.signature(factory)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    unknown = sorted(set(params) - set(sig.parameters))
    if unknown:
        raise TypeError(f"{kind} {name!r} has no parameter(s) {', '.join(unknown)}; "
                        f"it takes: {', '.join(sig.parameters) or 'nothing'}")
