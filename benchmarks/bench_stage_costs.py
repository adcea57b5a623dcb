"""Cost of each stage of a finished study, and the ratios the issues set targets for.

    python benchmarks/bench_stage_costs.py outputs/ablation_properties

Prints seconds per run and stage (from each stage's done.json), and the metric panel's cost as a
fraction of tokenizer training (target: well under 1).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from pae_lab.plan.layout import STAGE_DONE, RunLayout
from pae_lab.plan.runs import run_stage_names

STAGES = tuple(run_stage_names())


def main(study_dir: str) -> None:
    root = Path(study_dir)
    rows = []
    for run in sorted(root.glob("runs/*/seed*")):
        secs = {}
        for stage in STAGES:
            done = RunLayout(run).stage(stage) / STAGE_DONE
            if done.exists():
                secs[stage] = json.loads(done.read_text())["seconds"]
        if secs:
            rows.append((f"{run.parent.name}/{run.name}", secs))
    if not rows:
        sys.exit(f"no finished stages under {root}/runs")
    print(f"{'run':<24}" + "".join(f"{s:>12}" for s in STAGES) + f"{'panel/train':>13}")
    for name, secs in rows:
        ratio = secs.get("manifold", float("nan")) / secs.get("tokenizer", float("nan"))
        print(f"{name:<24}" + "".join(f"{secs.get(s, float('nan')):>11.1f}s" for s in STAGES) + f"{ratio:>13.2f}")
    totals = {s: sum(secs.get(s, 0.0) for _, secs in rows) for s in STAGES}
    print(f"{'total':<24}" + "".join(f"{totals[s]:>11.1f}s" for s in STAGES)
          + f"{totals['manifold'] / max(totals['tokenizer'], 1e-9):>13.2f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "outputs/smoke")
