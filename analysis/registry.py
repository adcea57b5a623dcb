"""Named registries: the library registers its built-ins through the same public call a user does.

One small class serves regularizers, variants, datasets, priors, perceptual distances, samplers
and feature extractors, so every registry checks names the same way and fails at registration
with the name in the message. A built-in can be *declared* first (`declare(name, module)`): its
name is listed and checked without importing the module (and torch); `get` imports the module,
whose registration call then fills the entry.
"""
from __future__ import annotations

import fnmatch
import importlib
import inspect
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """An unknown or badly named registry entry; the message says which and what exists."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """A dict of named entries with validated registration and wildcard listing."""

    def __init__(self, kind: str, base: type | str | None = None, returns: type | str | None = None):
        """`base`: entries must be subclasses of it; `returns`: entries are factories building one.
        Either may be a "module:attr" string, imported at the first registration (a light registry)."""
        self.kind = kind
        self._base = base
        self._returns = returns
        self._entries: dict[str, T] = {}
        self._declared: dict[str, tuple[str, dict[str, Any]]] = {}

    base = property(lambda self: _resolve_type(self._base))
    returns = property(lambda self: _resolve_type(self._returns))

    def declare(self, name: str, module: str, **info: Any) -> None:
        """Name an entry that `module` registers when imported; `info` is what listings show meanwhile."""
        self._declared[name] = (module, info)

    def info(self, name: str) -> dict[str, Any]:
        """What the declaration says about `name` ({} for an entry registered without one)."""
        return self._declared.get(name, ("", {}))[1]

    def peek(self, name: str) -> T | None:
        """The registered entry, or None while it is only declared; imports nothing."""
        return self._entries.get(name)

    def load_all(self) -> None:
        """Import every declared module, so every declared entry is registered."""
        for module, _ in self._declared.values():
            importlib.import_module(module)

    def register(self, name: str, entry: T, *, overwrite: bool = False) -> T:
        if not isinstance(name, str) or not name or any(c.isspace() for c in name) or "/" in name:
            raise RegistryError(f"invalid {self.kind} name {name!r}: use a non-empty name without spaces or '/'")
        if name in self._entries and not overwrite:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        base, returns = self.base, self.returns
        if base is not None and not (isinstance(entry, type) and issubclass(entry, base)):
            raise RegistryError(f"{self.kind} {name!r} must be a subclass of {base.__name__}, got {entry!r}")
        if returns is not None and not callable(entry):
            raise RegistryError(f"{self.kind} {name!r} must be a factory returning a {returns.__name__}, got {entry!r}")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str, **kwargs: Any) -> Callable[[T], T]:
        """`@registry.decorator("name")` registers the decorated class or function."""

        def wrap(entry: T) -> T:
            return self.register(name, entry, **kwargs)

        return wrap

    def get(self, name: str) -> T:
        if name not in self._entries and name in self._declared:
            importlib.import_module(self._declared[name][0])
            if name not in self._entries:
                raise RegistryError(f"{self.kind} {name!r} is declared in {self._declared[name][0]}, "
                                    "which registers no such entry")
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise RegistryError(f"unknown {self.kind} {name!r}; registered: {known}") from None

    def build(self, name: str, **params: Any) -> Any:
        """Call the factory `name` with `params`; unknown keywords and wrong return types fail clearly."""
        factory = self.get(name)
        check_params(self.kind, name, factory, params)
        out = factory(**params)
        returns = self.returns
        if returns is not None and not isinstance(out, returns):
            raise TypeError(f"{self.kind} {name!r} returned {type(out).__name__}; it must return a {returns.__name__}")
        return out

    def unregister(self, name: str) -> T:
        """Remove an entry (tests and plugins that clean up after themselves)."""
        return self._entries.pop(name)

    def order(self) -> list[str]:
        """Names in registration order (the stage graph runs in it)."""
        return list(self._entries)

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in {**self._declared, **self._entries} if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._declared

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())


def _resolve_type(spec: type | str | None) -> type | None:
    if not isinstance(spec, str):
        return spec
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def check_params(kind: str, name: str, factory: Callable[..., Any], params: dict[str, Any]) -> None:
    """Unknown keyword -> an error that lists the parameters the factory does take."""
    sig = inspect.signature(factory)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    unknown = sorted(set(params) - set(sig.parameters))
    if unknown:
        raise TypeError(f"{kind} {name!r} has no parameter(s) {', '.join(unknown)}; "
                        f"it takes: {', '.join(sig.parameters) or 'nothing'}")


def entry_named(value: Any, registry: Registry[T], default: str, block: str, register: str) -> tuple[dict[str, Any], T]:
    """A config block that picks its registry entry by `name:` -> (the block as a mapping, the entry);
    one message for every such block (`tokenizer:`, `launcher:`). `register`: the call that adds more."""
    value = {} if value is None else value
    if not isinstance(value, dict):
        raise ValueError(f"{block} must be a mapping with a `name`, got {type(value).__name__}")
    name = value.get("name", default)
    if name not in registry:
        raise ValueError(f"unknown {registry.kind} {name!r}; registered: {', '.join(registry.names())} "
                         f"(a plugin registers more with {register})")
    return value, registry.get(name)
