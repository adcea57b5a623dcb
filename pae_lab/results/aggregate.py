"""Study-level results: one table row per run, convergence curves, speed-ups, correlations."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.controls import verdicts
from analysis.correlation import correlate
from analysis.convergence import speedups
from analysis.metric_info import direction_of, panel_names
from analysis.factorial import (Design, default_primary, effect_name, factorial_effects, find_design, paper_effects,
                                parse_test, stratified_correlations)
from analysis.paper import ABLATION, OWN_METRIC
from analysis.set_scores import scored_columns
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
    """The column the study reads as generation quality (evaluation.correlation_target)."""
    cols = study.evaluation.columns()
    return cols.targets()[study.evaluation.correlation_target]


def generation_columns(study: StudyConfig) -> list[str]:
    cols = study.evaluation.columns()
    return [cols.fd, cols.kd, cols.lfd, cols.lkd, cols.val_loss, cols.val_loss_gap, cols.val_loss_null]


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
    from analysis.teacher import TEACHER_ROWS, row_name  # torch: only once there are runs

    spec = runs[0]
    rows = []
    teacher = read_json(spec.stage_dir("teacher") / layout.TEACHER_CEILING, {})
    for name, values in teacher.get("rows", {}).items():
        rows.append({"variant": row_name(name), "kind": TEACHER_ROWS.get(name, "reference"), "status": "reference",
                     **values})
    reference = spec.summary("reference")
    noise = {k: v for k, v in reference.items() if k.startswith("noise_")}
    if noise:
        rows.append({"variant": "reference:heldout_real", "kind": "reference", "status": "reference", **noise})
    return pd.DataFrame(rows)


def column_meanings(study: StudyConfig, results: pd.DataFrame, target: str, verdict: pd.DataFrame) -> pd.DataFrame:
    """columns.csv: what every generation / fidelity column means, its direction, which is the target,
    and whether it passed its controls (analysis.controls)."""
    cols = study.evaluation.columns()
    rows = [{"column": c, "meaning": m, "direction": direction_of(c), "correlation_target": c == target,
             "present": c in results.columns} for c, m in cols.meanings().items()]
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
    return verdicts(controls, [*scored_columns(cols), cols.val_loss], cols.roles())


def accepted_target(study: StudyConfig, verdict: pd.DataFrame) -> tuple[str, str]:
    """(the column the study reads as generation quality, a sentence on why): the declared target unless
    it failed its controls; then, unless `allow_failed_target`, the first declared target that passed."""
    declared = correlation_target(study)
    passes = {c: None if p is None or p != p else bool(p) for c, p in zip(verdict["column"], verdict["passes_controls"])}
    failed = dict(zip(verdict["column"], verdict["failed_controls"]))
    if passes.get(declared) is None:
        return declared, f"{declared} was not checked by controls ({failed.get(declared, 'not measured')})"
    if passes[declared]:
        return declared, f"{declared} passed its controls"
    reason = f"{declared} fails its controls: {failed[declared]}"
    if study.evaluation.allow_failed_target:
        return declared, reason + "; kept by evaluation.allow_failed_target"
    for column in study.evaluation.columns().targets().values():
        if passes.get(column) is True:
            return column, reason + f"; the study reads {column} instead"
    return declared, reason + "; no other target passed, so it is kept"


PSNR = "psnr"  # the reconstruction score generation effects and partial correlations are adjusted for


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
                     metrics: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(effects.csv, correlations_strata.csv) when the variants form a full on/off design, else empty.
    Generation scores are adjusted for PSNR where results.csv has it."""
    design = find_design({r.variant: tuple(r.regularizers) for r in runs})
    if design is None or done.empty:
        return pd.DataFrame(), pd.DataFrame()
    gen = [c for c in generation_columns(study) if c in done]
    responses = [c for c in dict.fromkeys([*metrics, *gen]) if c in done and done[c].notna().any()]
    covariates = {c: PSNR for c in gen} if PSNR in done else {}
    effects = factorial_effects(done, design, responses, paper=paper_signs(design, responses, study.evaluation.columns().fd),
                                covariates=covariates, primary=primary_tests(study, design))
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
    return [c for c in results.columns if c in wanted and not c.endswith("_std")
            and pd.api.types.is_numeric_dtype(results[c])]


def contrast_columns(study: StudyConfig) -> list[str]:
    cols = study.evaluation.columns()
    return [cols.rfd, cols.rkd, cols.floor_fd, cols.floor_kd]


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    return atomic_write(path, lambda p: frame.to_csv(p, index=False))


def aggregate(study: StudyConfig, runs: list[RunSpec], root: Path) -> dict[str, Any]:
    """Write results.csv (runs, then the teacher and reference rows), columns.csv, controls.csv,
    convergence.csv, speedups.csv, correlations.csv (against the study's correlation target, with Holm / BH adjusted
    p-values) and, for a full on/off design, effects.csv and correlations_strata.csv."""
    gfd, kid = target_columns(study)
    files = StudyLayout(Path(root))
    controls = controls_table(runs)
    verdict = control_verdicts(study, controls)
    target, target_note = accepted_target(study, verdict)
    results = results_table(runs)
    convergence = convergence_table(runs)
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
    write_csv(column_meanings(study, results, target, verdict), files.columns)
    write_csv(controls, files.controls)
    write_csv(convergence, files.convergence)
    write_csv(speed, files.speedups)
    correlations, effects, strata = pd.DataFrame(), pd.DataFrame(), pd.DataFrame()
    if target in done and done["variant"].nunique() >= 3:
        metrics = correlated_metrics(done, contrast_columns(study))
        correlations = correlate(done, target, metrics, unit="variant", partial=PSNR if PSNR in done else None)
        effects, strata = factorial_tables(study, runs, done, target, metrics)
    write_csv(correlations, files.correlations)
    write_csv(effects, files.effects)
    write_csv(strata, files.correlations_strata)
    return {"target": target, "target_controls": target_note, "declared_target": correlation_target(study),
            "kid": kid, "gfd": gfd, "curves": generation_columns(study), "baseline": baseline,
            "results": results, "correlations": correlations, "effects": effects}
