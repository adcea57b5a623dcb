"""The stage graph, declared once: what each stage runs, reads and depends on.

Everything else is derived from `STAGES`: the run order, every stage's hash (its own resolved
inputs plus the hashes of the stages it reads), its folder, the folders it may open, and the
run identity MLflow uses. A new stage is one `register_stage(Stage(...))` call, by us or by a
plugin (the registry is declared, with the built-ins' names, in `pae_lab.catalog`).

`depends` names what can change a stage's result: a dotted path into the study config (fields
marked `identity=False`, such as `training.log_every`, are left out) or a name in `RESOLVED`,
for inputs that are not plain config: the latent grid, the variant's regularizers, the seed, the
tokenizer a run trains or loads (a variant may bring its own), the resolved FD extractor and its
weights file, the scores beside FD (`suite`: DINOv2's network and weights), the contents of the files a study names. The stage
function is named as "module:function" and imported only when the stage runs, so planning, the
status table and hashing never import torch.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal

from pydantic import BaseModel

from pae_lab.architectures import ArchitectureConfig, validate_tokenizer
from pae_lab.catalog import STAGES
from pae_lab.fsutil import read_json
from pae_lab.plan import layout
from pae_lab.plan.identity import content_hash, path_digest
from pae_lab.registry import RegistryError

if TYPE_CHECKING:
    from pae_lab.config.schema import StudyConfig

Scope = Literal["shared", "run"]


@dataclass(frozen=True)
class RunKey:
    """What makes one run of a study: a variant's regularizers, its own tokenizer block if any, and a seed."""

    variant: str
    regularizers: dict[str, dict[str, Any]]
    seed: int
    tokenizer: dict[str, Any] | None = None  # replaces the study's `tokenizer:` for this run (e.g. an external model)


@dataclass(frozen=True)
class Stage:
    name: str
    fn: str  # "module:function", called as fn(ctx, out_dir) -> summary dict
    reads: tuple[str, ...] = ()
    depends: tuple[str, ...] = ()
    scope: Scope = "run"  # shared: one folder per distinct input, reused by every run on it
    doc: str = ""
    distributed: bool = False  # every process of a multi-process job runs it (data-parallel training)
    # what the stage adds to its run's row of results.csv (and `status`): "summary", every value of
    # its summary under its own name; a mapping, the summary keys it names, renamed; () nothing
    columns: Literal["summary"] | dict[str, str] | tuple[()] = ()
    # the JSON file in its folder that says how its numbers were measured, copied into study.json:
    # its `protocols` mapping (metric -> protocol), or its single `protocol` under the stage's name
    protocols: str = ""
    # the reads whose contents cannot change a run's result: (study, run) -> names among `reads`. A run
    # that learns nothing from a stage it opens keeps its hash when that stage changes.
    unhashed_reads: Callable[["StudyConfig", RunKey | None], tuple[str, ...]] | None = None

    def reads_hashed(self, study: "StudyConfig", run: RunKey | None) -> tuple[str, ...]:
        left_out = self.unhashed_reads(study, run) if self.unhashed_reads else ()
        return tuple(r for r in self.reads if r not in left_out)

    def function(self) -> Callable[..., dict[str, Any]]:
        module, _, attr = self.fn.partition(":")
        return getattr(importlib.import_module(module), attr)


def register_stage(stage: Stage) -> Stage:
    """Add a stage after the ones it reads; its hash, folder and place in the order follow."""
    missing = [r for r in stage.reads if STAGES.peek(r) is None]  # registered, not only declared
    if missing:
        raise RegistryError(f"stage {stage.name!r} reads {', '.join(missing)}, which is not registered before it")
    if stage.scope == "shared" and any(STAGES.get(r).scope == "run" for r in stage.reads):
        raise RegistryError(f"shared stage {stage.name!r} cannot read a per-run stage")
    unknown = [d for d in stage.depends if d.split(".")[0] not in RESOLVED and not _is_config_path(d)]
    if unknown:
        raise RegistryError(f"stage {stage.name!r} depends on unknown input(s) {', '.join(unknown)}")
    return STAGES.register(stage.name, stage)


