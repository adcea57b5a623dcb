"""The `search:` block of a study: which values `pae-lab tune` searches, toward what, and how.

    search:
      base_variant: pae                 # trials start from this variant's regularizers
      params:                           # by config path; a list of {path: ..., ...} works too
        regularizers.ssr.weight: {type: log_float, low: 0.02, high: 2.0}
        regularizers.mcr.medium_deg: {type: int, low: 20, high: 60, step: 5}
        training.lr: {type: log_float, low: 1.0e-4, high: 3.0e-3}
      objectives:
        - {metric: gfid, direction: minimize}                     # alias of the study's FD column
        - {name: proxy, terms: {lpc: 1.0, gsq: -1.0}, direction: minimize}
      constraints:                      # trials outside are infeasible: never best, steered away from
        - {metric: psnr, min: 18.0}
      n_trials: 8                       # trials the study holds in total (a rerun continues up to it)
      parallel: 2                       # trials asked and launched per batch
      sampler: {name: tpe, seed: 0, params: {n_startup_trials: 3}}
      pruner: {name: median, source: loss/l1}
      storage: null                     # <study dir>/optuna.journal; or sqlite:///..., postgresql://...
      enqueue_defaults: true            # trial 0 = the base variant's own (the paper's) values

Paths `regularizers.<name>.<param>` change the base variant's entry (`weight`, or a constructor
parameter); any other path is a key of the study config (`training.lr`, `refine.l_gram`, ...),
set on a copy of the study for that trial. Cross-checks that need the whole study (the regularizer
exists, the key exists, the default lies in the range) are in `pae_lab.tuning.apply.check_search`.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pae_lab.catalog import OPTUNA_SAMPLERS, PRUNERS

# Top-level study keys that say how a study is organised, not what it trains: never searched.
NOT_SEARCHABLE = ("name", "description", "output_dir", "seeds", "device", "plugins", "variants", "launcher",
                  "tracking", "search")
ALIASES_DOC = "gfid, kid and rfid stand for the study's generation FD, generation KD and reconstruction FD columns"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ParamSpec(_Strict):
    """One searched value: its config path, distribution and name in Optuna."""

    path: str = Field(..., description="Config path: regularizers.<regularizer>.<param> or a study key like training.lr.")
    type: Literal["float", "log_float", "int", "categorical"] = Field(
        "float", description="float: uniform in [low, high]; log_float: log-uniform (low > 0); int; categorical: one of choices.")
    low: float | None = Field(None, description="Lower bound (float, log_float, int).")
    high: float | None = Field(None, description="Upper bound, inclusive.")
    step: float | None = Field(None, gt=0, description="Grid step (float, int); not with log_float.")
    choices: list[Any] | None = Field(None, description="The values of a categorical parameter (numbers, strings, booleans).")
    name: str | None = Field(None, description="Name in Optuna, trials.csv (params_<name>) and the dashboard; "
                             "default: the path without 'regularizers.'.")

    @field_validator("path")
    @classmethod
    def _searchable(cls, path: str) -> str:
        parts = path.split(".")
        if len(parts) < 2 or not all(parts):
            raise ValueError(f"{path!r} is not a config path; write e.g. regularizers.ssr.weight or training.lr")
        if parts[0] in NOT_SEARCHABLE:
            raise ValueError(f"{path!r}: {parts[0]!r} organises the study and cannot be searched; search "
                             "regularizers.<name>.<param> or keys under data, prior, refine, tokenizer, training, "
                             "metrics, generator or evaluation")
        if parts[0] == "regularizers" and len(parts) != 3:
            raise ValueError(f"{path!r}: a regularizer path is regularizers.<regularizer>.<param>, e.g. regularizers.ssr.weight")
        return path

    @model_validator(mode="after")
    def _consistent(self) -> "ParamSpec":
        where = f"parameter {self.path!r} ({self.type})"
        if self.type == "categorical":
            if not self.choices:
                raise ValueError(f"{where} needs a non-empty `choices` list")
            if self.low is not None or self.high is not None or self.step is not None:
                raise ValueError(f"{where} takes `choices`, not low/high/step")
            bad = [c for c in self.choices if not isinstance(c, (bool, int, float, str)) and c is not None]
            if bad:
                raise ValueError(f"{where}: choices must be numbers, strings, booleans or null, got {bad[0]!r}")
            return self
        if self.choices is not None:
            raise ValueError(f"{where} takes low/high, not `choices` (use type: categorical)")
        if self.low is None or self.high is None:
            raise ValueError(f"{where} needs both `low` and `high`")
        if not self.low < self.high:
            raise ValueError(f"{where}: low ({self.low:g}) must be below high ({self.high:g})")
        if self.type == "log_float" and (self.low <= 0 or self.step is not None):
            raise ValueError(f"{where}: a log scale needs low > 0 and no step (got low={self.low:g}, step={self.step})")
        if self.type == "int" and not all(float(v).is_integer() for v in (self.low, self.high, self.step or 1)):
            raise ValueError(f"{where}: low, high and step must be whole numbers (got {self.low:g}, {self.high:g}, {self.step})")
        return self

    @property
    def label(self) -> str:
        return self.name or self.path.removeprefix("regularizers.")

    def contains(self, value: Any) -> bool:
        """Whether `value` can be a trial of this parameter (an enqueued default must be)."""
        if self.type == "categorical":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type == "int" and not float(value).is_integer():
            return False
        return self.low <= value <= self.high

    def suggest(self, trial) -> Any:
        """Ask an Optuna trial for this parameter's value (the stored value when it already has one)."""
        return _SUGGEST[self.type](trial, self)


