"""The `launcher:` block: `name` picks a launcher, whose own config model validates the rest.

As with tokenizer architectures, each launcher brings its settings as a pydantic model (a subclass
of `LauncherConfig`), registered with the launcher class in `pae_lab.catalog.LAUNCHERS`
(`pae_lab.execution.launchers.base.register_launcher`), so a plugin's launcher is validated as
strictly as the built-ins and appears in the YAML reference with no edit to the schema. The
built-ins' modules are light (pydantic and the stdlib): validating a study imports neither
submitit nor torch.

Before issue 22 every launcher shared one block, with the SLURM settings nested under `slurm:`.
That form stays valid: a mapping under a launcher's name holds that launcher's settings; the
chosen launcher's is merged into the block (its keys win), another launcher's is checked against
its own model and set aside, so switching `name` keeps a study valid.
"""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SerializeAsAny, ValidationError

from pae_lab.catalog import LAUNCHERS
from pae_lab.registry import entry_named

DEFAULT_LAUNCHER = "inline"


class LauncherConfig(BaseModel):
    """Where the runs execute: `name` selects the launcher; the other keys are that launcher's."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    name: str = Field(DEFAULT_LAUNCHER, description="Launcher registry entry (`pae-lab registry launchers`): inline "
                      "(this process), local (submitit subprocesses), slurm (submitit job arrays) or a plugin's.")
    threads_per_job: int | None = Field(None, ge=1, description="torch threads per job process; default: the "
                                        "launcher's share of the cores.")

    def processes_per_job(self) -> int:
        """How many processes train one run together (1: no torch.distributed)."""
        return 1

    @classmethod
    def registered_configs(cls) -> dict[str, type[BaseModel]]:
        """Every registered launcher's config model, for the generated YAML reference."""
        return {name: LAUNCHERS.get(name).config for name in LAUNCHERS}


def _validated(config: type[LauncherConfig], data: dict[str, Any], block: str | None = None) -> LauncherConfig:
    """`config.model_validate(data)`; errors inside a nested launcher block name the key as the file spells it."""
    try:
        return config.model_validate(data)
    except ValidationError as err:
        if block is None:
            raise
        first = err.errors()[0]
        key = ".".join(str(part) for part in (block, *first["loc"]))
        raise ValueError(f"{key}: {first['msg'].removeprefix('Value error, ')} (got {first.get('input')!r})") from None


def validate_launcher(value: Any) -> LauncherConfig:
    """A `launcher:` block (mapping or config) -> the config model of the launcher it names."""
    if isinstance(value, LauncherConfig):
        return value
    value, entry = entry_named(value, LAUNCHERS, DEFAULT_LAUNCHER, "launcher",
                               "pae_lab.execution.launchers.base.register_launcher")
    name, config = value.get("name", DEFAULT_LAUNCHER), entry.config
    own = {k: v for k, v in value.items() if not (k in LAUNCHERS and k not in config.model_fields and isinstance(v, dict))}
    for other, block in value.items():
        if other not in own:  # a launcher's settings under its name (the form before issue 22)
            _validated(LAUNCHERS.get(other).config, {**block, "name": other}, block=other)
            if other == name:
                own.update(block)
    # a flat key another launcher takes (`max_parallel` of local) is set aside, so `--set launcher.name=inline`
    # on a study written for `local` still runs; a key no launcher takes is an error
    others = {k for n in LAUNCHERS.names() if n != name for k in LAUNCHERS.get(n).config.model_fields}
    own = {k: v for k, v in own.items() if k in config.model_fields or k not in others}
    unknown = sorted(set(own) - set(config.model_fields))
    if unknown:
        raise ValueError(f"launcher {name!r} takes no {', '.join(unknown)}; it takes: {', '.join(config.model_fields)}. "
                         f"Another launcher's settings may stay under its name, e.g. `local: {{max_parallel: 2}}`")
    return _validated(config, own)


def default_launcher() -> LauncherConfig:
    return validate_launcher({})


# The annotation of StudyConfig.launcher: dispatch on `name`, serialise every subclass field.
LauncherSpec = Annotated[SerializeAsAny[LauncherConfig], BeforeValidator(validate_launcher)]
