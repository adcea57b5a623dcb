"""`pae-lab teacher`: is the teacher stronger than what the tokenizer learns alone? Minutes, before a study's hour.

SSR and SCR pull the latent toward the refined target. If that target scores below a plain
autoencoder's latent on SSC or GSQ, the regularizers can only pull those metrics down. The check
runs the shared stages the tokenizer reads, in the study's own folder (content-addressed: the study
reuses them), trains the study's unregularized baseline (its tokenizer, `training.steps` unless
told otherwise) at a few seeds in a scratch study beside the runs, and scores the raw prior, the
refined target, the network-free controls and each seed's latent in one call of the teacher stage's reading
(pae_lab.stages.reference.ceiling): same images, settings and metric code for every row.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

from pae_lab.config.schema import StudyConfig
from pae_lab.plan import layout
from pae_lab.plan.graph import STAGES, ordered
from pae_lab.plan.layout import StudyLayout
from pae_lab.plan.progress import ProgressWriter
from pae_lab.plan.runs import expand, resolved_variants, shared_plan

BASELINE, SPREAD = "baseline_latent", "baseline_latent_sd"  # mean over the baseline's seeds, and its sd
# metric (SSC chance-corrected) -> the regularizer that pulls the latent toward the teacher on it
PULLED_BY = {"ssc_ami": "ssr", "gsq": "scr"}
SHOWN = {"ssc_ami": "SSC (AMI)", "gsq": "GSQ"}
IMAGE_Z = 1.96  # a row's score +- IMAGE_Z standard errors over the images: its 95% interval


def baseline_entry(study: StudyConfig) -> dict | str:
    """The study's own unregularized variant (with its tokenizer block, if it brings one), else `baseline`."""
    unregularized = {v["name"] for v in resolved_variants(study) if not v["regularizers"]}
    for entry in study.variants:
        name = entry if isinstance(entry, str) else entry.get("name")
        if name in unregularized and (isinstance(entry, str) or "tokenizer" not in entry):
            return entry
    return next((e for e in study.variants if (e if isinstance(e, str) else e.get("name")) in unregularized), "baseline")


def brief_baseline(study: StudyConfig, steps: int, seeds: int) -> StudyConfig:
    """The study's unregularized baseline at `steps` steps and seeds 0..seeds-1, in the scratch folder."""
    raw = study.model_dump(mode="json")
    return StudyConfig.model_validate({**raw, "variants": [baseline_entry(study)], "seeds": list(range(seeds)),
                                       "training": {**raw["training"], "steps": steps},
                                       "output_dir": str(StudyLayout(study.study_dir()).teacher_check)})


def needed_shared(names: tuple[str, ...]) -> set[str]:
    """The shared stages these stages read, directly or through others."""
    found: set[str] = set()
    todo = list(names)
    while todo:
        for read in STAGES.get(todo.pop()).reads:
            if read not in found:
                found.add(read)
                todo.append(read)
    return found


def link_shared(scratch: StudyLayout, study: StudyLayout) -> None:
    """The scratch study's shared/ is the study's (a relative link: it survives moving the study folder)."""
    target = os.path.relpath(study.shared_root, scratch.root)
    if scratch.shared_root.is_symlink() and os.readlink(scratch.shared_root) == target:
        return
    if scratch.shared_root.is_symlink():
        scratch.shared_root.unlink()
    scratch.shared_root.symlink_to(target, target_is_directory=True)


