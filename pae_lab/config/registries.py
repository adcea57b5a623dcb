"""Every registry a study can name, in one place for `pae-lab registry`; lists names without importing torch."""
from __future__ import annotations

from pae_lab.registry import Registry


def all_registries() -> dict[str, Registry]:
    from pae_lab.catalog import ADAPTERS, DATASETS, METRICS, PERCEPTUAL, PRIORS, REGULARIZERS, SAMPLERS, VARIANTS
    from pae_lab.execution.launchers.base import LAUNCHERS
    from pae_lab.config.tokenizers import ARCHITECTURES

    return {"architectures": ARCHITECTURES, "adapters": ADAPTERS, "datasets": DATASETS, "priors": PRIORS,
            "perceptual": PERCEPTUAL, "regularizers": REGULARIZERS,
            "variants": VARIANTS, "samplers": SAMPLERS, "launchers": LAUNCHERS, "metrics": METRICS}
