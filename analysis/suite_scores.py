"""The scores papers quote beside FD / KD: IS (from the extractor's class logits), sFID (Inception's
spatial features, ADM's) and FD-DINOv2 (EDM2's, DINOv2 ViT-L/14). Each is computed only where its
network's weights are present, is named after its extractor (FidelityColumns), and is otherwise
skipped with one line that says what to name. Precision / recall stay analysis.knn_scores'.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from analysis.fidelity import Reference, extract_features, extract_layers, fd_against
from analysis.fidelity_names import (DINOV2, DINOV2_TIMM_MODEL, FIDELITY_EXTRACTORS, FidelityColumns, inception_weights_or_cached,
                                     resolve_extractor, shared_network_warning)
from analysis.inception_score import ADM_SPLIT_SIZE, inception_score

@dataclass(frozen=True)
class Suite:
    """Which networks score a set: the study's extractor (FD, KD, k-NN, IS; sFID with Inception) and,
    when its weights are named, DINOv2 (FD-DINOv2)."""

    extractor: str = "auto"
    inception_weights: str | os.PathLike | None = None
    dinov2_weights: str | os.PathLike | None = None
    dinov2_model: str = DINOV2_TIMM_MODEL

    def __post_init__(self) -> None:
        if DINOV2 not in self.dinov2_model.lower():  # fd_dinov2 must be a DINOv2's, whatever its size
            raise ValueError(f"dinov2_model: {self.dinov2_model!r} is no DINOv2; fd_dinov2 is FD in DINOv2 features "
                             f"(EDM2's: {DINOV2_TIMM_MODEL})")
        if self.name == DINOV2:  # it has no class logits and takes its own weights: a score beside, not the extractor
            raise ValueError(f"extractor {DINOV2!r} is scored beside the study's extractor: name its weights as "
                             f"dinov2_weights (--dinov2-weights) and pick effnet-lite0, effnet-lite0-96 or inception")

    @property
    def name(self) -> str:
        return resolve_extractor(self.extractor, inception_weights_or_cached(self.inception_weights))

    def columns(self) -> FidelityColumns:
        return FidelityColumns.of(FIDELITY_EXTRACTORS.get(self.name))

    def roles(self) -> tuple[str, ...]:
        """The main extractor's feature roles: FD's, IS's logits where it has class logits, sFID's where it has the layer."""
        spec = FIDELITY_EXTRACTORS.get(self.name)
        return ("fid", *(("isc",) if spec.logits else ()), *(("sfid",) if spec.spatial else ()))

    def skipped(self) -> list[str]:
        """One line per score of the suite that cannot be computed as the papers do, saying what would fix it."""
        lines = []
        if self.dinov2_weights is not None and self.dinov2_model != DINOV2_TIMM_MODEL:
            lines.append(f"{self.columns().dino_fd} from {self.dinov2_model}, not EDM2's {DINOV2_TIMM_MODEL}: not comparable "
                         f"with a published FD-DINOv2")
        if "sfid" not in self.roles():
            lines.append(f"sFID skipped: it needs Inception's weights (evaluation.inception_weights, --inception-weights); "
                         f"the extractor is {self.name}")
        if self.dinov2_weights is None:
            lines.append(f"{self.columns().dino_fd} skipped: no DINOv2 weights named (evaluation.dinov2_weights, "
                         f"--dinov2-weights: a local {self.dinov2_model} file)")
        return lines

    def shared_network(self, **roles: str) -> str:
        """`shared_network_warning` for FD-DINOv2 when the prior (or another role) is DINOv2 too."""
        return shared_network_warning(DINOV2, None, **roles) if self.dinov2_weights is not None else ""

    def protocol(self) -> dict[str, Any]:
        return {"is_split_size": ADM_SPLIT_SIZE,
                "is_splits": "consecutive runs of is_split_size in order, the last shorter (ADM's loop)",
                "is_logits": "the extractor's class logits (Inception: without bias, as ADM)",
                "sfid_features": "Inception Mixed_6d.branch1x1 (TF mixed_6/conv), first 7 channels x 17 x 17, channels-last",
                "dinov2_model": self.dinov2_model if self.dinov2_weights is not None else None,
                "dinov2_weights": None if self.dinov2_weights is None else os.fspath(self.dinov2_weights),
                "dinov2_preprocessing": "224 px bicubic with antialias, ImageNet mean / std, CLS token (EDM2); the 518 px "
                                        "position embedding resampled as torch.hub's DINOv2 does",
                "fd_dinov2_against": "the reference images' DINOv2 features (EDM2: the whole training set's statistics; "
                                     "a smaller reference set biases FD upwards)",
                "skipped": self.skipped()}

    def features(self, images: torch.Tensor, **kw: Any) -> dict[str, torch.Tensor]:
        """{role: features} of uint8 images: "fid", "isc" (and "sfid") from one pass of the extractor,
        "dinov2" from one of DINOv2 when its weights are named; `kw` as extract_layers (device, batch_size)."""
        found = extract_layers(images, extractor=self.name, inception_weights=self.inception_weights, roles=self.roles(), **kw)
        if self.dinov2_weights is not None:
            found["dinov2"] = extract_features(images, extractor=DINOV2, weights=self.dinov2_weights,
                                               timm_model=self.dinov2_model, **kw)
        return found


def suite_scores(generated: dict[str, torch.Tensor], real: dict[str, Reference], cols: FidelityColumns) -> dict[str, float]:
    """IS of the generated set (where its network has class logits), and sFID / FD-DINOv2 against `real`
    for the roles both sides have."""
    scores = {}
    if "isc" in generated:
        found = inception_score(generated["isc"])
        scores |= {cols.isc: found["is"], f"{cols.isc}_std": found["is_std"]}
    for role, column in (("sfid", cols.sfd), ("dinov2", cols.dino_fd)):
        if role in generated and role in real:
            scores[column] = fd_against(generated[role], real[role])
    return scores
