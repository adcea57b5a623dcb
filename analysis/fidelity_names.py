"""Which FD/KD a study computes and what its columns are called, without importing torch.

The status table, the stage hashes and the aggregation all need the resolved extractor ("auto"
becomes Inception once its weights appear in the torch hub cache) long before any image is scored.
"""
from __future__ import annotations

import os
import sys
import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from analysis.registry import Registry

EFFNET_FIDELITY_NAME = "effnet-lite0"  # the embedded extractor's name in torch-fidelity's registry
EFFNET96_FIDELITY_NAME = "effnet-lite0-96"  # the same network on 96 px resizes
INCEPTION_FIDELITY_NAME = "inception-v3-compat-spatial"  # torch-fidelity's Inception, plus ADM's sFID layer
DINOV2_FIDELITY_NAME = "dinov2-timm"  # DINOv2 through timm, from a local weights file
SPATIAL_LAYER = "mixed_6_conv_2023"  # the extractor layer of ADM's sFID features (TF's mixed_6/conv, 7 x 17 x 17)
DINOV2_LAYER = "cls"  # DINOv2's final-norm CLS token
DINOV2_TIMM_MODEL = "vit_large_patch14_dinov2.lvd142m"  # EDM2's / dgm-eval's DINOv2 ViT-L/14


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
    network: str = ""  # the underlying network, to warn when a prior or perceptual loss is the same one
    spatial: str = ""  # the layer of ADM's sFID features, "" when the network has none (only Inception)
    logits: bool = False  # whether it has class logits (an Inception Score); an embedding network has none


FIDELITY_EXTRACTORS: Registry[ExtractorSpec] = Registry("fidelity extractor")
FIDELITY_EXTRACTORS.register("effnet-lite0", ExtractorSpec(EFFNET_FIDELITY_NAME, "fd_effnet_lite0",
                                                           "kd_effnet_lite0", 1280, network="effnet_lite0", logits=True))
FIDELITY_EXTRACTORS.register("effnet-lite0-96", ExtractorSpec(EFFNET96_FIDELITY_NAME, "fd_effnet_lite0_96",
                                                              "kd_effnet_lite0_96", 1280, network="effnet_lite0", logits=True))
FIDELITY_EXTRACTORS.register("inception", ExtractorSpec(INCEPTION_FIDELITY_NAME, "fid", "kid", 2048, needs_weights=True,
                                                        network="inception_v3", spatial=SPATIAL_LAYER, logits=True))
FIDELITY_EXTRACTORS.register("dinov2", ExtractorSpec(DINOV2_FIDELITY_NAME, "fd_dinov2", "kd_dinov2", 1024,
                                                     needs_weights=True, network="dinov2"))
DINOV2 = "dinov2"  # the extractor of FD-DINOv2, scored beside the study's own


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


def fidelity_feature_dim(extractor: str = "auto", inception_weights: str | os.PathLike | None = None) -> int:
    """The FD features' dimension under the resolved extractor (2048 for Inception)."""
    return FIDELITY_EXTRACTORS.get(resolve_extractor(extractor, inception_weights)).feature_dim


def metric_names(extractor: str = "auto", inception_weights: str | os.PathLike | None = None) -> tuple[str, str]:
    """(fid_key, kid_key) that compute_fidelity will use, for naming columns without computing."""
    spec = FIDELITY_EXTRACTORS.get(resolve_extractor(extractor, inception_weights))
    return spec.fid_key, spec.kid_key


VAL_LOSS = "gen_val_loss"  # the generator's flow-matching loss on held-out latents over a fixed t-grid
KNN_ROLES = ("precision", "recall", "density", "coverage")