def refiner_spread(study: StudyConfig, refiner_seeds: int, own: dict[str, dict[str, float]],
                   log: Callable[[str], None]) -> dict[str, dict[str, list[float]]]:
    """{refined row: {metric: values}} over refiner seeds refine.seed (the study's own rows, `own`), +1, ...:
    how much the teacher itself moves with the one seed its refiner drew. The PCA path has no seed."""
    from pae_lab.stages.context import StageContext
    from pae_lab.stages.execute import run_stage
    from pae_lab.stages.reference import ceiling, teacher_sources
    from pae_lab.stages.training import resolve_device
    from pae_lab.tracking.store import RunLogger

    files = StudyLayout(study.study_dir())
    values = {name: {metric: [value] for metric, value in row.items()} for name, row in own.items() if name.startswith("refined")}
    for seed in range(study.refine.seed + 1, study.refine.seed + (refiner_seeds if study.refine.enabled else 1)):
        other = study.model_copy(update={"refine": study.refine.model_copy(update={"seed": seed})})
        hashes, folders = shared_plan(other)
        done = run_stage(STAGES.get("refine"), other, folders, hashes["refine"], logger=RunLogger(files.shared_root, None, None, mirror=False))
        log(f"refiner seed {seed}: {'cached' if done.skipped else f'done in {done.seconds:.1f}s'}")
        ctx = StageContext("teacher_check", other, {n: Path(folders[n]) for n in ("data", "prior", "refine")},
                           files, resolve_device(study.device))
        sources = {name: read for name, read in teacher_sources(ctx).items() if name.startswith("refined")}
        for name, row in ceiling(ctx, sources).items():
            for metric, value in row.items():
                values[name][metric].append(value)
    return values


def teacher_check(study: StudyConfig, steps: int | None = None, seeds: int = 3, refiner_seeds: int = 3,
                  log: Callable[[str], None] = print) -> tuple[dict[str, dict[str, float]], dict[str, object]]:
    """({row: {metric: value}}, how it was measured): the teacher's ceiling rows, the baseline latents'
    mean over seeds (BASELINE) and its standard deviation (SPREAD); `how["refiner"]` holds the refined
    rows' values over `refiner_seeds` refiner seeds (refiner_spread), `how["items"]` the per-image scores
    where a metric keeps them ({row: {metric: array}}; BASELINE's the mean over seeds), for paired comparisons."""
    import numpy as np

    from analysis.teacher import flat_rows, item_rows
    from pae_lab.architectures import architecture
    from pae_lab.stages.context import StageContext
    from pae_lab.stages.execute import run_stage
    from pae_lab.stages.reference import ceiling_results, stage_array, teacher_sources
    from pae_lab.stages.training import resolve_device
    from pae_lab.tracking.store import RunLogger

    files = StudyLayout(study.study_dir())
    hashes, folders = shared_plan(study)
    needed = needed_shared(("tokenizer",))
    shared_log = RunLogger(files.shared_root, None, None)  # the refiner's curve kept for the study (and `sync`)
    for stage in (s for s in ordered("shared") if s.name in needed):
        done = run_stage(stage, study, folders, hashes[stage.name], logger=shared_log, progress=ProgressWriter(files.shared_root))
        log(f"shared stage {stage.name}: {'cached' if done.skipped else f'done in {done.seconds:.1f}s'}")

    steps = study.training.steps if steps is None else steps
    (first,) = expand(brief_baseline(study, steps, 1))
    trained = architecture(first.study_config().tokenizer).trainable
    brief = brief_baseline(study, steps, seeds if trained else 1)  # a pretrained tokenizer has no seeds
    scratch = StudyLayout(brief.study_dir())
    scratch.root.mkdir(parents=True, exist_ok=True)
    link_shared(scratch, files)
    tokenizer, latents = STAGES.get("tokenizer"), {}
    for run in expand(brief):
        done = run_stage(tokenizer, run.study_config(), {n: run.stage_dir(n) for n in run.stage_paths},
                         run.hashes["tokenizer"], logger=RunLogger(run.run_dir, None, None, mirror=False),
                         progress=ProgressWriter(run.run_dir), spec=run)
        log(f"{run.variant} tokenizer seed {run.seed}: {'cached' if done.skipped else f'done in {done.seconds:.1f}s'}")
        latents[f"{BASELINE}:seed{run.seed}"] = run.stage_dir("tokenizer")
    ctx = StageContext("teacher_check", study, {"data": Path(folders["data"]), "prior": Path(folders["prior"]),
                                                "refine": Path(folders["refine"]), **latents},
                       files, resolve_device(study.device))
    results = ceiling_results(ctx, {**teacher_sources(ctx), **{name: stage_array(ctx, name, layout.latents) for name in latents}})
    rows, items = flat_rows(results), item_rows(results)
    seeds_rows, seeds_items = [rows.pop(name) for name in latents], [items.pop(name) for name in latents]
    values = {k: np.array([r[k] for r in seeds_rows]) for k in seeds_rows[0]}
    items[BASELINE] = {k: np.mean([r[k] for r in seeds_items], axis=0) for k in seeds_items[0]}
    rows[BASELINE] = {k: float(v.mean()) for k, v in values.items()}
    rows[SPREAD] = {k: float(v.std(ddof=1)) if len(v) > 1 else math.nan for k, v in values.items()}
    return rows, {"steps": steps if trained else None, "seeds": len(seeds_rows), "trained": trained,
                  "study_steps": study.training.steps, "refiner": refiner_spread(study, refiner_seeds, rows, log),
                  "items": items}


