"""Study-level results: one table row per run, convergence curves, speed-ups, correlations."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.control_verdicts import frontier_rows, verdicts
from analysis.correlation import correlate
from analysis.fidelity_names import FidelityColumns
from analysis.convergence import speedups
from analysis.metric_info import direction_of, panel_names
from analysis.factorial import (Design, default_primary, design_gap, effect_name, factorial_effects, find_design, paper_effects,
                                parse_test, stratified_correlations)
from analysis.frontier import RECONSTRUCTION, Frontier, FrontierError, fit_frontier, run_distances, variant_distances
from analysis.paper import ABLATION, OWN_METRIC
from analysis.result import SPREAD_SUFFIXES
from pae_lab.fsutil import atomic_write, read_json
from pae_lab.plan import layout
from pae_lab.plan.layout import StudyLayout
from pae_lab.plan.runs import RunSpec
from pae_lab.config.schema import StudyConfig


def target_columns(study: StudyConfig) -> tuple[str, str]:
    """The gFID-like and KID-like column names under this study's evaluation protocol."""
    cols = study.evaluation.columns()
    return cols.fd, cols.kd


def correlation_target(study: StudyConfig) -> str:
    """The column the study asks to read as generation quality (evaluation.correlation_target)."""
    cols = study.evaluation.columns()
    return cols.targets()[study.evaluation.correlation_target]


def generation_columns(study: StudyConfig) -> list[str]:
    cols = study.evaluation.columns()
    return [cols.fd, cols.kd, cols.lfd, cols.lkd, cols.val_loss, cols.val_loss_gap, cols.val_loss_null, cols.frontier]


def width_arm(study: StudyConfig, runs: list[RunSpec]) -> set[str]:
    """The variants whose tokenizer is not the study's (another latent width): outside its on/off design."""
    own = study.model_dump(mode="json")["tokenizer"]
    return {r.variant for r in runs if r.config.get("tokenizer", own) != own}


def design_variants(study: StudyConfig, runs: list[RunSpec]) -> tuple[dict[str, tuple[str, ...]], set[str]]:
    """(variant -> the regularizers it switches on, the width arm), what find_design / design_gap read."""
    return {r.variant: tuple(r.regularizers) for r in runs}, width_arm(study, runs)


def baseline_widths(runs: list[RunSpec]) -> dict[str, str]:
    """Each unregularized variant -> its tokenizer block (as text): the frontier's points, one per width."""
    return {r.variant: json.dumps(r.config.get("tokenizer"), sort_keys=True) for r in runs if not r.regularizers}


def frontier_fit(study: StudyConfig, runs: list[RunSpec], results: pd.DataFrame) -> tuple[Frontier | None, str]:
    """(the baselines' log-gFD-vs-PSNR frontier over the finished runs, "" or one line on why there is none)."""
    widths = baseline_widths(runs)
    if len(set(widths.values())) < 2:
        return None, (f"no width arm: the unregularized baselines ({', '.join(widths) or 'none'}) sit at one "
                      "tokenizer, so there is no reconstruction-generation frontier")
    try:
        return fit_frontier(results[results["status"] == "done"], widths, study.evaluation.columns().fd), ""
    except FrontierError as err:
        return None, str(err)


def with_distances(frame: pd.DataFrame, psnr: pd.DataFrame, fit: Frontier, study: StudyConfig) -> pd.DataFrame:
    """`frame` (rows per run, or per run and generator step) with its frontier-distance column, each row
    held against the frontier at its run's PSNR (`psnr`: variant, seed, psnr)."""
    cols = study.evaluation.columns()
    if frame.empty or cols.fd not in frame:
        return frame
    held = frame.drop(columns=[RECONSTRUCTION], errors="ignore").merge(psnr, on=["variant", "seed"], how="left")
    frame = frame.copy()
    frame[cols.frontier] = run_distances(held, fit, cols.fd).to_numpy()
    return frame


def results_table(runs: list[RunSpec]) -> pd.DataFrame:
    rows = []
    for spec in runs:
        row: dict[str, Any] = {"variant": spec.variant, "kind": "variant", "seed": spec.seed,
                               "run_id": spec.mlflow_run_id, "status": spec.layout.status()}
        row.update(spec.result_row())
        rows.append(row)
    return pd.DataFrame(rows)


