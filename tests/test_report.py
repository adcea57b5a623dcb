"""The study report: executed over a synthetic study directory, plus its pure parts on known answers."""
from __future__ import annotations

from pae_lab.plan.layout import RunLayout

import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from pae_lab.results import plots
from analysis.control_verdicts import verdicts
from analysis.factorial import factorial_effects, find_design
from analysis.paper import ABLATION_VARIANTS
from pae_lab.results import report_columns, report_words
from pae_lab.results.report import build_report
from pae_lab.results.report_inputs import ReportError, find_template
from pae_lab.results.report_words import best_trials, summarize, variants_table
from pae_lab.results.study_data import load_study

# The paper's 2x2x2 regularizer ablation (method.md): SSC, LPC, GSQ, gFID per variant.
ABLATION = {
    "baseline": (0.18, 0.320, 0.19, 7.18),
    "ssr": (0.29, 0.296, 0.26, 2.74),
    "mcr": (0.23, 0.221, 0.24, 2.53),
    "scr": (0.21, 0.286, 0.39, 2.63),
    "ssr_mcr": (0.33, 0.187, 0.33, 2.02),
    "ssr_scr": (0.31, 0.258, 0.46, 2.10),
    "mcr_scr": (0.24, 0.176, 0.45, 2.08),
    "pae": (0.35, 0.170, 0.50, 1.86),
}
TARGET, KID, RFD, LFD = "fd_effnet_lite0", "kd_effnet_lite0", "rfd_effnet_lite0", "lfd_effnet_lite0"
DIRECTIONS = {"psnr": "higher", RFD: "lower", "ssc": "higher", "lpc": "lower", "gsq": "higher",
              "linprobe": "higher", "erank": "higher", "lpc_rho0.1": "lower", "linprobe_C": "higher"}
EXTRAS = ["lpc_rho0.1", "linprobe_C"]  # secondary columns of registered metrics, as the panel writes them
HEADINGS = ["Study report", "Summary", "Main results", "All metrics", "Teacher's ceiling",
            "Effects and correlations",
            "Correlations with the generation score", "Metric–metric correlations", "Convergence", "Training curves",
            "Images", "Tuning", "Configuration and protocols", "Controls", "Guidance"]


