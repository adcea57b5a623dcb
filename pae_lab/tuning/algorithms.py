"""Optuna samplers, pruners and storages by name, so a study names them and a plugin can add its own.

A sampler factory takes `(seed, **params)`, a pruner factory `(**params)`; both return Optuna
objects. Both registries are declared in `pae_lab.catalog` (so a study's names are checked without
importing Optuna); users register theirs the same way the built-ins do:

    from pae_lab.catalog import PRUNERS
    PRUNERS.register("patient", lambda **kw: optuna.pruners.PatientPruner(optuna.pruners.MedianPruner(), **kw))
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pae_lab.catalog import OPTUNA_SAMPLERS as SAMPLER_FACTORIES, PRUNERS  # the old names stay importable here
from pae_lab.plan.layout import StudyLayout


@SAMPLER_FACTORIES.decorator("tpe")
def tpe_sampler(seed: int | None, **params: Any):
    """Tree-structured Parzen estimator; random for the first `n_startup_trials` (default 10)."""
    import optuna

    return optuna.samplers.TPESampler(seed=seed, **params)


@SAMPLER_FACTORIES.decorator("random")
def random_sampler(seed: int | None, **params: Any):
    import optuna

    return optuna.samplers.RandomSampler(seed=seed, **params)


@SAMPLER_FACTORIES.decorator("nsga2")
def nsga2_sampler(seed: int | None, **params: Any):
    """Genetic multi-objective search (also works with one objective); `population_size` default 50."""
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed, **params)


@PRUNERS.decorator("none")
def no_pruner(**params: Any):
    import optuna

    return optuna.pruners.NopPruner(**params)


@PRUNERS.decorator("median")
def median_pruner(**params: Any):
    """Stop a trial whose intermediate value is worse than the median of earlier trials at that step."""
    import optuna

    return optuna.pruners.MedianPruner(**params)


@PRUNERS.decorator("hyperband")
def hyperband_pruner(**params: Any):
    import optuna

    return optuna.pruners.HyperbandPruner(**params)


def storage_location(storage: str | None, study_dir: Path) -> str:
    """What the driver opens and optuna-dashboard takes: an RDB URL as given, else a journal file path
    (default `<study dir>/optuna.journal`; a relative path is relative to the study folder)."""
    if storage and "://" in storage:
        return storage
    if not storage:
        return str(StudyLayout(Path(study_dir)).optuna_journal)
    path = Path(storage).expanduser()
    return str(path if path.is_absolute() else Path(study_dir) / path)


def open_storage(location: str):
    """A journal file (one machine, many processes: safe) or an RDB URL (SQLite, PostgreSQL, MySQL)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if "://" in location:
        return optuna.storages.RDBStorage(location)
    Path(location).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(location))