def reference_rows(runs: list[RunSpec]) -> pd.DataFrame:
    """The teacher's ceiling (`teacher:raw_prior`, `teacher:refined`, `reference:pooled_pixels`) and the
    sampling floor (`reference:heldout_real`: held-out real images vs the reference set) as rows."""
    if not runs:
        return pd.DataFrame()
    from analysis.teacher import row_kind, row_name  # torch: only once there are runs

    spec = runs[0]
    rows = []
    teacher = read_json(spec.stage_dir("teacher") / layout.TEACHER_CEILING, {})
    for name, values in teacher.get("rows", {}).items():
        rows.append({"variant": row_name(name), "kind": row_kind(name), "status": "reference",
                     **values})
    reference = spec.summary("reference")
    noise = {k: v for k, v in reference.items() if k.startswith("noise_")}
    if noise:  # at the held-out split's N, which may be below the generated images' (its own N beside it)
        rows.append({"variant": "reference:heldout_real", "kind": "reference", "status": "reference", **noise,
                     "n_images": reference.get("n_heldout")})
    return pd.DataFrame(rows)


def column_meanings(study: StudyConfig, results: pd.DataFrame, target: str, verdict: pd.DataFrame,
                    notes: dict[str, str] | None = None) -> pd.DataFrame:
    """columns.csv: what every generation / fidelity column means, its direction, which is the target,
    whether it passed its controls (analysis.controls), and `notes` on a column (why the target is not
    the one asked for, why the frontier is empty)."""
    cols = study.evaluation.columns()
    notes = notes or {}
    rows = [{"column": c, "meaning": m, "direction": direction_of(c), "correlation_target": c == target,
             "present": c in results.columns, "note": notes.get(c, "")} for c, m in cols.meanings().items()]
    rows.append({"column": "kind", "meaning": "variant: a trained run; teacher: what SSR/SCR align to (raw prior "
                 "features, refined target); reference: pooled pixels and the held-out-real sampling floor",
                 "direction": None, "correlation_target": False, "present": True})
    return pd.DataFrame(rows).merge(verdict, on="column", how="left")


CONTROL_COLUMNS = ["variant", "seed", "control", "param", "column", "value", "compared_with", "worse"]


def controls_table(runs: list[RunSpec]) -> pd.DataFrame:
    """controls.csv: every score of every measured run under each control, with what it is compared with."""
    rows = []
    for spec in runs:
        if spec.summary("controls").get("measured"):
            found = read_json(spec.stage_dir("controls") / layout.CONTROLS, {"rows": []})
            rows += [{"variant": spec.variant, "seed": spec.seed, **r} for r in found["rows"]]
    return pd.DataFrame(rows, columns=CONTROL_COLUMNS)


def control_verdicts(study: StudyConfig, controls: pd.DataFrame) -> pd.DataFrame:
    """Per generation column: passes_controls (True / False / None: not measured) and failed_controls."""
    cols = study.evaluation.columns()
    return verdicts(controls, [*cols.set_scored(), *cols.suite(), cols.frontier, cols.val_loss_gap], cols.roles())


def accepted_target(study: StudyConfig, verdict: pd.DataFrame, frontier_gap: str = "") -> tuple[str, str]:
    """(the column the study reads as generation quality, a sentence on why). The declared target, except:
    the frontier distance without a frontier (`frontier_gap` says why) is read as gFD; a target that
    failed its controls is replaced by the first declared target that passed, unless
    `allow_failed_target`. The frontier distance has controls of its own (analysis.control_verdicts.frontier_rows)."""
    cols = study.evaluation.columns()
    declared, prefix = correlation_target(study), ""
    if declared == cols.frontier and frontier_gap:
        declared, prefix = cols.fd, f"{cols.fd} in place of the frontier distance ({frontier_gap}); "
    elif declared == cols.frontier:
        prefix = f"{cols.frontier} is gFD at equal reconstruction: "
    passes = {c: None if p is None or p != p else bool(p) for c, p in zip(verdict["column"], verdict["passes_controls"])}
    failed = dict(zip(verdict["column"], verdict["failed_controls"]))
    checked = declared
    if passes.get(checked) is None:
        return declared, prefix + f"{checked} was not checked by controls ({failed.get(checked, 'not measured')})"
    if passes[checked]:
        return declared, prefix + f"{checked} passed its controls"
    reason = prefix + f"{declared} fails its controls: {failed[checked]}"
    if study.evaluation.allow_failed_target:
        return declared, reason + "; kept by evaluation.allow_failed_target"
    for column in cols.targets().values():
        if passes.get(column) is True:
            return column, reason + f"; the study reads {column} instead"
    return declared, reason + "; no other target passed, so it is kept"


