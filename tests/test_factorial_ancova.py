"""Effects at equal reconstruction: a PSNR confound is removed, a true effect is recovered, the
primary family alone is Holm-adjusted and carries verdicts."""
import numpy as np
import pandas as pd
import pytest

from analysis.ancova import contrast, fit
from analysis.factorial import MAX_PRIMARY, factorial_effects, find_design, parse_test
from analysis.paper import ABLATION_VARIANTS

FD = "fd_effnet_lite0"


def confounded(seed: int = 0, seeds: int = 3) -> pd.DataFrame:
    """log FD = 5 - 0.3 scr + 0.2 (psnr - 20) + seed offset + noise; mcr moves FD only through PSNR
    (-4 dB); the cells' noise differs 10x (mcr cells are noisy)."""
    rng = np.random.default_rng(seed)
    offsets = rng.normal(0, 0.3, seeds)
    rows = []
    for variant, on in ABLATION_VARIANTS.items():
        for s in range(seeds):
            psnr = 24 - 4 * ("mcr" in on) + rng.normal(0, 1.0)
            sd = 0.1 if "mcr" in on else 0.01
            log_fd = 5 - 0.3 * ("scr" in on) + 0.2 * (psnr - 20) + offsets[s] + rng.normal(0, sd)
            rows.append({"variant": variant, "seed": s, "psnr": psnr, FD: np.exp(log_fd)})
    return pd.DataFrame(rows)


def test_a_pure_psnr_confound_vanishes_and_a_true_effect_is_recovered():
    design = find_design(ABLATION_VARIANTS)
    hits = 0
    for seed in range(20):
        table = confounded(seed)
        raw = factorial_effects(table, design, [FD]).set_index("effect")
        adj = factorial_effects(table, design, [FD], covariates={FD: "psnr"}).set_index("effect")
        assert raw.loc["mcr", "estimate"] < -0.5  # unadjusted, mcr "improves" FD by 4 dB of lost PSNR
        assert adj.loc["mcr", "scale"] == "log" and adj.loc["mcr", "adjusted_for"] == "psnr"
        assert adj.loc["mcr", "blocked_on"] == "seed" and adj.loc["mcr", "df"] <= 24 - 8 - 2 - 1
        hits += adj.loc["mcr", "lo"] <= 0 <= adj.loc["mcr", "hi"] and adj.loc["scr", "lo"] <= -0.3 <= adj.loc["scr", "hi"]
        assert abs(adj.loc["mcr", "estimate"]) < 0.35
    assert hits >= 17  # 95% intervals: both cover their true value in about 19 of 20 draws


def test_welch_type_interval_is_wider_where_one_cell_is_noisy():
    rng = np.random.default_rng(0)
    cells = ["a"] * 3 + ["b"] * 3
    y = np.r_[rng.normal(0, 0.01, 3), rng.normal(1, 1.0, 3)]
    out = contrast(fit(y, cells), {"a": -1.0, "b": 1.0})
    assert out["method"] in ("pooled t", "Welch-type t") and out["df"] <= 4
    assert out["lo"] < out["estimate"] < out["hi"]


def test_only_the_primary_family_is_holm_adjusted_and_judged_against_the_paper():
    design = find_design(ABLATION_VARIANTS)
    table = confounded(1)
    primary = {(FD, "scr"), (FD, "mcr")}
    paper = {FD: {"scr": -1.0, "mcr": -1.0, "ssr": -1.0}}
    out = factorial_effects(table, design, [FD], covariates={FD: "psnr"}, primary=primary, paper=paper).set_index("effect")
    assert out["primary"].sum() == 2 and out.loc["ssr", "agrees_with_paper"] == ""  # exploratory: no verdict
    assert np.isnan(out.loc["ssr", "p_holm"]) and out.loc["scr", "p_holm"] >= out.loc["scr", "p"]
    assert out.loc["scr", "agrees_with_paper"] == ("yes" if out.loc["scr", "p_holm"] < 0.05 else "unclear")
    with pytest.raises(ValueError, match="at most 6"):
        factorial_effects(table, design, [FD], primary={(FD, e) for e in design.effects[:MAX_PRIMARY + 1]} |
                          {(f"x{i}", "ssr") for i in range(MAX_PRIMARY + 1)})


def test_tests_parse_and_bad_ones_name_the_value():
    assert parse_test("gfd ~ ssr") == ("gfd", "ssr") and parse_test("ssc~ssr:mcr") == ("ssc", "mcr:ssr")
    with pytest.raises(ValueError, match="'gfd ssr' is not a test"):
        parse_test("gfd ssr")


def test_the_study_file_declares_at_most_six_primary_tests(tmp_path):
    from pae_lab.config.loading import StudyError, parse_study

    path = tmp_path / "study.yaml"
    ok = parse_study({"name": "x", "analysis": {"primary": ["gfd ~ ssr", "ssc ~ ssr"]}}, path)
    assert ok.analysis.primary == ["gfd ~ ssr", "ssc ~ ssr"]
    with pytest.raises(StudyError, match=r"study.yaml: analysis.primary: 7 tests, but the primary family holds at most 6"):
        parse_study({"name": "x", "analysis": {"primary": [f"gfd ~ f{i}" for i in range(7)]}}, path)
    with pytest.raises(StudyError, match=r"analysis.primary: 'gfd ssr' is not a test"):
        parse_study({"name": "x", "analysis": {"primary": ["gfd ssr"]}}, path)


def test_aggregate_applies_the_papers_sign_only_to_what_the_paper_measured():
    """gFD gets the paper's gFID sign; lFD, KD and the flow loss get none; effects of generation
    scores are at equal PSNR; the declared family is the primary one."""
    from types import SimpleNamespace

    from pae_lab.config.schema import StudyConfig
    from pae_lab.results.aggregate import factorial_tables

    study = StudyConfig.model_validate({"name": "x", "evaluation": {"extractor": "effnet-lite0"},
                                        "analysis": {"primary": ["gfd ~ mcr", "lfd ~ mcr"]}})
    cols = study.evaluation.columns()
    runs = [SimpleNamespace(variant=v, regularizers={r: {} for r in on}, config={}) for v, on in ABLATION_VARIANTS.items()]
    table = confounded(2)
    for c in (cols.lfd, cols.kd, cols.val_loss):
        table[c] = table[FD] * 1.1
    table = table.rename(columns={FD: cols.fd})
    effects, _ = factorial_tables(study, runs, table, cols.lfd, ["psnr"])
    by = effects.set_index(["response", "effect"])
    assert by.loc[(cols.fd, "mcr"), "paper"] < 0 and by[by.index.get_level_values(0) != cols.fd]["paper"].isna().all()
    assert by.loc[(cols.lfd, "mcr"), "agrees_with_paper"] == "" and by.loc[(cols.kd, "mcr"), "agrees_with_paper"] == ""
    assert set(effects.loc[effects["primary"], "response"]) == {cols.fd, cols.lfd} and effects["primary"].sum() == 2
    assert (by.loc[cols.fd, "adjusted_for"] == "psnr").all() and (by.loc["psnr", "adjusted_for"] == "").all()
    assert by.loc[(cols.val_loss, "mcr"), "scale"] == "raw" and by.loc[(cols.kd, "mcr"), "scale"] == "log"
