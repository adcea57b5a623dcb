"""From a trial's values to the study config it runs, and the checks that need the whole study.

A trial is one inline variant, `trial-<number>`: the base variant's regularizers with the trial's
`regularizers.*` values written in, in a copy of the study with the trial's other values set. It
then expands, hashes and caches like any variant of `pae-lab run`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pae_lab.config.schema import StudyConfig
from pae_lab.config.loading import StudyError, set_dotted
from pae_lab.tuning.objectives import aliases
from pae_lab.registry import RegistryError
from pae_lab.config.search import ParamSpec, SearchConfig
from pae_lab.variants import Variant, resolve_variant

REGULARIZERS_ROOT = "regularizers"


class UnknownPath(LookupError):
    """A searched path that names nothing in the study."""


class TrialConfigError(ValueError):
    """A trial's values make no valid study (a constructor rejects a value, ...): the trial fails."""


def trial_name(number: int) -> str:
    return f"trial-{number:04d}"


def require_search(study: StudyConfig, source: str | Path = "study") -> SearchConfig:
    if study.search is None:
        raise StudyError(f"{source}: search: missing; `pae-lab tune` needs a `search:` block "
                         "(see studies/tune_weights.yaml)")
    return study.search


def base_variant(study: StudyConfig) -> Variant:
    """The search's base variant: an inline variant of the study with that name, else the registry's."""
    name = require_search(study).base_variant
    for entry in study.variants:
        if isinstance(entry, dict) and entry.get("name") == name:
            return resolve_variant(entry)
    return resolve_variant(name)


def _get_dotted(tree: dict[str, Any], path: str) -> Any:
    node: Any = tree
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(path)
        node = node[part]
    return node


def trial_study(study: StudyConfig, values: dict[str, Any], number: int) -> StudyConfig:
    """The study one trial runs: `values` maps config paths to the trial's values."""
    search = require_search(study)
    raw = study.model_dump(mode="json")
    regs = {name: dict(entry) for name, entry in base_variant(study).regularizers.items()}
    for path, value in values.items():
        root, _, rest = path.partition(".")
        if root == REGULARIZERS_ROOT:
            reg, param = rest.split(".", 1)
            regs.setdefault(reg, {})[param] = value
        else:
            set_dotted(raw, path, value)
    described = ", ".join(f"{p.removeprefix('regularizers.')}={v:.4g}" if isinstance(v, float) else
                          f"{p.removeprefix('regularizers.')}={v}" for p, v in values.items())
    spec = {"name": trial_name(number), "description": f"{search.base_variant} with {described}", "regularizers": regs}
    # Jobs re-validate their config: without the search block they need no sampler or pruner plugin.
    raw.update(variants=[spec], output_dir=str(study.study_dir()), search=None)
    try:
        resolve_variant(spec)  # constructor value checks now, not at step 0 of the job
        return StudyConfig.model_validate(raw)
    except (ValueError, RegistryError) as exc:  # ValidationError and VariantError are ValueErrors
        detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise TrialConfigError(f"{trial_name(number)} ({described}): {detail}") from None


def default_value(study: StudyConfig, spec: ParamSpec) -> Any:
    """The value the study already has at `spec.path` (for a regularizer: the base variant's entry,
    else the constructor default; the weight of a regularizer the base lacks is 0, i.e. absent)."""
    from pae_lab.losses import REGULARIZERS

    root, _, rest = spec.path.partition(".")
    if root != REGULARIZERS_ROOT:
        try:
            return _get_dotted(study.model_dump(mode="json"), spec.path)
        except KeyError:
            raise UnknownPath(f"the study has no key {spec.path!r}; check the spelling against `pae-lab run --dry-run` "
                              "or the study.yaml written into the study folder") from None
    reg, param = rest.split(".", 1)
    entry = base_variant(study).regularizers.get(reg)
    if entry is not None and param in entry:
        return entry[param]
    cls = REGULARIZERS.get(reg)
    if param == "weight":
        return 0.0
    defaults = cls.param_defaults()
    if param not in defaults:
        raise UnknownPath(f"regularizer {reg!r} has no parameter {param!r}; it accepts: weight, {', '.join(defaults)}")
    return defaults[param]


def default_values(study: StudyConfig) -> dict[str, Any]:
    """{param label: the study's own value}: the enqueued first trial."""
    return {spec.label: default_value(study, spec) for spec in require_search(study).params.values()}


def check_search(study: StudyConfig, source: str | Path = "study") -> SearchConfig:
    """Cross-checks the schema cannot make: the base variant and every path exist, each parameter's
    values make a valid study, and (with enqueue_defaults) the defaults lie in their ranges."""
    search = require_search(study, source)
    try:
        base_variant(study)
    except (ValueError, RegistryError) as exc:
        raise StudyError(f"{source}: search.base_variant: {exc}") from None
    for spec in search.params.values():
        key = f"{source}: search.params.{spec.path}"
        try:
            default = default_value(study, spec)
        except (UnknownPath, RegistryError) as exc:
            if search.enqueue_defaults or spec.path.startswith(f"{REGULARIZERS_ROOT}."):
                raise StudyError(f"{key}: {exc}") from None
            default = None  # a new key under a free-form mapping (data.params, ...): the probe below decides
        if search.enqueue_defaults and not spec.contains(default):
            raise StudyError(f"{key}: the base value {default!r} lies outside the searched range "
                             f"({_range(spec)}); widen the range or set search.enqueue_defaults: false")
        probe = default if spec.contains(default) else (spec.choices[0] if spec.choices else spec.low)
        if spec.type == "int":
            probe = int(probe)
        try:
            trial_study(study, {spec.path: probe}, 0)
        except TrialConfigError as exc:
            raise StudyError(f"{key}: {str(exc).split(': ', 1)[1]}") from None
    # an alias (gfid, rfid, kid) is stored under the column it stands for: fd_effnet_lite0 is never labelled gfid
    names = aliases(study)
    objectives = [o.model_copy(update={"metric": names.get(o.metric, o.metric)}) if o.metric else o
                  for o in search.objectives]
    return search.model_copy(update={"objectives": objectives})


def _range(spec: ParamSpec) -> str:
    return f"choices {spec.choices}" if spec.type == "categorical" else f"[{spec.low:g}, {spec.high:g}]"
