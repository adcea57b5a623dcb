"""Study-level results: one table row per run, convergence curves, speed-ups, correlations."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.correlation import correlate
from analysis.fidelity import metric_names
from pae_lab.config import StudyConfig
from pae_lab.fsutil import atomic_write, read_json
from pae_lab.runfiles import FAILED_FILE, RESULT_FILE
from pae_lab.plan import RunSpec


def target_columns(study: StudyConfig) -> tuple[str, str]:
    """The gFID-like and KID-like column names under this study's evaluation protocol."""
    return metric_names(study.evaluation.extractor, study.evaluation.inception_weights)


def run_status(run_dir: Path) -> str:
    if (run_dir / RESULT_FILE).exists() and not (run_dir / FAILED_FILE).exists():
        return "done"
    return "failed" if (run_dir / FAILED_FILE).exists() else "pending"


def stage_summary(run_dir: Path, stage: str, digest: str) -> dict[str, Any]:
    done = read_json(run_dir / stage / "done.json")
    return done.get("summary", {}) if done and done.get("hash") == digest else {}


def results_table(runs: list[RunSpec]) -> pd.DataFrame:
    rows = []
    for spec in runs:
        run_dir = Path(spec.run_dir)
        row: dict[str, Any] = {"variant": spec.variant, "seed": spec.seed, "run_id": spec.mlflow_run_id,
                               "status": run_status(run_dir)}
        row.update(stage_summary(run_dir, "manifold", spec.hashes["manifold"]))
        row.update(stage_summary(run_dir, "generation", spec.hashes["generation"]))
        tok = stage_summary(run_dir, "tokenizer", spec.hashes["tokenizer"])
        row["train_loss"] = tok.get("loss/total", np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def convergence_table(runs: list[RunSpec]) -> pd.DataFrame:
    rows = []
    for spec in runs:
        if not stage_summary(Path(spec.run_dir), "generation", spec.hashes["generation"]):
            continue
        conv = read_json(Path(spec.run_dir) / "generation" / "convergence.json", {"rows": []})
        rows += [{"variant": spec.variant, "seed": spec.seed, **r} for r in conv["rows"]]
    return pd.DataFrame(rows)


def steps_to_reach(steps: np.ndarray, values: np.ndarray, level: float) -> float:
    """First step at which the curve reaches `level` (lower is better), linearly interpolated."""
    for i, (s, v) in enumerate(zip(steps, values)):
        if v <= level:
            if i == 0:
                return float(s)
            s0, v0 = steps[i - 1], values[i - 1]
            return float(s0 + (v0 - level) / (v0 - v) * (s - s0)) if v0 != v else float(s)
    return float("nan")


def speedups(convergence: pd.DataFrame, target: str, baseline: str) -> pd.DataFrame:
    """How many times fewer generator steps a variant needs to reach the baseline's final gFID."""
    if convergence.empty or target not in convergence or baseline not in set(convergence["variant"]):
        return pd.DataFrame(columns=["variant", "speedup", "steps_to_baseline"])
    curves = convergence.groupby(["variant", "step"])[target].mean().reset_index()
    base = curves[curves["variant"] == baseline].sort_values("step")
    level, base_steps = float(base[target].iloc[-1]), float(base["step"].iloc[-1])
    rows = []
    for variant, curve in curves.groupby("variant"):
        curve = curve.sort_values("step")
        needed = steps_to_reach(curve["step"].to_numpy(), curve[target].to_numpy(), level)
        rows.append({"variant": variant, "steps_to_baseline": needed,
                     "speedup": base_steps / needed if needed == needed and needed > 0 else float("nan")})
    return pd.DataFrame(rows)


def correlated_metrics(results: pd.DataFrame, target: str) -> list[str]:
    """The panel's metrics plus reconstruction FD/KD (the paper's contrast): not their spreads or
    protocol extras, not hyper-parameters, and not the speed-up (derived from the target itself)."""
    from analysis.panel import METRICS

    wanted = set(METRICS.names()) | {f"r{target}"} | {c for c in results if c.startswith("rk")}
    return [c for c in results.columns if c in wanted and not c.endswith("_std")
            and pd.api.types.is_numeric_dtype(results[c])]


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    return atomic_write(path, lambda p: frame.to_csv(p, index=False))


def aggregate(study: StudyConfig, runs: list[RunSpec], root: Path) -> dict[str, Any]:
    """Write results.csv, convergence.csv, speedups.csv and correlations.csv into the study folder."""
    target, kid = target_columns(study)
    results = results_table(runs)
    convergence = convergence_table(runs)
    names = [r.variant for r in runs]
    baseline = "baseline" if "baseline" in names else names[0]
    speed = speedups(convergence, target, baseline)
    if not speed.empty:
        results = results.merge(speed[["variant", "speedup"]], on="variant", how="left")
    write_csv(results, root / "results.csv")
    write_csv(convergence, root / "convergence.csv")
    write_csv(speed, root / "speedups.csv")
    done = results[results["status"] == "done"]
    correlations = pd.DataFrame()
    if target in done and done["variant"].nunique() >= 3:
        correlations = correlate(done, target, correlated_metrics(done, target), unit="variant")
    write_csv(correlations, root / "correlations.csv")
    return {"target": target, "kid": kid, "baseline": baseline, "results": results, "correlations": correlations}
