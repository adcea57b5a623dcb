"""Tokenizer variants: a named set of regularizers with weights and parameters.

A study names variants; baseline and treatment differ only in this block. Specs are validated
when registered (every regularizer exists, every parameter is accepted by its constructor), and
stored fully resolved (every weight explicit), so a variant's config hash says exactly what ran.

In a spec each regularizer maps to {"weight": w, **params}, or to a bare number (the weight);
an omitted weight means the regularizer's default_weight; a weight of 0 or `null` removes it.
"""
from __future__ import annotations

import inspect
from typing import Any, Iterable, Mapping

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from pae_lab.catalog import BUILTIN_VARIANTS, VARIANTS
from pae_lab.losses import REGULARIZERS, Regularizer, build_regularizer


class VariantError(ValueError):
    """A variant spec that cannot be resolved; the message names the variant, regularizer and key."""


class Variant(BaseModel):
    """A resolved variant: every regularizer entry carries an explicit weight and its params."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Registry name of the variant.")
    description: str = Field("", description="One line on what the variant tests.")
    regularizers: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Regularizer name -> {'weight': w, **constructor params}."
    )
    tokenizer: dict[str, Any] | None = Field(
        None, description="A whole `tokenizer:` block replacing the study's for this variant (e.g. an external model)."
    )

    @property
    def weights(self) -> dict[str, float]:
        return {name: float(entry["weight"]) for name, entry in self.regularizers.items()}

    def params(self, name: str) -> dict[str, Any]:
        """Constructor parameters of one regularizer (its entry without the weight)."""
        return {k: v for k, v in self.regularizers[name].items() if k != "weight"}

    @property
    def needs(self) -> frozenset[str]:
        """Context fields ('target', 'vfm') any of its regularizers needs: tells the trainer what prior to compute."""
        return regularizer_needs(self.regularizers)

    def build(self, *, latent_channels: int | None = None, vfm_dim: int | None = None) -> nn.ModuleDict:
        """The regularizer modules by name (pair with `weights`); put their parameters in the optimizer."""
        return nn.ModuleDict(
            {n: build_regularizer(n, latent_channels=latent_channels, vfm_dim=vfm_dim, **self.params(n)) for n in self.regularizers}
        )


def regularizer_needs(names: Iterable[str]) -> frozenset[str]:
    """The context fields ('target', 'vfm') these regularizers read."""
    return frozenset().union(*(REGULARIZERS.get(n).needs for n in names))


def _normalize_entry(variant: str, reg: str, entry: Any) -> dict[str, Any] | None:
    """A spec entry -> {'weight': w, ...} or None (removed); bare numbers are weights."""
    if entry is None:
        return None
    if isinstance(entry, (int, float)) and not isinstance(entry, bool):
        entry = {"weight": entry}
    if not isinstance(entry, Mapping):
        raise VariantError(
            f"variant {variant!r}: regularizer {reg!r} must map to a weight or a dict like {{'weight': 0.2, ...params}}, got {entry!r}"
        )
    entry = dict(entry)
    if "weight" in entry and entry["weight"] is None:
        return None
    return entry


def _validate_entry(variant: str, reg: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Check the regularizer exists and accepts the params; fill in the default weight."""
    if reg not in REGULARIZERS:
        raise VariantError(f"variant {variant!r}: unknown regularizer {reg!r}; registered: {', '.join(REGULARIZERS.names()) or 'none'}")
    cls: type[Regularizer] = REGULARIZERS.get(reg)
    weight = entry.get("weight", cls.default_weight)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
        raise VariantError(f"variant {variant!r}: regularizer {reg!r} has weight {weight!r}; use a number >= 0 (0 removes it)")
    params = {k: v for k, v in entry.items() if k != "weight"}
    accepted = cls.param_defaults()
    takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())
    unknown = sorted(set(params) - set(accepted)) if not takes_any else []
    if unknown:
        raise VariantError(
            f"variant {variant!r}: regularizer {reg!r} has no parameter {unknown[0]!r}; "
            f"it accepts: {', '.join(accepted) or 'no parameters'} (and 'weight')"
        )
    try:
        cls(**params)  # value checks live in the constructor; run them now, not at step 0
    except (TypeError, ValueError) as err:
        raise VariantError(f"variant {variant!r}: regularizer {reg!r} rejects params {params}: {err}") from err
    return {"weight": float(weight), **params}


def _resolve(name: str, regularizers: Mapping[str, Any], description: str, base: Variant | None,
             tokenizer: dict[str, Any] | None = None) -> Variant:
    if not isinstance(regularizers, Mapping):
        raise VariantError(f"variant {name!r}: 'regularizers' must be a mapping of regularizer name -> entry, got {regularizers!r}")
    merged: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (base.regularizers if base else {}).items()}
    for reg, raw in regularizers.items():
        entry = _normalize_entry(name, reg, raw)
        if entry is None or entry.get("weight", 1) == 0:
            merged.pop(reg, None)
            continue
        merged[reg] = {**merged.get(reg, {}), **entry}  # overrides extend the base entry's params
    resolved = {reg: _validate_entry(name, reg, entry) for reg, entry in merged.items()}
    if tokenizer is not None and not isinstance(tokenizer, Mapping):
        raise VariantError(f"variant {name!r}: 'tokenizer' must be a tokenizer block (a mapping with a name), got {tokenizer!r}")
    return Variant(name=name, description=description or (f"{base.name} with overrides" if base else ""), regularizers=resolved,
                   tokenizer=dict(tokenizer) if tokenizer is not None else (base.tokenizer if base else None))


def register_variant(
    name: str, regularizers: Mapping[str, Any], description: str = "", *, base: str | None = None, overwrite: bool = False
) -> Variant:
    """Validate and register a variant; `base` names a registered variant it extends."""
    variant = _resolve(name, regularizers, description, get_variant(base) if base else None)
    return VARIANTS.register(name, variant, overwrite=overwrite)


def get_variant(name: str) -> Variant:
    return VARIANTS.get(name)


_SPEC_KEYS = {"name", "base", "description", "regularizers", "tokenizer"}


def resolve_variant(spec: str | Variant | Mapping[str, Any]) -> Variant:
    """A registered name, a Variant, or an inline dict {name, base?, description?, regularizers, tokenizer?}
    whose entries override/extend the base's (weight 0 or null removes one) -> a resolved Variant.
    `tokenizer` replaces the study's whole tokenizer block for this variant."""
    if isinstance(spec, Variant):
        return spec
    if isinstance(spec, str):
        return get_variant(spec)
    if not isinstance(spec, Mapping):
        raise VariantError(f"a variant is a registered name or a dict {{name, base?, regularizers}}; got {spec!r}")
    unknown = sorted(set(spec) - _SPEC_KEYS)
    name = spec.get("name")
    if unknown:
        raise VariantError(f"inline variant {name!r}: unknown key(s) {unknown}; allowed: {sorted(_SPEC_KEYS)}")
    if not isinstance(name, str) or not name:
        raise VariantError(f"an inline variant needs a 'name' (used for run identity); got spec {dict(spec)!r}")
    base = get_variant(spec["base"]) if spec.get("base") else None
    return _resolve(name, spec.get("regularizers") or {}, spec.get("description", ""), base, spec.get("tokenizer"))


# Built-ins (the paper's 2x2x2 ablation and the VA-VAE peer), declared in pae_lab.catalog.
for _name, (_regularizers, _description) in BUILTIN_VARIANTS.items():
    register_variant(_name, _regularizers, _description)