def image_error(row: dict[str, float], metric: str) -> float:
    """The 95% half-width of a row's score over the images (1.96 standard errors; NaN where not measured)."""
    return IMAGE_Z * row.get(f"{metric}_se", math.nan)


def paired_gap(items: dict[str, dict], row: str, metric: str) -> tuple[float, float]:
    """(`row`'s score minus the baseline latent's, its 95% half-width over the images) from their per-image
    scores, over the images both scored (1.96 standard errors of the differences); NaNs without them."""
    import numpy as np

    mine, base = items.get(row, {}).get(metric), items.get(BASELINE, {}).get(metric)
    if mine is None or base is None:
        return math.nan, math.nan
    gap = np.asarray(mine) - np.asarray(base)
    gap = gap[np.isfinite(gap)]
    if len(gap) < 2:
        return math.nan, math.nan
    return float(gap.mean()), IMAGE_Z * float(gap.std(ddof=1) / math.sqrt(len(gap)))


def latent_below(rows: dict[str, dict[str, float]], metric: str, controls: dict[str, float], seed_band: float = 0.0,
                 items: dict[str, dict] | None = None) -> str:
    """Which controls the baseline latent lies below beyond the error: the images' 95% half-width of the
    gap and the latent's seed half-width `seed_band`, combined as if independent. The images' part is
    paired where both rows keep per-image scores (`items`, SSC's AMI: the rows share their images, so
    the per-image gaps carry what the images add to the difference); else both rows' own errors combined
    as if independent, which errs toward "not distinguishable". A row without an image error is not judged."""
    base = rows[BASELINE]
    if metric not in base:
        return ""
    above = {c: v - base[metric] for c, v in controls.items() if v > base[metric]}
    paired = {c: paired_gap(items or {}, c, metric) for c in above}
    above = {c: paired[c][0] if math.isfinite(paired[c][1]) else gap for c, gap in above.items()}  # the same images
    images = {c: e if math.isfinite(e) else math.hypot(image_error(rows[c], metric), image_error(base, metric))
              for c, (_, e) in paired.items()}
    error = {c: math.hypot(images[c], seed_band) for c in above}
    said = {c: ", images paired" if math.isfinite(paired[c][1]) else "" for c in above}
    beyond = [f"{c.replace('_', ' ')} (by {gap:.3f}, error ±{error[c]:.3f}{said[c]})" for c, gap in above.items() if gap > error[c]]
    within = [c.replace("_", " ") for c, gap in above.items() if gap <= error[c]]
    unjudged = [c.replace("_", " ") for c in above if not math.isfinite(error[c])]
    return ((f"; the latent lies below {', '.join(beyond)}" if beyond else "")
            + (f"; not distinguishable from {', '.join(within)} (within the images' and seeds' error)" if within else "")
            + (f"; below {', '.join(unjudged)}, not judged (no image error)" if unjudged else ""))


