"""The tokenizer architecture registry: `tokenizer.name` picks an entry, its config model validates the block.

An entry pairs a pydantic config model (a subclass of `ArchitectureConfig`) with a builder
`(config) -> nn.Module` exposing `encode(x01) -> z`, `decode(z) -> x` and `latent_channels`. The
builder may be named as "module:function" and is imported only when a network is built, so
validating, planning and hashing a study never import torch (the built-ins register that way in
`pae_lab.config.tokenizers`). A plugin module registers with the same call, or decorates its
builder. The registry itself is declared in `pae_lab.catalog` with the other registries;
`pae_lab.architectures` stays the import path of plugins. Validation dispatches on `name` through the registry, so a plugin's architecture is
checked as strictly as the built-ins (unknown keys are errors) and appears in the YAML reference.
Pydantic and the stdlib only.
"""
from __future__ import annotations

import pkgutil
from dataclasses import dataclass
from typing import Annotated, Any, Callable

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SerializeAsAny

from pae_lab.catalog import ARCHITECTURES
from pae_lab.registry import RegistryError, entry_named

DEFAULT_ARCHITECTURE = "conv"


class ArchitectureConfig(BaseModel):
    """Tokenizer architecture: `name` selects the registry entry; the other keys are that entry's."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    name: str = Field(DEFAULT_ARCHITECTURE, description="Architecture registry entry (`pae-lab registry architectures`).")
    latent_channels: int = Field(16, ge=1, description="Channels C of the latent z; each token has RMS norm 1.")
    downsample: int = Field(4, ge=1, description="Spatial downsample factor f: an image of side S has a latent grid of S/f.")

    def local_files(self) -> list[tuple[str, str, str]]:
        """(key under `tokenizer.`, path, what) for every local file this architecture needs: checked by preflight
        and hashed into the tokenizer stage's identity."""
        return []

    @classmethod
    def registered_configs(cls) -> dict[str, type[BaseModel]]:
        """Every registered architecture's config model, for the generated YAML reference."""
        return {name: ARCHITECTURES.get(name).config for name in ARCHITECTURES}


Builder = Callable[[Any], Any]


@dataclass(frozen=True)
class Architecture:
    """`trainable=False`: a pretrained model that the tokenizer stage loads instead of training."""

    config: type[ArchitectureConfig]
    build: Builder | str  # a callable, or "module:function" imported when first built
    trainable: bool = True

    def builder(self) -> Builder:
        return pkgutil.resolve_name(self.build) if isinstance(self.build, str) else self.build


def register_architecture(name: str, config: type[ArchitectureConfig], build: Builder | str | None = None, *,
                          trainable: bool = True) -> Callable[[Builder], Builder]:
    """`register_architecture("name", MyConfig, "module:build")`, or `@register_architecture("name", MyConfig)`
    on a builder `(MyConfig) -> nn.Module`."""
    if not (isinstance(config, type) and issubclass(config, ArchitectureConfig)):
        raise RegistryError(f"tokenizer architecture {name!r}: config must subclass ArchitectureConfig, got {config!r}")

    def wrap(builder: Builder | str) -> Builder | str:
        ARCHITECTURES.register(name, Architecture(config, builder, trainable))
        return builder

    if build is not None:
        wrap(build)
    return wrap


def validate_tokenizer(value: Any) -> ArchitectureConfig:
    """A `tokenizer:` block (mapping or config) -> the config model of the architecture it names."""
    if isinstance(value, ArchitectureConfig):
        return value
    value, entry = entry_named(value, ARCHITECTURES, DEFAULT_ARCHITECTURE, "tokenizer",
                               "pae_lab.architectures.register_architecture")
    return entry.config.model_validate(value)


# The annotation of StudyConfig.tokenizer: dispatch on `name`, serialise every subclass field.
TokenizerSpec = Annotated[SerializeAsAny[ArchitectureConfig], BeforeValidator(validate_tokenizer)]


def architecture(config: ArchitectureConfig) -> Architecture:
    return ARCHITECTURES.get(config.name)


def build_tokenizer(config: ArchitectureConfig | dict[str, Any]):
    """The network of a tokenizer config (a mapping is validated first)."""
    config = validate_tokenizer(config)
    return architecture(config).builder()(config)
