"""Every registry of pae-lab, with every built-in declared by name and module, not imported.

`pae-lab registry`, `pae-lab variants` and the name checks of a config list these without
importing torch; an entry's module (which registers it through the public call a user's plugin
uses) is imported the first time the entry is used. A new built-in is one `declare` line here plus
its registration in its own module; tests/test_layering.py checks that the two agree. The FD
extractors are the exception: the metrics library (`analysis`, which imports nothing of pae_lab's)
owns and fills that registry itself, without torch, so it is only referenced here.
"""
from __future__ import annotations

from typing import Any

import analysis.metric_info  # noqa: F401  (the built-in metrics, declared where they are defined, torch-free)
from analysis.fidelity_names import FIDELITY_EXTRACTORS  # noqa: F401  (the metrics library's, listed with the others)
from analysis.metric import METRICS  # noqa: F401  (the metrics library's, listed with the others)
from pae_lab.registry import Registry

REGULARIZERS: Registry[Any] = Registry("regularizer", base="pae_lab.losses.regularizers:Regularizer")
PERCEPTUAL: Registry[Any] = Registry("perceptual distance", base="pae_lab.losses.perceptual:PerceptualDistance")
DATASETS: Registry[Any] = Registry("dataset", returns="pae_lab.data.imageset:ImageSet")
PRIORS: Registry[Any] = Registry("prior", returns="pae_lab.priors.base:Prior")
SAMPLERS: Registry[Any] = Registry("sampler")
VARIANTS: Registry[Any] = Registry("variant")
ADAPTERS: Registry[Any] = Registry("tokenizer adapter")  # how an external tokenizer is loaded
DIFFUSERS_CLASSES: Registry[Any] = Registry("diffusers autoencoder class")  # what the `diffusers` adapter reads
ARCHITECTURES: Registry[Any] = Registry("tokenizer architecture")  # pae_lab.architectures.register_architecture
TIME_SAMPLING: Registry[Any] = Registry("time sampling")  # the flow time t of generator training
STAGES: Registry[Any] = Registry("stage")  # pae_lab.plan.graph.register_stage; runs in registration order
LAUNCHERS: Registry[Any] = Registry("launcher", base="pae_lab.execution.launchers.base:Launcher")
OPTUNA_SAMPLERS: Registry[Any] = Registry("optuna sampler")  # `search.sampler.name` of `pae-lab tune`
PRUNERS: Registry[Any] = Registry("pruner")  # `search.pruner.name`

# name, default weight (the paper's, where it has one), what it does
for _name, _weight, _summary in (
    ("ssr", 0.2, "spatial structure: the latent's token Gram matrix matches the prior's"),
    ("mcr", 0.5, "manifold continuity: latents rotated toward neighbours decode to nearby images"),
    ("scr", 1.0, "semantic consistency: latent tokens point where the prior's tokens point"),
    ("vf", 0.1, "VA-VAE's VF loss: margin alignment of projected latents to raw prior features"),
    ("se", 0.25, "scale equivariance: a downsampled latent decodes to the downsampled image"),
):
    REGULARIZERS.declare(_name, f"pae_lab.losses.{_name}", default_weight=_weight, summary=_summary)
for _name in ("l2", "effnet_lite0", "lpips"):
    PERCEPTUAL.declare(_name, "pae_lab.losses.perceptual")
for _name in ("digits", "scenes", "imagefolder"):
    DATASETS.declare(_name, f"pae_lab.data.{_name}")
PRIORS.declare("effnet_lite0", "pae_lab.priors.effnet_prior")
PRIORS.declare("timm", "pae_lab.priors.timm_prior")
PRIORS.declare("oracle", "pae_lab.priors.oracle")
for _name in ("torchscript", "state_dict", "python"):
    ADAPTERS.declare(_name, "pae_lab.models.external")
ADAPTERS.declare("diffusers", "pae_lab.models.external_diffusers")
ADAPTERS.declare("ldm_kl", "pae_lab.models.external_ldm")
for _name in ("AutoencoderKL", "AutoencoderDC", "AutoencoderRAE"):
    DIFFUSERS_CLASSES.declare(_name, "pae_lab.models.external_diffusers")
for _name in ("euler", "heun"):
    SAMPLERS.declare(_name, "pae_lab.generation.samplers")
for _name in ("uniform", "logit_normal"):
    TIME_SAMPLING.declare(_name, "pae_lab.generation.flow")
for _name in ("conv", "pae", "external"):
    ARCHITECTURES.declare(_name, "pae_lab.config.tokenizers")
for _name in ("data", "prior", "refine", "reference", "teacher", "tokenizer", "manifold", "generator", "generation", "controls",
              "guidance", "refit"):
    STAGES.declare(_name, "pae_lab.plan.graph")
for _name in ("inline", "local", "slurm"):
    LAUNCHERS.declare(_name, f"pae_lab.execution.launchers.{_name}")
for _name in ("tpe", "random", "nsga2"):
    OPTUNA_SAMPLERS.declare(_name, "pae_lab.tuning.algorithms")
for _name in ("none", "median", "hyperband"):
    PRUNERS.declare(_name, "pae_lab.tuning.algorithms")

# The paper's 2x2x2 ablation of SSR / MCR / SCR and the VA-VAE peer: name -> (regularizers, description),
# in the spec form of pae_lab.variants (an entry {} takes the regularizer's default weight).
BUILTIN_VARIANTS: dict[str, tuple[dict[str, dict[str, float]], str]] = {
    "baseline": ({}, "reconstruction only, no latent regularizer"),
    "ssr": ({"ssr": {}}, "spatial structure regularisation only"),
    "mcr": ({"mcr": {}}, "manifold continuity regularisation only"),
    "scr": ({"scr": {}}, "semantic consistency regularisation only"),
    "ssr_mcr": ({"ssr": {}, "mcr": {}}, "SSR + MCR"),
    "ssr_scr": ({"ssr": {}, "scr": {}}, "SSR + SCR"),
    "mcr_scr": ({"mcr": {}, "scr": {}}, "MCR + SCR"),
    "pae": ({"ssr": {"weight": 0.2}, "mcr": {"weight": 0.5}, "scr": {"weight": 1.0}}, "PAE: SSR + MCR + SCR, paper weights"),
    "vavae": ({"vf": {}}, "VA-VAE's VF loss (margin alignment to raw VFM features)"),
}
for _name, (_regs, _description) in BUILTIN_VARIANTS.items():
    VARIANTS.declare(_name, "pae_lab.variants", description=_description,
                     regularizers={r: {"weight": float(e.get("weight", REGULARIZERS.info(r)["default_weight"])),
                                       **{k: v for k, v in e.items() if k != "weight"}} for r, e in _regs.items()})