PSNR = RECONSTRUCTION  # the reconstruction score effects, partial correlations and the frontier hold fixed


def primary_tests(study: StudyConfig, design: Design) -> list[tuple[str, str]]:
    """The study's declared primary family (analysis.primary) as (column, effect), generation keys
    (gfd, lfd, ...) resolved to the study's columns; each regularizer on its own metric and on gFD
    when none is declared."""
    cols = study.evaluation.columns()
    if study.analysis.primary is None:
        return default_primary(design, OWN_METRIC, cols.fd)
    tests = [parse_test(t) for t in study.analysis.primary]
    effects = {effect_name(e) for e in design.effects}
    if unknown := [t for t, (_, effect) in zip(study.analysis.primary, tests) if effect not in effects]:
        warnings.warn(f"analysis.primary: {unknown} name no effect of this design (effects: {sorted(effects)}); "
                      "they are not tested", stacklevel=2)
    return [(cols.targets().get(response, response), effect) for response, effect in tests]


def paper_signs(design: Design, responses: list[str], gfd: str) -> dict[str, dict[str, float]]:
    """The paper's effects, only for what the paper measured: each regularizer's own metric and gFD
    (its gFID), never lFD, KD or the flow loss, whose agreement with gFID is the question under test."""
    if not set(design.factors) <= set(OWN_METRIC):
        return {}
    measured = [c for c in OWN_METRIC.values() if c in responses]
    own = paper_effects(ABLATION, design, [*measured, "gfid"])
    return {c: own[c] for c in measured} | ({gfd: own["gfid"]} if gfd in responses else {})


