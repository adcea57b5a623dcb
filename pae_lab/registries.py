"""Every registry a study can name, in one place for `pae-lab registry`."""
from __future__ import annotations

from pae_lab.registry import Registry


def all_registries() -> dict[str, Registry]:
    from analysis.panel import METRICS
    from pae_lab.data import DATASETS
    from pae_lab.generation.samplers import SAMPLERS
    from pae_lab.launch import LAUNCHERS
    from pae_lab.models.external import ADAPTERS
    from pae_lab.tokenizer_configs import ARCHITECTURES
    from pae_lab.losses.perceptual import PERCEPTUAL
    from pae_lab.losses.regularizers import REGULARIZERS
    from pae_lab.priors import PRIORS
    from pae_lab.variants import VARIANTS

    return {"architectures": ARCHITECTURES, "adapters": ADAPTERS, "datasets": DATASETS, "priors": PRIORS, "perceptual": PERCEPTUAL, "regularizers": REGULARIZERS,
            "variants": VARIANTS, "samplers": SAMPLERS, "launchers": LAUNCHERS, "metrics": METRICS}