def verdicts(rows: dict[str, dict[str, float]], how: dict[str, object]) -> list[str]:
    """One line per pulled metric: is the refined teacher outside the baseline latent's 95% t interval
    over seeds (the interval the study's readings use); and whether the controls that use no network
    (colour, a filter bank, position) reach the teacher's score, which would make its win no evidence."""
    from scipy import stats

    from analysis.teacher import CONTROL_ROWS

    base, spread = rows[BASELINE], rows[SPREAD]
    n, lines = int(how["seeds"]), []
    half = stats.t.ppf(0.975, n - 1) / math.sqrt(n) if n > 1 else 0.0  # x the sd: the mean's 95% half-width
    bands = {metric: half * spread.get(metric, math.nan) if n > 1 else 0.0 for metric in PULLED_BY}  # the latent's
    pulling = {metric: (f"refined:{reg}" if f"refined:{reg}" in rows else "refined") for metric, reg in PULLED_BY.items()}
    for metric, reg in PULLED_BY.items():
        name, refined, regularizer = SHOWN[metric], rows[pulling[metric]], reg.upper()
        teacher = "refined teacher" + ("" if pulling[metric] == "refined" else f" ({reg}'s own)")
        if not all(metric in r for r in (base, refined)):
            lines.append(f"{name}: not judged (the data has no {'segment maps' if metric == 'ssc_ami' else 'labels'})")
            continue
        band = bands[metric]
        said = (f"{name}: {teacher} {refined[metric]:.3f} vs baseline latent {base[metric]:.3f} "
                + (f"[{base[metric] - band:.3f}, {base[metric] + band:.3f}] (95%, {n} seeds) -> " if n > 1
                   else "(a pretrained tokenizer: no seeds) -> "))
        side = lambda value: "weaker" if value - base[metric] < -band else "stronger" if value - base[metric] > band else "inside"  # noqa: E731
        verdict = {"weaker": f"the teacher is WEAKER: {regularizer} can only pull {name} down",
                   "stronger": f"the teacher is stronger: {regularizer} has room to raise {name}",
                   "inside": f"inside the interval: not distinguishable at {n} latent seeds"}[side(refined[metric])]
        own = how.get("refiner", {}).get(pulling[metric], {}).get(metric, [])
        if len(own) > 1:  # the study trains on one refiner seed's target: would another seed's change the verdict?
            others = sum(side(v) != side(refined[metric]) for v in own)
            verdict += (f"; over {len(own)} refiner seeds the target reads {min(own):.3f}-{max(own):.3f}, and "
                        + ("every seed gives this verdict" if not others else f"{others} of {len(own)} give another"))
        lines.append(said + verdict)
    for metric in PULLED_BY:
        refined = rows[pulling[metric]]
        controls = {c: rows[c][metric] for c in CONTROL_ROWS if math.isfinite(rows.get(c, {}).get(metric, math.nan))}
        if metric not in refined or not controls:
            continue
        best = max(controls, key=controls.get)
        listed = ", ".join(f"{c.replace('_', ' ')} {v:.3f}" for c, v in controls.items())
        verdict = (f"{CONTROL_ROWS[best]} gives it away: the teacher is no better" if controls[best] >= refined[metric]
                   else "the teacher beats them all")
        lines.append(f"{SHOWN[metric]} without a network: {listed} -> {verdict}"
                     f"{latent_below(rows, metric, controls, bands[metric], how.get('items'))}")
    trained = (f"{how['steps']} tokenizer steps" + (f" (the study trains {how['study_steps']})"
                                                     if how["steps"] != how["study_steps"] else ""))
    lines.append((trained if how["trained"] else "the pretrained tokenizer") + ": a screen before the study, not its reading")
    return lines
