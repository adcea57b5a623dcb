"""Which FD/KD a study computes and what its columns are called, without importing torch.

The status table, the stage hashes and the aggregation all need the resolved extractor ("auto"
becomes Inception once its weights appear in the torch hub cache) long before any image is scored.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from pae_lab.registry import Registry

EFFNET_FIDELITY_NAME = "effnet-lite0"  # the embedded extractor's name in torch-fidelity's registry


def torch_hub_dir() -> str:
    """torch.hub.get_dir() without importing torch: $TORCH_HOME/hub, else ~/.cache/torch/hub (once
    torch is loaded, torch's own answer, which also honours torch.hub.set_dir)."""
    if "torch" in sys.modules:
        return sys.modules["torch"].hub.get_dir()
    home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return os.path.join(os.path.expanduser(home), "hub")


@dataclass(frozen=True)
class ExtractorSpec:
    """How one feature network is run through torch-fidelity and how its metrics are named."""

    fidelity_name: str  # name in torch-fidelity's extractor registry
    fid_key: str
    kid_key: str
    feature_dim: int
    needs_weights: bool = False  # True: a local weights file is mandatory (we never download)


FIDELITY_EXTRACTORS: Registry[ExtractorSpec] = Registry("fidelity extractor")
FIDELITY_EXTRACTORS.register("effnet-lite0", ExtractorSpec(EFFNET_FIDELITY_NAME, "fd_effnet_lite0",
                                                           "kd_effnet_lite0", 1280))
FIDELITY_EXTRACTORS.register("inception", ExtractorSpec("inception-v3-compat", "fid", "kid", 2048,
                                                        needs_weights=True))


INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"  # torch-fidelity's Inception weights


def cached_inception_weights() -> str | None:
    """torch-fidelity's Inception weights if they already sit in the torch hub cache (never fetched)."""
    path = os.path.join(torch_hub_dir(), "checkpoints", INCEPTION_FILE)
    return path if os.path.isfile(path) else None


def inception_weights_or_cached(inception_weights: str | os.PathLike | None) -> str | os.PathLike | None:
    return inception_weights if inception_weights is not None else cached_inception_weights()


def resolve_extractor(extractor: str = "auto", inception_weights: str | os.PathLike | None = None) -> str:
    """"auto" -> "inception" when a weights file is given or in the torch cache, else "effnet-lite0"."""
    if extractor == "auto":
        return "inception" if inception_weights_or_cached(inception_weights) is not None else "effnet-lite0"
    FIDELITY_EXTRACTORS.get(extractor)  # fails naming the registered extractors
    return extractor


def metric_names(extractor: str = "auto", inception_weights: str | os.PathLike | None = None) -> tuple[str, str]:
    """(fid_key, kid_key) that compute_fidelity will use, for naming columns without computing."""
    spec = FIDELITY_EXTRACTORS.get(resolve_extractor(extractor, inception_weights))
    return spec.fid_key, spec.kid_key
