"""Every registry a study can name, in one place for `pae-lab registry`; lists names without importing torch."""
from __future__ import annotations

from pae_lab import catalog
from pae_lab.registry import Registry


def all_registries() -> dict[str, Registry]:
    """Section name -> registry, from the declarations in `pae_lab.catalog`."""
    return {"architectures": catalog.ARCHITECTURES, "adapters": catalog.ADAPTERS,
            "diffusers_classes": catalog.DIFFUSERS_CLASSES, "datasets": catalog.DATASETS,
            "priors": catalog.PRIORS, "perceptual": catalog.PERCEPTUAL, "regularizers": catalog.REGULARIZERS,
            "variants": catalog.VARIANTS, "samplers": catalog.SAMPLERS, "time_sampling": catalog.TIME_SAMPLING,
            "metrics": catalog.METRICS, "extractors": catalog.FIDELITY_EXTRACTORS, "stages": catalog.STAGES,
            "launchers": catalog.LAUNCHERS, "tuning_samplers": catalog.OPTUNA_SAMPLERS, "pruners": catalog.PRUNERS}