def factorial_tables(study: StudyConfig, runs: list[RunSpec], done: pd.DataFrame, target: str,
                     metrics: list[str], verdict: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(effects.csv, correlations_strata.csv) when the variants form a full on/off design, else empty.
    Generation scores are adjusted for PSNR where results.csv has it, except the frontier distance,
    which is already held at equal PSNR (adjusting it again would cancel the frontier's slope). No
    agreement with the paper is claimed on a score that failed its controls (`verdict`)."""
    design = find_design(*design_variants(study, runs))
    if design is None or done.empty:
        return pd.DataFrame(), pd.DataFrame()
    cols = study.evaluation.columns()
    gen = [c for c in generation_columns(study) if c in done]
    responses = [c for c in dict.fromkeys([*metrics, *gen]) if c in done and done[c].notna().any()]
    covariates = {c: PSNR for c in gen if c != cols.frontier} if PSNR in done else {}
    effects = factorial_effects(done, design, responses, paper=paper_signs(design, responses, cols.fd),
                                covariates=covariates, primary=primary_tests(study, design))
    if verdict is not None and not effects.empty:
        failed = set(verdict.loc[verdict["passes_controls"] == False, "column"])  # noqa: E712
        mask = effects["response"].isin(failed) & (effects["agrees_with_paper"] != "")
        effects.loc[mask, "agrees_with_paper"] = ""
        effects.loc[mask, "note"] = (effects.loc[mask, "note"].fillna("").astype(str) +
                                     " failed its controls: no agreement with the paper is claimed").str.strip()
    strata = stratified_correlations(done, design, target, [m for m in metrics if m != target])
    return effects, strata


def convergence_table(runs: list[RunSpec]) -> pd.DataFrame:
    rows = []
    for spec in runs:
        if not spec.summary("generation"):
            continue
        conv = read_json(spec.stage_dir("generation") / layout.CONVERGENCE, {"rows": []})
        rows += [{"variant": spec.variant, "seed": spec.seed, **r} for r in conv["rows"]]
    return pd.DataFrame(rows)


def correlated_metrics(results: pd.DataFrame, contrast: list[str]) -> list[str]:
    """The panel's metrics plus the `contrast` columns (reconstruction FD/KD, the paper's contrast, and
    the decoder floor): not their spreads or protocol extras, not hyper-parameters, and not the
    speed-up (derived from the target itself)."""
    wanted = set(panel_names()) | set(contrast)
    return [c for c in results.columns if c in wanted and not c.endswith(SPREAD_SUFFIXES)
            and pd.api.types.is_numeric_dtype(results[c])]


def contrast_columns(study: StudyConfig) -> list[str]:
    cols = study.evaluation.columns()
    return [cols.rfd, cols.rkd, cols.floor_fd, cols.floor_kd]


def guidance_correlations(done: pd.DataFrame, cols: FidelityColumns, metrics: list[str]) -> pd.DataFrame:
    """The metrics against gFD at each variant's best guidance scale and without guidance (the guidance
    stage's columns), one block per target; empty when the study swept no guidance."""
    blocks = [correlate(done, target, metrics, unit="variant", partial=PSNR if PSNR in done else None).assign(target=target)
              for target in (cols.guided_fd, cols.unguided_fd) if target in done and done[target].notna().any()]
    return pd.concat(blocks, ignore_index=True) if blocks else pd.DataFrame()


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    return atomic_write(path, lambda p: frame.to_csv(p, index=False))


def aggregate(study: StudyConfig, runs: list[RunSpec], root: Path) -> dict[str, Any]:
    """Write results.csv (runs, then the teacher and reference rows), columns.csv, controls.csv, frontier.csv (each
    variant's distance from the baselines' reconstruction-generation frontier), convergence.csv,
    speedups.csv, correlations.csv (against the study's correlation target, with Holm / BH adjusted
    p-values) and, for a full on/off design, effects.csv and correlations_strata.csv. `notes`: one
    line each on what the study could not read as asked (no frontier, no design), for its log."""
    gfd, kid = target_columns(study)
    cols = study.evaluation.columns()
    files = StudyLayout(Path(root))
    results = results_table(runs)
    convergence = convergence_table(runs)
    fit, gap = frontier_fit(study, runs, results)
    controls = controls_table(runs)
    if fit is not None and not controls.empty:
        controls = pd.concat([controls, frontier_rows(controls, fit, cols.fd, cols.frontier)], ignore_index=True)
    verdict = control_verdicts(study, controls)
    target, target_note = accepted_target(study, verdict, gap)
    frontier = pd.DataFrame()
    if fit is not None:
        psnr = results[["variant", "seed", RECONSTRUCTION]]
        results, convergence = with_distances(results, psnr, fit, study), with_distances(convergence, psnr, fit, study)
        frontier = variant_distances(results[results["status"] == "done"], fit, gfd)
    names = [r.variant for r in runs]
    baseline = "baseline" if "baseline" in names else names[0]
    speed = speedups(convergence, target, baseline)
    if not speed.empty:
        results = results.merge(speed[["variant", "speedup"]], on="variant", how="left")
    done = results[results["status"] == "done"]
    results = pd.concat([results, reference_rows(runs)], ignore_index=True)
    results["correlation_target"] = target
    results["target_controls"] = target_note
    write_csv(results, files.results)
    write_csv(column_meanings(study, results, target, verdict, {target: target_note, cols.frontier: gap}), files.columns)
    write_csv(controls, files.controls)
    write_csv(frontier, files.frontier)
    write_csv(convergence, files.convergence)
    write_csv(speed, files.speedups)
    correlations, effects, strata, guidance = pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), pd.DataFrame()
    if target in done and done["variant"].nunique() >= 3:
        metrics = correlated_metrics(done, contrast_columns(study))
        correlations = correlate(done, target, metrics, unit="variant", partial=PSNR if PSNR in done else None)
        effects, strata = factorial_tables(study, runs, done, target, metrics, verdict)
        guidance = guidance_correlations(done, cols, metrics)
    write_csv(correlations, files.correlations)
    write_csv(guidance, files.correlations_guidance)
    write_csv(effects, files.effects)
    write_csv(strata, files.correlations_strata)
    notes = [n for n in (target_note, design_gap(*design_variants(study, runs)), *study.notes()) if n]
    return {"target": target, "target_controls": target_note, "declared_target": correlation_target(study),
            "kid": kid, "gfd": gfd, "curves": generation_columns(study), "baseline": baseline,
            "results": results, "correlations": correlations, "effects": effects, "frontier": frontier,
            "frontier_fit": fit.as_dict() if fit is not None else {"none": gap}, "notes": notes}