_SUGGEST = {
    "float": lambda t, p: t.suggest_float(p.label, p.low, p.high, step=p.step),
    "log_float": lambda t, p: t.suggest_float(p.label, p.low, p.high, log=True),
    "int": lambda t, p: t.suggest_int(p.label, int(p.low), int(p.high), step=int(p.step or 1)),
    "categorical": lambda t, p: t.suggest_categorical(p.label, p.choices),
}


class ObjectiveSpec(_Strict):
    """One objective: a column of the trial's results (mean over seeds) or a weighted sum of columns."""

    metric: str | None = Field(None, description=f"A results.csv column (psnr, lpc, ssc, gsq, rfd_effnet_lite0, "
                               f"fd_effnet_lite0, train_loss, ...); {ALIASES_DOC}.")
    terms: dict[str, float] | None = Field(None, description="A composite proxy: sum of weight x column (aliases too); "
                                           "give higher-is-better metrics a negative weight when minimising.")
    name: str | None = Field(None, description="Label in best.json, MLflow and the report; default: the metric, or 'proxy'.")
    direction: Literal["minimize", "maximize"] = Field("minimize", description="Optuna's direction for this objective.")

    @model_validator(mode="after")
    def _one_kind(self) -> "ObjectiveSpec":
        if (self.metric is None) == (self.terms is None):
            raise ValueError("an objective has either `metric` (one column) or `terms` (a weighted sum), not both or neither")
        if self.terms is not None and not self.terms:
            raise ValueError("`terms` of a composite objective is empty; give at least one {metric: weight}")
        return self

    @property
    def label(self) -> str:
        return self.name or self.metric or "proxy"

    @property
    def weights(self) -> dict[str, float]:
        """The objective as a weighted sum: {column or alias: weight}."""
        return dict(self.terms) if self.terms is not None else {self.metric: 1.0}


class ConstraintSpec(_Strict):
    """A bound on a column of the trial's results (mean over seeds), through Optuna's `constraints_func`:
    e.g. the lowest gFD among trials that still reconstruct at PSNR >= x."""

    metric: str = Field(..., description=f"A results.csv column, as for an objective; {ALIASES_DOC}.")
    min: float | None = Field(None, description="Feasible when the value is >= min.")
    max: float | None = Field(None, description="Feasible when the value is <= max.")

    @model_validator(mode="after")
    def _bounded(self) -> "ConstraintSpec":
        if self.min is None and self.max is None:
            raise ValueError(f"constraint on {self.metric!r} has neither `min` nor `max`")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"constraint on {self.metric!r}: min {self.min} > max {self.max}")
        return self

    @property
    def label(self) -> str:
        return f"{self.metric}>={self.min:g}" if self.max is None else (
            f"{self.metric}<={self.max:g}" if self.min is None else f"{self.min:g}<={self.metric}<={self.max:g}")

    def violation(self, value: float) -> float:
        """Optuna's convention: <= 0 is feasible; the amount by which the value misses a bound."""
        misses = [self.min - value if self.min is not None else -float("inf"),
                  value - self.max if self.max is not None else -float("inf")]
        return max(misses)


def registered_name(registry, name: str) -> str:
    """`name` if `registry` holds (or declares) it; else a ValueError, which pydantic reports with its key path."""
    if name not in registry:
        raise ValueError(f"unknown {registry.kind} {name!r}; registered: {', '.join(registry.names())}")
    return name


class SamplerSpec(_Strict):
    name: str = Field("tpe", description="Optuna sampler registry entry (`pae-lab registry tuning_samplers`): tpe, random, nsga2 or a plugin's.")
    seed: int | None = Field(0, description="Sampler seed; a resumed search adds the number of stored trials to it, "
                             "so it does not replay the draws of the first session.")
    params: dict[str, Any] = Field(default_factory=dict, description="Constructor arguments, e.g. n_startup_trials, "
                                   "constant_liar (tpe), population_size (nsga2).")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return registered_name(OPTUNA_SAMPLERS, name)