@dataclass(frozen=True)
class FidelityColumns:
    """Every generation / reconstruction column of a study, named once from the extractor's keys.

    fd / kd:             generated vs real reference images (gFD: learnability AND decoder blur)
    lfd / lkd:           generated vs the tokenizer's own reconstructions of the reference images
                         (learnability alone: 0 when the generator reproduces what the decoder can show)
    floor_fd / floor_kd: reconstructions of held-out images vs the real reference (the decoder floor:
                         the gFD a perfect generator of this tokenizer's latents would get)
    noise_fd / noise_kd: held-out real images vs the real reference (the sampling floor at this N)
    rfd / rkd:           reconstructions vs their own originals (rFID protocol)
    frontier:            log gFD minus the unregularized baselines' frontier at the run's PSNR
                         (analysis.frontier): gFD at equal reconstruction
    precision / recall / density / coverage: generated vs real reference, k-NN in the same features
                         (fidelity and diversity apart: Kynkäänniemi et al. 2019, Naeem et al. 2020)
    lprecision / ...:    the same against the tokenizer's own reconstructions of the reference
    isc:                 Inception Score of the generated set from the extractor's class logits ("is" with
                         Inception, ADM's; "is_effnet_lite0" with EfficientNet's ImageNet head)
    sfd:                 sFID: FD of Inception's spatial mixed_6/conv features (ADM's); "" without Inception
    dino_fd:             FD-DINOv2, generated vs real reference: DINOv2 ViT-L/14 CLS features (EDM2, dgm-eval),
                         scored beside the study's extractor when its weights are named
    val_loss:            the generator's held-out flow-matching loss over a fixed t-grid
    val_loss_gauss:      the same loss of the Bayes-optimal model of a Gaussian with the training latents'
                         covariance (analysis.flow_baseline): what the covariance alone allows
    val_loss_gap:        val_loss - val_loss_gauss: what to compare across tokenizers
    val_loss_null:       val_loss with every label replaced by the null (unconditional) label
    refit_fd / refit_psnr: gFD and PSNR with a fresh decoder trained on the frozen encoder (the
                         optional decoder refit stage): what the latent allows, whatever the
                         regularizers taught the tokenizer's own decoder
    cfg_best, guided_fd / guided_kd, unguided_fd / unguided_kd: the guidance sweep's best scale, and gFD /
                         gKD at it and without guidance, at the full N (the optional guidance stage)
    """

    fd: str
    kd: str
    lfd: str
    lkd: str
    floor_fd: str
    floor_kd: str
    noise_fd: str
    noise_kd: str
    rfd: str
    rkd: str
    frontier: str
    precision: str = "precision"
    recall: str = "recall"
    density: str = "density"
    coverage: str = "coverage"
    lprecision: str = "lprecision"
    lrecall: str = "lrecall"
    ldensity: str = "ldensity"
    lcoverage: str = "lcoverage"
    isc: str = "is"
    sfd: str = ""
    dino_fd: str = "fd_dinov2"
    val_loss: str = VAL_LOSS
    val_loss_gauss: str = f"{VAL_LOSS}_gauss"
    val_loss_gap: str = f"{VAL_LOSS}_gap"
    val_loss_null: str = f"{VAL_LOSS}_null"
    refit_fd: str = "refit_fd"
    refit_psnr: str = "refit_psnr"
    cfg_best: str = "cfg_best"
    guided_fd: str = "fd_cfg"
    guided_kd: str = "kd_cfg"
    unguided_fd: str = "fd_nocfg"
    unguided_kd: str = "kd_nocfg"

    # Roles that describe the latent or a setting, not how well the generator does: better neither way.
    NO_DIRECTION: ClassVar[frozenset[str]] = frozenset({"val_loss_gauss", "cfg_best"})
    HIGHER: ClassVar[frozenset[str]] = frozenset({*KNN_ROLES, "refit_psnr", "isc"})

    @classmethod
    def from_keys(cls, fd: str, kd: str, spatial: bool = False) -> FidelityColumns:
        """Every column from the extractor's FD / KD keys (prefixes l, floor_, noise_, r, frontier_); the k-NN
        scores and IS carry the extractor's name as FD does ("precision_effnet_lite0", "is_effnet_lite0";
        Inception's plain, any other key's after it: "precision_fid_clip"); sFID ("sfid") only for an
        extractor with ADM's `spatial` layer."""
        network = fd.removeprefix("fd") if fd.startswith("fd_") else "" if fd == "fid" else f"_{fd}"
        knn = {f"{prefix}{role}": f"{prefix}{role}{network}" for prefix in ("", "l") for role in KNN_ROLES}
        return cls(fd, kd, f"l{fd}", f"l{kd}", f"floor_{fd}", f"floor_{kd}", f"noise_{fd}", f"noise_{kd}", f"r{fd}", f"r{kd}",
                   f"frontier_{fd}", **knn, isc=f"is{network}", sfd=f"s{fd}" if spatial else "",
                   dino_fd=FIDELITY_EXTRACTORS.get(DINOV2).fid_key, refit_fd=f"refit_{fd}", guided_fd=f"{fd}_cfg",
                   guided_kd=f"{kd}_cfg", unguided_fd=f"{fd}_nocfg", unguided_kd=f"{kd}_nocfg")

    @classmethod
    def of(cls, spec: ExtractorSpec) -> FidelityColumns:
        """The columns of a registered extractor."""
        return cls.from_keys(spec.fid_key, spec.kid_key, spatial=bool(spec.spatial))

    def direction(self, column: str) -> str | None:
        """Which way `column` is better: the k-NN scores higher, every distance and loss lower; none
        for a column that describes the latent rather than the generator (NO_DIRECTION)."""
        role = self.roles()[column]
        if role in self.NO_DIRECTION:
            return None
        return "higher" if role.removeprefix("l") in self.HIGHER else "lower"

    def knn(self, against: str = "real") -> dict[str, str]:
        """The k-NN score columns by role ("precision" -> "precision_effnet_lite0"), against the real
        reference or the tokenizer's own reconstructions ("own")."""
        prefix = "l" if against == "own" else ""
        return {role: getattr(self, f"{prefix}{role}") for role in KNN_ROLES}

    def set_scored(self) -> list[str]:
        """The columns analysis.set_scores writes (not the KD spreads), in its order."""
        return [self.fd, self.kd, self.lfd, self.lkd, *self.knn("real").values(), *self.knn("own").values()]

    def suite(self) -> list[str]:
        """The columns analysis.suite_scores may write (not IS's spread), those this extractor names."""
        return [c for c in (self.isc, self.sfd, self.dino_fd) if c]

    def roles(self) -> dict[str, str]:
        """Column -> its field name here ("fd_effnet_lite0" -> "fd"); a column this extractor lacks ("") is none."""
        return {getattr(self, f.name): f.name for f in dataclasses.fields(self) if getattr(self, f.name)}

    def targets(self) -> dict[str, str]:
        """Correlation-target keys a study may choose (evaluation.correlation_target) -> column."""
        return {"gfd": self.fd, "gkd": self.kd, "lfd": self.lfd, "lkd": self.lkd, "val_loss": self.val_loss_gap,
                "frontier": self.frontier}

    def meanings(self) -> dict[str, str]:
        """Column -> what the number means, for results.csv readers and the report (not the columns this
        extractor lacks)."""
        meanings = {
            self.fd: "FD(generated, real reference): learnability and decoder blur together (gFD)",
            self.kd: "KD(generated, real reference)",
            self.lfd: "FD(generated, own reconstructions of the reference): learnability alone, 0 = generator reproduces the decoder's images",
            self.lkd: "KD(generated, own reconstructions of the reference)",
            self.floor_fd: "FD(reconstructions of held-out images, real reference): decoder floor of gFD, at the held-out N "
                           "(protocol n_heldout; below num_samples its small-N bias is larger than gFD's)",
            self.floor_kd: "KD(reconstructions of held-out images, real reference)",
            self.noise_fd: "FD(held-out real, real reference): sampling floor, at the held-out N (protocol n_heldout; "
                           "results.csv's n_images)",
            self.noise_kd: "KD(held-out real, real reference)",
            self.rfd: "FD(reconstructions, their originals): rFID protocol",
            self.rkd: "KD(reconstructions, their originals)",
            self.frontier: "log gFD minus the unregularized baselines' log-gFD-vs-PSNR line at this run's PSNR: gFD at "
                           "equal reconstruction, negative = generates better than a baseline that reconstructs as well",
            self.precision: "precision(generated, real reference): share of samples inside the reals' k-NN balls (fidelity)",
            self.recall: "recall(generated, real reference): share of reals inside the samples' k-NN balls (diversity)",
            self.density: "density(generated, real reference): mean count of reals' k-NN balls around a sample / k (fidelity)",
            self.coverage: "coverage(generated, real reference): share of reals whose k-NN ball holds a sample (diversity)",
            self.lprecision: "precision(generated, own reconstructions of the reference)",
            self.lrecall: "recall(generated, own reconstructions of the reference)",
            self.ldensity: "density(generated, own reconstructions of the reference)",
            self.lcoverage: "coverage(generated, own reconstructions of the reference)",
            self.isc: "Inception Score of the generated set: exp E KL(p(y|x) || p(y)) from the extractor's class logits, "
                      "ADM's splits of 5000 (higher: confident and varied classes; no reference set)",
            self.sfd: "sFID(generated, real reference): FD of Inception's mixed_6/conv features, first 7 channels x 17 x 17 "
                      "(ADM's): spatial structure that the pooled features average away",
            self.dino_fd: "FD-DINOv2(generated, real reference): FD of DINOv2 ViT-L/14 CLS features at 224 px (EDM2, dgm-eval); "
                          "favours latents aligned with DINOv2 when the prior is DINOv2",
            self.val_loss: "generator flow-matching loss on held-out latents, fixed t-grid and noise (LightningDiT-style)",
            self.val_loss_gauss: "the same loss under the Bayes-optimal model of a Gaussian with the training latents' "
                                 "covariance (after normalisation): lower for a lower-rank latent, whatever the generator",
            self.val_loss_gap: "held-out flow loss - its Gaussian baseline: below 0, the generator uses structure beyond "
                               "the covariance; compare this across tokenizers, not the raw loss",
            self.val_loss_null: "held-out flow loss with the null (unconditional) label: what the latent alone lets the "
                                "generator predict, without the class (NaN without class dropout)",
            self.refit_fd: "FD(generated, real reference) with the samples decoded by a fresh decoder trained on the frozen "
                           "encoder (evaluation.decoder_refit): generation apart from what the regularizers did to the decoder",
            self.refit_psnr: "PSNR of that fresh decoder on the held-out images psnr reads: the information the latent keeps, apart from "
                             "what the regularizers cost the tokenizer's own decoder",
            self.cfg_best: "the guidance scale of evaluation.sampler.cfg_grid with the lowest gFD at cfg_grid_samples images "
                           "(final EMA checkpoint; below the features' dimension the choice leans to strong guidance)",
            self.guided_fd: "FD(generated, real reference) at the best guidance scale, at the full N",
            self.guided_kd: "KD(generated, real reference) at the best guidance scale, at the full N",
            self.unguided_fd: "FD(generated, real reference) without guidance (scale 1), final EMA checkpoint, full N",
            self.unguided_kd: "KD(generated, real reference) without guidance (scale 1), final EMA checkpoint, full N",
        }
        return {column: meaning for column, meaning in meanings.items() if column}