def _is_config_path(path: str) -> bool:
    from pae_lab.config.schema import StudyConfig

    model: Any = StudyConfig
    for part in path.split("."):
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return False
        model = fields[part].annotation
    return True


def identity_dump(value: Any) -> Any:
    """A config as the hash sees it: every field but those marked `identity=False`, and those marked
    `identity="when_set"` while they hold their default (a new option leaves old studies' hashes alone)."""
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        return {name: identity_dump(getattr(value, name)) for name, info in fields.items()
                if _in_identity((info.json_schema_extra or {}).get("identity", True), getattr(value, name), info.default)}
    if isinstance(value, dict):
        return {k: identity_dump(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [identity_dump(v) for v in value]
    return value


def _in_identity(marker: Any, value: Any, default: Any) -> bool:
    return marker is not False and not (marker == "when_set" and value == default)


ABSENT = object()  # a resolved dependency that is not there: left out of the hash, as before it existed


def config_value(study: "StudyConfig", path: str) -> Any:
    node: Any = study
    for part in path.split("."):
        node = getattr(node, part)
    return identity_dump(node)


def _extractor(study: "StudyConfig", run: RunKey | None) -> dict[str, Any]:
    """The FD network actually used ("auto" resolved), the digest of its weights file, and KD's subset
    rule (half the smaller set since the subsets stopped being the whole set: earlier KD values rerun)."""
    from analysis.fidelity_names import inception_weights_or_cached, resolve_extractor

    ev = study.evaluation
    name = resolve_extractor(ev.extractor, ev.inception_weights)
    weights = inception_weights_or_cached(ev.inception_weights) if name == "inception" else None
    return {"name": name, "weights": path_digest(weights), "kd_subset": "half"}


def _suite(study: "StudyConfig", run: RunKey | None) -> dict[str, Any]:
    """The scores beside FD (IS, sFID with Inception, FD-DINOv2 with its weights: analysis.suite_scores):
    the DINOv2 network and the digest of its weights file, none without them."""
    ev = study.evaluation
    dinov2 = None if ev.dinov2_weights is None else {"model": ev.dinov2_model, "weights": path_digest(ev.dinov2_weights)}
    return {"scores": ("is over ADM's splits", "sfid", "fd_dinov2"), "dinov2": dinov2}


def _files(*keys: str) -> Callable[["StudyConfig", RunKey | None], dict[str, str | None]]:
    """Digests of the files or folders named by params keys (a data root, a weights file)."""

    def resolve(study: "StudyConfig", run: RunKey | None) -> dict[str, str | None]:
        out = {}
        for key in keys:
            section, _, param = key.partition(".params.")
            value = getattr(study, section).params.get(param)
            out[key] = path_digest(value) if isinstance(value, str) else None
        return out

    return resolve


def run_tokenizer(study: "StudyConfig", run: RunKey | None) -> ArchitectureConfig:
    """The tokenizer a run trains or loads: the variant's own block, else the study's."""
    return validate_tokenizer(run.tokenizer) if run is not None and run.tokenizer is not None else study.tokenizer


def _tokenizer_files(study: "StudyConfig", run: RunKey | None) -> dict[str, str | None]:
    """Digests of the local files the run's tokenizer loads (a VFM's weights, an external checkpoint)."""
    return {key: path_digest(value) for key, value, _ in run_tokenizer(study, run).local_files()}


RESOLVED: dict[str, Callable[["StudyConfig", RunKey | None], Any]] = {
    "latent_grid": lambda study, run: study.latent_grid,
    "variant": lambda study, run: run.regularizers,
    "seed": lambda study, run: run.seed,
    "extractor": _extractor,
    "suite": _suite,
    "data_files": _files("data.params.root", "data.params.masks_root"),
    "prior_files": _files("prior.params.weights"),
    "prior_parts": lambda study, run: ABSENT if not study.prior.parts else {
        name: {"prior": study.prior.part(name), "weights": path_digest(study.prior.part(name)[1].get("weights"))}
        for name in study.prior.parts},
    "refine_method": lambda study, run: ABSENT if study.refine.enabled else "exact PCA (eigh), a sign per direction",
    "run_tokenizer": lambda study, run: identity_dump(run_tokenizer(study, run)),
    "tokenizer_files": _tokenizer_files,
    "reference_files": lambda study, run: {key: path_digest(getattr(study.evaluation, key))
                                           for key in ("reference_images", "reference_stats")},
}


def result_columns(summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A run's results row from its stages' summaries, as each stage declares: whole summaries (the
    metrics) first, in run order, then the single values stages pick (a training loss)."""
    row: dict[str, Any] = {}
    stages = [s for s in ordered("run") if s.columns]
    for stage in [s for s in stages if s.columns == "summary"]:
        row.update(summaries.get(stage.name, {}))
    for stage in [s for s in stages if s.columns != "summary"]:
        found = summaries.get(stage.name, {})
        row.update({column: found.get(key, float("nan")) for key, column in stage.columns.items()})
    return row


def study_protocols(stage_dirs: Iterable[Callable[[str], Path]]) -> dict[str, Any]:
    """How every declared stage measured its numbers, from the first run (each an accessor
    stage name -> folder) that has each stage's protocol file."""
    wanted = [s for s in ordered("run") if s.protocols]
    found: dict[str, dict[str, Any]] = {}
    for stage_dir in stage_dirs:
        for stage in [s for s in wanted if s.name not in found]:
            data = read_json(stage_dir(stage.name) / stage.protocols)
            if data:
                found[stage.name] = data.get("protocols") or {stage.name: data.get("protocol", {})}
        if len(found) == len(wanted):
            break
    return {name: protocol for stage in wanted for name, protocol in found.get(stage.name, {}).items()}


def ordered(scope: Scope | None = None) -> list[Stage]:
    """Stages in run order (declaration order, readers after what they read)."""
    return [STAGES.get(n) for n in STAGES.order() if scope is None or STAGES.get(n).scope == scope]


def stage_hashes(study: "StudyConfig", run: RunKey | None = None) -> dict[str, str]:
    """The hash of every stage (shared ones only when `run` is None)."""
    hashes: dict[str, str] = {}
    for stage in ordered():
        if stage.scope == "run" and run is None:
            continue
        resolved = {dep: (RESOLVED[dep](study, run) if dep in RESOLVED else config_value(study, dep))
                    for dep in stage.depends}
        resolved = {dep: value for dep, value in resolved.items() if value is not ABSENT}
        hashes[stage.name] = content_hash(stage.name, {r: hashes[r] for r in stage.reads_hashed(study, run)}, resolved)
    return hashes


def teacher_unless_regularized(study: "StudyConfig", run: RunKey | None) -> tuple[str, ...]:
    """The tokenizer's unhashed reads: an unregularized run opens the prior and the refined targets but
    learns nothing from them, so a new teacher retrains only the runs that align to it."""
    return () if run is None or run.regularizers else ("prior", "refine")


def run_identity(hashes: dict[str, str]) -> str:
    """One hash for a whole run: changes whenever any stage of it would rerun."""
    return content_hash("run", hashes)


for _stage in (
    Stage("data", "pae_lab.stages.shared:data_stage", depends=("data", "data_files"), scope="shared",
          doc="materialise the train/val splits"),
    Stage("prior", "pae_lab.stages.shared:prior_stage", reads=("data",),
          depends=("prior.name", "prior.params", "prior_parts", "prior_files", "latent_grid", "device"), scope="shared",
          doc="frozen VFM features at the latent grid (and each regularizer's own teacher's, prior.parts)"),
    Stage("refine", "pae_lab.stages.shared:refine_stage", reads=("prior",),
          depends=("refine", "refine_method", "tokenizer.latent_channels", "device"), scope="shared", distributed=True,
          doc="refined prior targets Z_T = P(H)"),
    Stage("reference", "pae_lab.stages.reference:reference_stage", reads=("data",),
          depends=("extractor", "suite", "evaluation.num_samples", "evaluation.kid_subsets", "evaluation.sampler.seed",
                   "prior.name", "training.perceptual.name", "reference_files"), scope="shared",
          doc="FD features of the real reference (the train split's, or a named ADM file's) and held-out sets, once per study; sampling floor"),
    Stage("teacher", "pae_lab.stages.reference:teacher_stage", reads=("data", "prior", "refine"),
          depends=("metrics",), scope="shared",
          doc="the teacher's ceiling: SSC, GSQ, probes of raw prior, refined target and the network-free controls (pooled pixels, pixel patches, gradient energy, position)"),
    Stage("tokenizer", "pae_lab.stages.tokenizer:tokenizer_stage", reads=("data", "prior", "refine"),
          depends=("run_tokenizer", "tokenizer_files", "training", "variant", "seed", "device"), distributed=True,
          columns={"loss/total": "train_loss"}, unhashed_reads=teacher_unless_regularized,
          doc="train (external: load) the encoder/decoder with the variant's losses; latents and their normalisation "
              "(an unregularized run's hash leaves out prior and refine: it learns nothing from them)"),
    Stage("manifold", "pae_lab.stages.manifold:manifold_stage", reads=("data", "tokenizer", "reference"),
          depends=("metrics", "training.perceptual", "evaluation.sampler.seed", "evaluation.kid_subsets"),
          columns="summary", protocols=layout.MANIFOLD_METRICS, doc="SSC, LPC, GSQ, probes, Lipschitz, eRank, PSNR/SSIM, rFD and the decoder floor"),
    Stage("generator", "pae_lab.stages.generator:generator_stage", reads=("data", "tokenizer"),
          depends=("generator", "seed"), distributed=True,
          doc="latent flow-matching DiT; EMA weights at the eval steps"),
    Stage("generation", "pae_lab.stages.generation:generation_stage", reads=("data", "tokenizer", "generator", "reference"),
          depends=("evaluation.sampler", "evaluation.kid_subsets", "evaluation.prdc_k", "evaluation.val_loss_t",
                   "evaluation.val_loss_images", "suite"),
          columns="summary", protocols=layout.CONVERGENCE,
          doc="sample, decode; gFD/gKD, lFD/lKD (vs own reconstructions), precision/recall/density/coverage, IS, "
              "sFID (Inception), FD-DINOv2 (its weights), held-out flow loss per checkpoint"),
    Stage("controls", "pae_lab.stages.controls:controls_stage", reads=("data", "tokenizer", "generation", "reference"),
          depends=("evaluation.controls",), protocols=layout.CONTROLS,
          doc="every generation score under blur, a constant decoder and dropped modes, and its floor (baseline runs)"),
    Stage("guidance", "pae_lab.stages.guidance:guidance_stage", reads=("data", "tokenizer", "generator", "reference", "generation"),
          depends=("evaluation.sampler", "evaluation.sampler.cfg_grid", "evaluation.sampler.cfg_grid_samples",
                   "evaluation.kid_subsets"),
          columns="summary", protocols=layout.GUIDANCE,
          doc="optional: gFD at each scale of evaluation.sampler.cfg_grid (cheap N), then the best scale and no guidance at the full N"),
    Stage("refit", "pae_lab.stages.refit:refit_stage", reads=("data", "tokenizer", "generator", "reference"),
          depends=("evaluation.decoder_refit", "training", "evaluation.sampler", "extractor", "seed", "device"),
          columns="summary", protocols=layout.REFIT,
          doc="optional: a fresh decoder on the frozen encoder, same budget per variant; its PSNR and the samples' gFD"),
):
    register_stage(_stage)
