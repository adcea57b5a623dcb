"""`pae-lab teacher`: is the teacher stronger than what the tokenizer learns alone? Minutes, before a study's hour.

SSR and SCR pull the latent toward the refined target. If that target scores below a plain
autoencoder's latent on SSC or GSQ, the regularizers can only pull those metrics down. The check
runs the study's shared stages in its own folder (content-addressed: the study reuses them), trains
the study's tokenizer without regularizers for a few steps in a scratch study beside it, and scores
that latent exactly as the teacher stage scores its sources (pae_lab.stages.reference.ceiling).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from pae_lab.config.schema import StudyConfig
from pae_lab.fsutil import read_json
from pae_lab.plan import layout
from pae_lab.plan.graph import STAGES, ordered
from pae_lab.plan.layout import StudyLayout
from pae_lab.plan.progress import ProgressWriter
from pae_lab.plan.runs import expand, shared_plan

BASELINE, SPREAD = "baseline_latent", "baseline_latent_sd"  # mean over the brief baselines' seeds, and its sd
# metric (SSC chance-corrected) -> the regularizer that pulls the latent toward the teacher on it
PULLED_BY = {"ssc_ami": "SSR", "gsq": "SCR"}
SHOWN = {"ssc_ami": "SSC (AMI)", "gsq": "GSQ"}


def brief_baseline(study: StudyConfig, steps: int, seeds: int) -> StudyConfig:
    """The study's tokenizer, unregularized, `steps` steps, seeds 0..seeds-1, in the scratch folder."""
    raw = study.model_dump(mode="json")
    return StudyConfig.model_validate({**raw, "variants": ["baseline"], "seeds": list(range(seeds)),
                                       "training": {**raw["training"], "steps": steps},
                                       "output_dir": str(StudyLayout(study.study_dir()).teacher_check)})


def teacher_check(study: StudyConfig, steps: int, seeds: int = 3,
                  log: Callable[[str], None] = print) -> dict[str, dict[str, float]]:
    """{row: {metric: value}}: the teacher's ceiling rows, the briefly trained baseline latents' mean
    over seeds (BASELINE) and its standard deviation (SPREAD)."""
    import numpy as np

    from pae_lab.stages.context import StageContext
    from pae_lab.stages.execute import run_stage
    from pae_lab.stages.reference import ceiling, stage_array
    from pae_lab.stages.training import resolve_device
    from pae_lab.tracking.store import RunLogger

    files = StudyLayout(study.study_dir())
    hashes, folders = shared_plan(study)
    quiet = RunLogger(files.shared_root, None, None, mirror=False)
    for stage in ordered("shared"):
        done = run_stage(stage, study, folders, hashes[stage.name], logger=quiet, progress=ProgressWriter(files.shared_root))
        log(f"shared stage {stage.name}: {'cached' if done.skipped else f'done in {done.seconds:.1f}s'}")
    rows = read_json(folders["teacher"] / layout.TEACHER_CEILING)["rows"]

    brief = brief_baseline(study, steps, seeds)
    scratch = StudyLayout(brief.study_dir())
    scratch.root.mkdir(parents=True, exist_ok=True)
    if not scratch.shared_root.exists():  # the same shared stages (same hashes): the study's own folders
        scratch.shared_root.symlink_to(files.shared_root.resolve(), target_is_directory=True)
    tokenizer, latents = STAGES.get("tokenizer"), []
    for run in expand(brief):
        done = run_stage(tokenizer, run.study_config(), {n: run.stage_dir(n) for n in run.stage_paths},
                         run.hashes["tokenizer"], logger=RunLogger(run.run_dir, None, None, mirror=False),
                         progress=ProgressWriter(run.run_dir), spec=run)
        log(f"baseline tokenizer seed {run.seed}, {steps} steps: {'cached' if done.skipped else f'done in {done.seconds:.1f}s'}")
        ctx = StageContext("teacher_check", brief, {"data": Path(folders["data"]), "tokenizer": run.stage_dir("tokenizer")},
                           scratch, resolve_device(study.device))
        latents.append(ceiling(ctx, {BASELINE: stage_array(ctx, "tokenizer", layout.latents)})[BASELINE])
    values = {k: np.array([row[k] for row in latents]) for k in latents[0]}
    return rows | {BASELINE: {k: float(v.mean()) for k, v in values.items()},
                   SPREAD: {k: float(v.std(ddof=1)) if len(v) > 1 else float("nan") for k, v in values.items()}}


def verdicts(rows: dict[str, dict[str, float]], steps: int) -> list[str]:
    """One line per pulled metric: is the refined teacher more than 2 seed sds above or below the
    baseline latent (the margin the study's own reading asks for); and what colour alone gives."""
    base, spread, refined, pixels = rows[BASELINE], rows[SPREAD], rows["refined"], rows["pooled_pixels"]
    lines = []
    for metric, regularizer in PULLED_BY.items():
        if metric not in base:
            continue
        name, margin, band = SHOWN[metric], refined[metric] - base[metric], 2 * spread[metric]
        said = (f"{name}: refined teacher {refined[metric]:.3f} vs baseline latent {base[metric]:.3f} "
                + (f"(2 sd over seeds {band:.3f}) -> " if band == band else "(one seed: no spread) -> "))
        band = band if band == band else 0.0
        if margin <= -band:
            lines.append(said + f"the teacher is WEAKER: {regularizer} can only pull {name} down")
        elif margin > band:
            lines.append(said + f"the teacher is stronger: {regularizer} has room to raise {name}")
        else:
            lines.append(said + f"within 2 sd of the latent: too close to call; {regularizer} has little to pull toward")
    if "ssc_ami" in base and pixels["ssc_ami"] > base["ssc_ami"]:
        lines.append(f"SSC (AMI): pooled pixels {pixels['ssc_ami']:.3f} beat the latent: colour alone gives the segments away")
    lines.append(f"{steps} tokenizer steps, a seed's spread from a few seeds: a screen before the study, not its reading")
    return lines