class PrunerSpec(_Strict):
    name: str = Field("none", description="Pruner registry entry (`pae-lab registry pruners`): none, median, hyperband or a plugin's.")
    source: str = Field("loss/total", description="Intermediate value: a tokenizer metric key (loss/total, loss/l1, "
                        "loss/ssr, ...), '<stage>/<key>' for generator/generation metrics, or 'gfid' (gFID at the "
                        "generator checkpoints, known only once the generator has finished training).")
    interval_s: float = Field(5.0, gt=0, description="Seconds between reads of the running trials' metrics.")
    params: dict[str, Any] = Field(default_factory=dict, description="Constructor arguments, e.g. n_startup_trials, "
                                   "n_warmup_steps (median), min_resource, reduction_factor (hyperband).")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return registered_name(PRUNERS, name)


class SearchConfig(_Strict):
    """The `search:` block read by `pae-lab tune` (ignored by `pae-lab run`)."""

    params: dict[str, ParamSpec] = Field(..., min_length=1, description="Searched values by config path "
                                         "(a mapping path -> spec, or a list of specs with `path`).")
    base_variant: str = Field("pae", description="Variant every trial starts from: a registered name or the name "
                              "of an inline variant in `variants:`.")
    objectives: list[ObjectiveSpec] = Field(default_factory=lambda: [ObjectiveSpec(metric="gfid")], min_length=1,
                                            description="One objective, or several for a Pareto front.")
    constraints: list[ConstraintSpec] = Field(default_factory=list, description="Bounds a trial must meet to count "
                                              "(Optuna's constraints_func; tpe and nsga2 use them): the best trials are "
                                              "the feasible ones. trials.csv has each trial's `violation_<label>`.")
    n_trials: int = Field(20, ge=1, description="Trials the study holds in the end (every state counts); "
                          "`pae-lab tune --trials N` raises it to continue a finished search.")
    parallel: int = Field(1, ge=1, description="Trials asked per batch; the launcher runs the batch "
                          "(launcher.max_parallel of them at once for local).")
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    storage: str | None = Field(None, description="Optuna storage: a journal file (default <study dir>/optuna.journal; "
                                "relative to the study folder) or an RDB URL (sqlite:///..., postgresql://...).")
    study_name: str | None = Field(None, description="Optuna study name; default: the study's name.")
    enqueue_defaults: bool = Field(True, description="Trial 0 uses the base variant's own values (the paper's "
                                   "weights), so the search starts from them.")

    @field_validator("params", mode="before")
    @classmethod
    def _by_path(cls, params: Any) -> Any:
        """A list of specs or a mapping path -> spec, both -> {path: spec with its path}."""
        if isinstance(params, list):
            out: dict[str, Any] = {}
            for i, spec in enumerate(params):
                if not isinstance(spec, dict) or not spec.get("path"):
                    raise ValueError(f"params[{i}] needs a `path`, e.g. {{path: regularizers.ssr.weight, type: float, "
                                     f"low: 0.05, high: 1.0}}; got {spec!r}")
                if spec["path"] in out:
                    raise ValueError(f"params[{i}]: path {spec['path']!r} is listed twice")
                out[spec["path"]] = spec
            return out
        if isinstance(params, dict):
            return {path: ({"path": path, **spec} if isinstance(spec, dict) and "path" not in spec else spec)
                    for path, spec in params.items()}
        return params

    @model_validator(mode="after")
    def _consistent(self) -> "SearchConfig":
        for key, spec in self.params.items():
            if spec.path != key:
                raise ValueError(f"params.{key}: its `path` says {spec.path!r}; drop one of the two")
        labels = [p.label for p in self.params.values()]
        dupes = sorted({n for n in labels if labels.count(n) > 1})
        if dupes:
            raise ValueError(f"two parameters share the name {dupes[0]!r}; give one a distinct `name`")
        names = [o.label for o in self.objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"objectives need distinct names, got {names}; set `name:` on the repeated one")
        if self.pruner.name != "none" and len(self.objectives) > 1:
            raise ValueError(f"pruner {self.pruner.name!r} needs a single objective (Optuna cannot prune "
                             f"multi-objective trials); set pruner.name: none or keep one objective")
        return self

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    @property
    def objective_names(self) -> list[str]:
        return [o.label for o in self.objectives]

    def by_label(self) -> dict[str, ParamSpec]:
        return {p.label: p for p in self.params.values()}