def _columns_naming(name: str) -> FidelityColumns | None:
    """The registered extractor's columns that include `name`: columns are recognised by lookup,
    never by parsing their names."""
    for extractor in FIDELITY_EXTRACTORS.names():
        spec = FIDELITY_EXTRACTORS.get(extractor)
        columns = FidelityColumns.of(spec)
        if name in columns.roles():
            return columns
    return None


def fidelity_role(name: str) -> str | None:
    """Which FidelityColumns field `name` is ("fd_effnet_lite0" -> "fd", "rfid" -> "rfd"), else None."""
    columns = _columns_naming(name)
    return None if columns is None else columns.roles()[name]


def fidelity_label(name: str) -> str:
    """A fidelity column's label in figures: its results.csv name, except the frontier distance,
    whose name alone does not say it is a log-gFD difference."""
    columns = _columns_naming(name)
    return "frontier distance (log gFD)" if columns is not None and name == columns.frontier else ""

def is_distance(name: str) -> bool:
    """Whether `name` is an FD / KD column (not the frontier's log difference, the flow loss or a
    k-NN share): a distance between image sets, compared as a ratio (on log scale) because its
    spread grows with its size."""
    role = fidelity_role(name)
    return role is not None and role.endswith(("fd", "kd"))


def fidelity_column(name: str) -> tuple[str, str | None] | None:
    """(what an FD / KD / k-NN column means, which way is better), else None."""
    columns = _columns_naming(name)
    return None if columns is None else (columns.meanings()[name], columns.direction(name))


def fidelity_columns(extractor: str = "auto", inception_weights: str | os.PathLike | None = None) -> FidelityColumns:
    """The study's column names under its resolved extractor."""
    return FidelityColumns.of(FIDELITY_EXTRACTORS.get(resolve_extractor(extractor, inception_weights)))


def shared_network_warning(extractor: str, inception_weights: str | os.PathLike | None, **roles: str) -> str:
    """A warning when the FD network is also the prior or the perceptual loss (roles: role -> network
    name, e.g. prior="effnet_lite0", or a timm name, "vit_base_patch14_dinov2.lvd142m"): FD then rewards
    latents tuned to that network's features."""
    network = FIDELITY_EXTRACTORS.get(resolve_extractor(extractor, inception_weights)).network
    same = [role for role, name in roles.items() if name and network in name.replace("-", "_")]
    if not same:
        return ""
    return (f"the FD extractor ({network}) is also the {' and the '.join(same)}: FD then rewards images that "
            f"network finds familiar; read FD beside KD, PSNR and the manifold metrics")