def _results(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for i, (variant, (ssc, lpc, gsq, gfid)) in enumerate(ABLATION.items()):
        for seed in (0, 1):
            jitter = lambda scale: float(rng.normal(0, scale))  # noqa: E731
            rows.append({
                "variant": variant, "seed": seed, "run_id": f"r{i}{seed}", "status": "done",
                "psnr": 24 + jitter(0.5), RFD: 3.0 + 0.1 * ((i * 5) % 8) + jitter(0.05),
                "ssc": ssc + jitter(0.005), "lpc": lpc + jitter(0.004), "gsq": gsq + jitter(0.01),
                "gsq_std": 0.01, "linprobe": 0.3 + gsq / 2 + jitter(0.01), "erank": 0.5 + jitter(0.02),
                "lpc_rho0.1": lpc / 3 + jitter(0.01), "linprobe_C": 10 * gfid, "lip_dec_max": 2.0,
                TARGET: gfid + jitter(0.05), KID: gfid / 1000 + jitter(1e-5),
                "speedup": 7.18 / gfid if variant != "baseline" else 1.0,
            })
    return pd.DataFrame(rows)


def _correlations(results: pd.DataFrame, metrics: list[str], rng: np.random.Generator) -> pd.DataFrame:
    """Spearman/Kendall of variant means with a plain bootstrap over variants (good enough for a fixture)."""
    means = results.groupby("variant", sort=False).mean(numeric_only=True)
    rows = []
    for metric in metrics:
        x, y = means[metric].to_numpy(), means[TARGET].to_numpy()
        idx = [rng.integers(0, len(x), len(x)) for _ in range(200)]
        lo, hi = np.nanpercentile([stats.spearmanr(x[i], y[i]).statistic for i in idx], [2.5, 97.5])
        klo, khi = np.nanpercentile([stats.kendalltau(x[i], y[i]).statistic for i in idx], [2.5, 97.5])
        rho, tau = stats.spearmanr(x, y), stats.kendalltau(x, y)
        expected = -1 if DIRECTIONS[metric] == "higher" else 1
        rows.append({"metric": metric, "n": len(x), "spearman": rho.statistic, "spearman_lo": lo, "spearman_hi": hi,
                     "spearman_p": rho.pvalue, "kendall": tau.statistic, "kendall_lo": klo,
                     "kendall_hi": khi, "kendall_p": tau.pvalue, "direction": DIRECTIONS[metric],
                     "agrees": bool(np.sign(rho.statistic) == expected), "loo_rank_acc": np.nan})
    return pd.DataFrame(rows)


def _png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (32, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _controls(rng: np.random.Generator) -> pd.DataFrame:
    """controls.csv of two baseline runs: gFD worsens under every control, lFD not under a constant decoder."""
    rows = []
    for seed in (0, 1):
        for control, param in (("actual", ""), ("blur", 1.0), ("constant", ""), ("modes", 0.5), ("floor", "")):
            for column in (TARGET, LFD):
                judged = control in ("blur", "constant", "modes")
                rows.append({"variant": "baseline", "seed": seed, "control": control, "param": param, "column": column,
                             "value": rng.uniform(1, 2), "compared_with": 1.0,
                             "worse": (not (column == LFD and control == "constant")) if judged else None})
    return pd.DataFrame(rows)


def make_study(root: Path, *, kind: str = "tune") -> Path:
    """A small but complete study directory: 8 variants x 2 seeds, every optional file present."""
    rng = np.random.default_rng(0)
    results = _results(rng)
    references = pd.DataFrame({"variant": ["teacher:raw_prior", "teacher:refined", "reference:pooled_pixels"],
                               "kind": ["teacher", "teacher", "reference"], "status": "reference",
                               "ssc": [0.77, 0.70, 0.59], "gsq": [1.0, 1.0, 0.15]})
    pd.concat([results.assign(kind="variant"), references]).to_csv(root / "results.csv", index=False)
    _correlations(results, list(DIRECTIONS), rng).to_csv(root / "correlations.csv", index=False)
    design = find_design(ABLATION_VARIANTS)
    factorial_effects(results, design, ["ssc", "lpc", "gsq", TARGET]).to_csv(root / "effects.csv", index=False)
    controls = _controls(rng)
    controls.to_csv(root / "controls.csv", index=False)
    meanings = pd.DataFrame({"column": [TARGET, LFD], "meaning": ["gFD", "lFD"], "direction": "lower",
                             "correlation_target": [True, False], "present": True})
    meanings.merge(verdicts(controls, [TARGET, LFD], {TARGET: "fd", LFD: "lfd"}), on="column").to_csv(
        root / "columns.csv", index=False)
    (root / "study.json").write_text(json.dumps({
        "name": "synthetic_ablation", "target": TARGET, "kind": kind, "code_version": "abc1234",
        "notes": ["evaluation.num_samples: 512 generated images per score, but the held-out set (rFD, floors) 256"],
        "declared_target": LFD, "target_controls": f"{LFD} fails its controls: a constant decoder does not make it "
        f"worse (2 of 2 runs); the study reads {TARGET} instead",
        "config": {"name": "synthetic_ablation", "seeds": [0, 1], "variants": list(ABLATION),
                   "tune": {"directions": ["minimize", "minimize"], "objectives": [TARGET, "lpc"]}},
        "protocols": {TARGET: {"n_samples": 512, "extractor": "effnet_lite0", "sampler": "euler", "steps": 25},
                      "lpc": {"rhos": [0.1, 0.5, 1.0, 2.0], "distance": "pd_effnet_lite0"}},
        "versions": {"torch": "2.14.1", "mlflow": "3.17.2"},
    }))
    conv = [{"variant": v, "seed": s, "step": step, TARGET: gfid * (1 + 2.0 * 100 / step) + rng.normal(0, 0.05),
             KID: gfid / 1000 * (1 + 100 / step)}
            for v, (*_, gfid) in ABLATION.items() for s in (0, 1) for step in (100, 200, 300, 400)]
    pd.DataFrame(conv).to_csv(root / "convergence.csv", index=False)
    speed = results.groupby("variant", sort=False)["speedup"].mean().reset_index()
    speed.loc[speed["variant"] == "scr", "speedup"] = np.nan  # one variant never reaches the baseline
    speed.to_csv(root / "speedups.csv", index=False)
    for i, variant in enumerate(ABLATION):
        for seed in (0, 1):
            run = root / "runs" / variant / f"seed{seed}"
            scale = 1 + i / 4 + seed / 20
            lines = [json.dumps({"step": step, "loss/total": scale / step + 0.1, "loss/rec": 0.8 * scale / step + 0.05,
                                 **({"loss/ssr": 0.5 / step} if "ssr" in variant or variant == "pae" else {}),
                                 "grad_norm/encoder": 1.0 + i / 10, "grad_norm/decoder": 2.0})
                     for step in range(1, 11)]
            (run / "guidance").mkdir(parents=True)
            sweep = [{"cfg_scale": s, TARGET: ABLATION[variant][-1] * (1 + (s - 1.5 - i / 4) ** 2 / 4)} for s in (1.0, 1.5, 2.0, 3.0)]
            (run / "guidance" / "guidance.json").write_text(json.dumps({"rows": sweep}))
            (run / "tokenizer").mkdir(parents=True)
            (run / "tokenizer" / "metrics.jsonl").write_text("\n".join(lines) + "\n{\"step\": 11, \"loss/to")
    for k, variant in enumerate(("baseline", "pae")):
        for j, name in enumerate(("reconstructions", "samples", "latent_pca")):
            _png(RunLayout(root / "runs" / variant / "seed0").image(name), 10 * k + j)
    trials = pd.DataFrame({"number": range(12), "state": ["COMPLETE"] * 10 + ["FAIL", "PRUNED"],
                           "values_0": np.r_[rng.uniform(1.8, 7, 10), np.nan, np.nan],
                           "values_1": np.r_[rng.uniform(0.1, 0.4, 10), np.nan, np.nan],
                           "params_ssr_weight": rng.uniform(0, 1, 12), "params_mcr_weight": rng.uniform(0, 1, 12)})
    trials.to_csv(root / "trials.csv", index=False)
    done = trials.iloc[:10]
    pareto = done[[not ((done.values_0 <= r.values_0) & (done.values_1 <= r.values_1) &
                        ((done.values_0 < r.values_0) | (done.values_1 < r.values_1))).any()
                   for r in done.itertuples()]]
    pareto.to_csv(root / "pareto.csv", index=False)
    pd.DataFrame({"param": ["ssr_weight", "mcr_weight"], "importance": [0.7, 0.3]}).to_csv(
        root / "importances.csv", index=False)
    return root


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    study = make_study(tmp_path_factory.mktemp("study"))
    logged: list[Path] = []
    paths = build_report(study, log_artifact=logged.append, timeout=120)
    return study, paths, logged


def _outputs(path: Path) -> list[dict]:
    return [out for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"
            for out in cell.get("outputs", [])]


def test_full_report_runs_every_section(full_report):
    study, paths, logged = full_report
    assert paths.ipynb == study / "report" / "report.ipynb" and paths.html == study / "report" / "report.html"
    outputs = _outputs(paths.ipynb)
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert not [o for o in outputs if o.get("name") == "stderr"], "warnings leak into the report"
    html = paths.html.read_text()
    for heading in [*HEADINGS, "Objective per trial", "Best trials", "Pareto front", "Parameter importances"]:
        assert f">{heading}<" in html, heading
    assert "Not available" not in html  # every optional file was there
    assert logged == [paths.ipynb, paths.html]


def test_full_report_writes_every_figure(full_report):
    study, paths, _ = full_report
    names = {p.stem for p in paths.figures}
    assert names == {"metric_vs_target", "correlation_forest", "metric_heatmap", "convergence", "speedups",
                     "training_loss", "training_grad_norm", "pictures", "trials", "pareto", "importances", "effects",
                     "controls", "guidance"}
    for path in paths.figures:
        assert path.parent == study / "report" / "figures"
        width, height = Image.open(path).size
        assert width > 300 and height > 200, path


def test_html_has_no_code_but_has_the_summary(full_report):
    _, paths, _ = full_report
    html = paths.html.read_text()
    for code in ("load_study(", "plots.metric_vs_target", "import pandas", "study_dir ="):
        assert code not in html
    # linprobe_C (a probe setting that tracks gFID exactly here) is an extra: never named the best predictor
    assert "<strong>LPC</strong> has the strongest rank correlation with generation score <code>fd_effnet_lite0</code>" in html
    assert html.index(">Summary<") < html.index(">Main results<") < html.index(">Configuration and protocols<")
    # the first sentence: the declared target failed its controls, and what the study reads instead
    first = "<strong>The declared generation score <code>lfd_effnet_lite0</code> fails its controls</strong>"
    assert first in html and html.index(first) < html.index("has the strongest rank correlation")
    assert "so the study reads <code>fd_effnet_lite0</code> instead" in html
    assert "<details><summary><b>Resolved study config</b>" in html
    assert "held-out set (rFD, floors) 256" in html  # study.json's notes: a lowered N is said in the report too
    assert "<img" in html and "data:image/png;base64" in html


def test_minimal_study_renders_not_available_notes(tmp_path):
    results = _results(np.random.default_rng(1)).drop(columns=[TARGET, KID, "speedup"])
    results.to_csv(tmp_path / "results.csv", index=False)
    pd.DataFrame().to_csv(tmp_path / "correlations.csv", index=False)  # what the aggregator writes for "none"
    paths = build_report(tmp_path, timeout=120)
    assert not [o for o in _outputs(paths.ipynb) if o["output_type"] == "error"]
    html = paths.html.read_text()
    for heading in HEADINGS:
        assert f">{heading}<" in html, heading
    for note in ("correlations.csv is missing", "convergence.csv is missing", "speedups.csv is missing",
                 "metrics.jsonl is missing", "Not a tuning study", "No generation score values are available"):
        assert note in html, note
    assert {p.stem for p in paths.figures} == {"metric_heatmap"}


def test_failing_cell_surfaces_its_error(tmp_path):
    make_study(tmp_path, kind="study")
    template = tmp_path / "broken.ipynb"
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("study_dir = None", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("raise ValueError('metric table has no rows for variant pae')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, template)
    with pytest.raises(ReportError, match="ValueError: metric table has no rows for variant pae"):
        build_report(tmp_path, template=template, timeout=60)


def test_load_study_reads_layout(tmp_path):
    study = load_study(make_study(tmp_path))
    assert study.kind == "tune" and study.target == TARGET and study.contrast == RFD and study.kid == KID
    assert study.variants == list(ABLATION)
    assert study.predictors == list(DIRECTIONS)
    assert study.extras == EXTRAS and "lip_dec_max" not in study.metrics  # a spread, not a metric
    assert study.headline == [m for m in DIRECTIONS if m not in EXTRAS]
    assert "gsq_std" not in study.metrics  # a spread, not a metric
    assert study.directions["lpc"] == "lower" and study.directions[TARGET] == "lower"
    assert set(study.images) == {"baseline", "pae"} and set(study.images["pae"]) == {"reconstructions", "samples",
                                                                                       "latent_pca"}
    # 8 variants x 2 seeds x 10 steps; the half-written 11th line of each file is skipped
    assert study.training["step"].max() == 10 and set(study.training["seed"]) == {0, 1}
    assert len(study.training[study.training["key"] == "loss/total"]) == 160
    assert study.objective_directions == ["minimize", "minimize"]
    assert study.objective_names == ["fd_effnet_lite0", "LPC"]


def test_load_study_without_results_says_what_to_do(tmp_path):
    with pytest.raises(ReportError, match="no results.csv .* run the study first"):
        load_study(tmp_path)
    with pytest.raises(ReportError, match="template .* not found"):
        find_template("no_such_template.ipynb")


def test_variants_table_marks_best_by_direction():
    results = pd.DataFrame({"variant": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1],
                            "lpc": [0.2, 0.4, 0.1, 0.1], "ssc": [0.5, 0.7, 0.1, 0.3], "other": [1, 2, 3, 4]})
    table = variants_table(results, ["lpc", "ssc", "other"], {"lpc": "lower", "ssc": "higher"})
    assert list(table.columns) == ["seeds", "lpc ↓", "ssc ↑", "other"]
    assert table.loc["b", "lpc ↓"] == "0.1 ± 0 ★" and table.loc["a", "lpc ↓"] == "0.3 ± 0.141"
    assert table.loc["a", "ssc ↑"].endswith("★") and not table.loc["b", "ssc ↑"].endswith("★")
    assert "★" not in "".join(table["other"])


def test_summarize_names_best_metric_interval_and_winner():
    results = pd.DataFrame({"variant": ["a", "a", "b", "b", "c", "c"], "seed": [0, 1] * 3,
                            "status": ["done"] * 5 + ["failed"], "fid": [2.0, 2.2, 3.0, 3.1, 5.0, np.nan]})
    corr = pd.DataFrame({"metric": ["lpc", "ssc", "rfid"], "n": [8, 8, 8], "spearman": [0.71, -0.5, 0.1],
                         "spearman_lo": [0.12, -0.9, -0.6], "spearman_hi": [0.95, 0.2, 0.7],
                         "agrees": [True, True, False], "direction": ["lower", "higher", "lower"]})
    text = summarize(results, corr, "fid", contrast="rfid")
    assert ("**LPC** has the strongest rank correlation with generation score `fid` "
            "(Spearman 0.71, 95% CI [0.12, 0.95], n=8).") in text
    assert "For contrast, rfid (reconstruction): Spearman 0.10, 95% CI [-0.60, 0.70], n=8." in text
    assert "Variant **a** has the best generation score `fid`: 2.1 ± 0.141 (mean ± std over 2 seeds)" in text
    assert "runner-up **b** 3.05 ± 0.0707; their seed spreads do not overlap" in text
    assert "1 of 6 runs did not finish (failed: 1)" in text
    weak = summarize(results, corr.assign(spearman_lo=[-0.2, -0.9, -0.6]), "fid")
    assert "interval includes 0" in weak


def test_best_trials_follows_direction():
    trials = pd.DataFrame({"number": [0, 1, 2, 3], "state": ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"],
                           "value": [3.0, 1.0, np.nan, 2.0]})
    assert list(best_trials(trials, ["minimize"], k=2)["number"]) == [1, 3]
    assert list(best_trials(trials, ["maximize"], k=2)["number"]) == [0, 3]


def test_fidelity_columns_are_recognised_by_lookup_not_by_their_spelling():
    assert report_columns.is_generation_fd("fd_effnet_lite0") and report_columns.is_generation_fd("fid")
    assert not report_columns.is_generation_fd("fd_effnet_lite0_rec") and not report_columns.is_generation_fd("rfd_effnet_lite0")
    assert report_columns.is_reconstruction_fd("rfd_effnet_lite0") and report_columns.is_reconstruction_fd("rfid")
    assert report_columns.is_generation_kd("kd_effnet_lite0") and not report_columns.is_generation_kd("rkd_effnet_lite0")
    assert not report_columns.is_generation_fd("fd_somewhere_else")  # looks like one, but no extractor names it


def test_columns_that_are_not_scores_get_no_best_mark():
    from analysis.metric_info import direction_of

    assert direction_of("rkd_effnet_lite0") == "lower" and direction_of("lpc_rho0.1") == "lower"
    for column in ("linprobe_C", "gsq_chance", "speedup", "erank"):  # a hyper-parameter, chance, derived, neutral
        assert direction_of(column) is None, column


def test_summary_numbers_for_people_and_small_studies_say_so():
    results = pd.DataFrame({"variant": ["baseline", "pae"], "seed": [0, 0], "fd_effnet_lite0": [8208.4, 31905.0]})
    text = summarize(results, None, "fd_effnet_lite0")
    assert "8,208 (one seed, so no spread)" in text and "e+0" not in text and "±" not in text
    assert "too small for rank correlations" in text


def test_generation_score_keeps_its_column_name():
    for name in ("fd_effnet_lite0", "fid", "rfd_effnet_lite0", "rkd_effnet_lite0"):
        assert plots.metric_label(name) == name
    assert plots.metric_label("lpc") == "LPC"


def test_a_frontier_target_reads_as_a_lower_is_better_distance(tmp_path):
    """The frontier distance is no headline metric, yet as the study's target it is in the main table,
    labelled for what it is, and its lowest (most negative) variant is the best."""
    from analysis.metric_info import direction_of

    target = "frontier_fd_effnet_lite0"
    assert plots.metric_label(target) == "frontier distance (log gFD)" and direction_of(target) == "lower"
    pd.DataFrame({"variant": ["baseline", "baseline_w2", "pae"], "kind": "variant", "seed": 0, "status": "done",
                  "fd_effnet_lite0": [10.0, 6.0, 8.0], target: [0.1, 0.0, -0.3],
                  "correlation_target": target}).to_csv(tmp_path / "results.csv", index=False)
    (tmp_path / "study.json").write_text(json.dumps({"target": target, "gfd": "fd_effnet_lite0"}))
    study = load_study(tmp_path)
    assert study.target == target and target in report_words.main_metrics(study)
    assert "Variant **pae** has the best" in summarize(study.results, None, study.target, directions=study.directions)


def test_reference_rows_and_effects_are_read_apart_from_the_variants(tmp_path):
    pd.DataFrame({"variant": ["baseline", "pae", "teacher:refined", "reference:heldout_real"],
                  "kind": ["variant", "variant", "teacher", "reference"], "seed": [0, 0, None, None],
                  "ssc": [0.4, 0.5, 0.7, None], "noise_fd_x": [None, None, None, 3.0],
                  "correlation_target": "lfd_x"}).to_csv(tmp_path / "results.csv", index=False)
    pd.DataFrame({"response": ["ssc", "ssc", "ssc"], "effect": ["ssr", "mcr", "mcr:ssr"], "order": [1, 1, 2],
                  "estimate": [0.1, -0.02, 0.0], "lo": [0.05, -0.05, float("nan")], "hi": [0.15, 0.01, float("nan")],
                  "agrees_with_paper": ["yes", "unclear", ""], "primary": [True, True, False],
                  "p_holm": [0.01, 0.4, float("nan")]}).to_csv(tmp_path / "effects.csv", index=False)
    study = load_study(tmp_path)
    assert study.variants == ["baseline", "pae"] and "correlation_target" not in study.metrics
    assert list(study.references["variant"]) == ["teacher:refined", "reference:heldout_real"]
    table = report_words.effects_table(study.effects)
    assert list(table.columns) == ["ssr", "mcr", "mcr:ssr"]
    assert table.loc["ssc", "ssr"].endswith("✓") and "[" in table.loc["ssc", "mcr"] and "✓" not in table.loc["ssc", "mcr"]
    assert "[" not in table.loc["ssc", "mcr:ssr"]
    words = report_words.effects_summary(study.effects, None, {"ssr": "ssc", "mcr": "ssc"})
    assert "agrees with the paper, Holm p = 0.01" in words and "no conclusion" in words
    exploratory = study.effects.assign(primary=False, agrees_with_paper="yes")  # a verdict needs a primary test
    assert "✓" not in report_words.effects_table(exploratory).loc["ssc", "ssr"]
    assert "exploratory" in report_words.effects_summary(exploratory, None, {"ssr": "ssc"})


def test_report_digest_follows_every_table_it_reads(tmp_path) -> None:
    """A search's trials, Pareto front and importances feed the report, so a change to any of them
    makes the report stale (publish rebuilds it), as a change to results.csv does."""
    from pae_lab.plan.layout import StudyLayout
    from pae_lab.results.report_inputs import report_inputs_digest

    files = StudyLayout(tmp_path)
    before = report_inputs_digest(files)
    for path in (files.results, files.trials, files.pareto, files.importances):
        path.write_text("x\n1\n")
        after = report_inputs_digest(files)
        assert after != before, path.name
        before = after
