"""Factorial effects, stratified correlations and p-value adjustments against known answers."""
import itertools
import math

import numpy as np
import pandas as pd
import pytest

from analysis.correlation import correlate
from analysis.factorial import design_gap, factorial_effects, find_design, paper_effects, stratified_correlations
from analysis.multiplicity import adjust, bh, holm
from analysis.paper import ABLATION, ABLATION_VARIANTS

FACTORS = ("mcr", "scr", "ssr")


def synthetic(noise: float, seeds: int = 3, seed: int = 0) -> pd.DataFrame:
    """y = 10 + 2 ssr - 1 mcr + 3 ssr*mcr (+ noise), x in {0, 1}; scr does nothing."""
    rng = np.random.default_rng(seed)
    rows = []
    for variant, on in ABLATION_VARIANTS.items():
        x = {f: float(f in on) for f in FACTORS}
        mean = 10 + 2 * x["ssr"] - 1 * x["mcr"] + 3 * x["ssr"] * x["mcr"]
        rows += [{"variant": variant, "seed": s, "y": mean + noise * rng.standard_normal(), "z": rng.standard_normal()}
                 for s in range(seeds)]
    return pd.DataFrame(rows)


def test_design_is_found_only_for_a_full_factorial():
    design = find_design(ABLATION_VARIANTS)
    assert design.factors == FACTORS and len(design.effects) == 7
    assert find_design({k: v for k, v in ABLATION_VARIANTS.items() if k != "pae"}) is None
    assert find_design({"baseline": (), "pae": ("ssr", "mcr", "scr")}) is None
    assert find_design({"baseline": ()}) is None


def test_the_width_arm_is_left_out_of_the_design_and_a_study_without_one_says_why():
    """Unregularized baselines at other latent widths repeat the all-off cell: named as the arm, they are
    left out and the 2x2x2 is still read; unnamed, the study gets one line saying why there is no design."""
    with_arm = {**ABLATION_VARIANTS, "baseline_w2": (), "baseline_w4": ()}
    design = find_design(with_arm, arm=("baseline_w2", "baseline_w4"))
    assert design is not None and design.factors == FACTORS and set(design.codes) == set(ABLATION_VARIANTS)
    assert design_gap(with_arm, arm=("baseline_w2", "baseline_w4")) == ""
    assert find_design(with_arm) is None
    gap = design_gap(with_arm)
    assert "baseline = baseline_w2 = baseline_w4" in gap and "\n" not in gap
    assert "7 of the 8 on/off combinations" in design_gap({k: v for k, v in ABLATION_VARIANTS.items() if k != "pae"})
    assert design_gap({"baseline": (), "baseline_w2": ()}).startswith("no on/off design: no variant switches")


def test_known_effects_and_interaction_are_recovered_exactly_without_noise():
    design = find_design(ABLATION_VARIANTS)
    out = factorial_effects(synthetic(0.0), design, ["y"]).set_index("effect")
    # main effect = mean(on) - mean(off): ssr 2 + 3/2, mcr -1 + 3/2; Yates interaction = 3/2
    assert out.loc["ssr", "estimate"] == pytest.approx(3.5)
    assert out.loc["mcr", "estimate"] == pytest.approx(0.5)
    assert out.loc["mcr:ssr", "estimate"] == pytest.approx(1.5)
    for e in ("scr", "mcr:scr", "scr:ssr", "mcr:scr:ssr"):
        assert out.loc[e, "estimate"] == pytest.approx(0.0, abs=1e-12)


def test_noisy_effects_have_intervals_over_seeds_that_find_the_interaction():
    design = find_design(ABLATION_VARIANTS)
    out = factorial_effects(synthetic(0.3, seeds=4), design, ["y"]).set_index("effect")
    inter = out.loc["mcr:ssr"]
    assert inter["lo"] > 0 and abs(inter["estimate"] - 1.5) < 0.4 and inter["p"] < 0.01
    # blocked on seed: 32 runs - 8 cells - 3 seed offsets; Welch-type df can only be smaller
    assert out.loc["ssr", "lo"] > 0 and out.loc["ssr", "df"] <= 32 - 8 - 3 and out.loc["ssr", "n_runs"] == 32
    assert (out["lo"] <= out["estimate"]).all() and (out["estimate"] <= out["hi"]).all()
    assert out["p_holm"].isna().all() and (out["p_bh"] >= out["p"] - 1e-15).all()  # no primary family: no Holm
    # "agrees with the paper" only for primary tests, from their Holm-adjusted p
    paper = {"y": {"ssr": 1.0, "mcr:ssr": -1.0, "scr": 1.0}}
    primary = {("y", "ssr"), ("y", "mcr:ssr"), ("y", "scr")}
    agree = factorial_effects(synthetic(0.3, seeds=4), design, ["y"], paper=paper, primary=primary).set_index("effect")
    assert agree.loc["ssr", "agrees_with_paper"] == "yes"
    assert agree.loc["mcr:ssr", "agrees_with_paper"] == "no"
    assert agree.loc["mcr", "agrees_with_paper"] == ""
    scr = agree.loc["scr"]
    assert scr["agrees_with_paper"] == ("unclear" if scr["p_holm"] >= 0.05 else ("yes" if scr["estimate"] > 0 else "no"))


def test_one_seed_gives_estimates_without_intervals():
    design = find_design(ABLATION_VARIANTS)
    out = factorial_effects(synthetic(0.1, seeds=1), design, ["y"])
    assert out["estimate"].notna().all() and out["lo"].isna().all() and out["p"].isna().all()
    assert out["note"].str.contains("one run per variant").all()


def test_paper_effects_of_the_published_table():
    design = find_design(ABLATION_VARIANTS)
    eff = paper_effects(ABLATION, design, ["ssc", "lpc", "gsq", "gfid"])
    assert eff["ssc"]["ssr"] == pytest.approx((0.29 + 0.33 + 0.31 + 0.35) / 4 - (0.18 + 0.23 + 0.21 + 0.24) / 4)
    assert eff["lpc"]["mcr"] < 0 and eff["gsq"]["scr"] > 0 and eff["gfid"]["ssr"] < 0


def test_holm_and_bh_match_a_hand_computation():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # Holm: sorted 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.02 0.03 0.06 0.06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: p*m/rank = 0.02 0.02 0.04 0.04 (sorted), running min from the top
    assert bh(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert holm(np.array([0.5, 0.9])) == pytest.approx([1.0, 1.0])  # 0.5*2 capped at 1; monotone
    out = adjust(np.array([0.01, np.nan, 0.02]), "holm")
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    with pytest.raises(ValueError, match="unknown p-value adjustment 'bonf'; known: holm, bh"):
        adjust(p, "bonf")


def test_correlations_carry_adjusted_p_values():
    out = correlate(ABLATION, "gfid", n_boot=200, n_perm=400)
    assert np.allclose(out["spearman_p_holm"], holm(out["spearman_p"].to_numpy()))
    assert np.allclose(out["kendall_p_bh"], bh(out["kendall_p"].to_numpy()))


def test_correlations_within_strata_remove_a_factor_that_drives_both():
    """z (noise) correlates with y only through the factor ssr when ssr also shifts z."""
    table = synthetic(0.05, seeds=3)
    table["w"] = table["y"] + 0.0  # identical within strata too
    table["z"] = table["z"] * 0.01 + 5 * table["variant"].map(lambda v: "ssr" in ABLATION_VARIANTS[v])
    design = find_design(ABLATION_VARIANTS)
    out = stratified_correlations(table, design, "y", ["z", "w"], n_boot=200, n_perm=400)
    assert set(out["stratum"]) == {f"{f}={lvl}" for f, lvl in itertools.product(FACTORS, ("off", "on"))}
    within = out[(out["stratum"].str.startswith("ssr")) & (out["metric"] == "z")]
    pooled = correlate(table, "y", ["z"], unit=None, n_boot=200, n_perm=400)
    assert pooled["spearman"].iloc[0] > 0.7 and (within["spearman"].abs() < 0.7).all()
    assert np.allclose(out.loc[out["metric"] == "w", "spearman"], 1.0)
    assert np.allclose(out["spearman_p_holm"], holm(out["spearman_p"].to_numpy()))


def test_aggregate_writes_effects_for_an_on_off_design_with_the_papers_signs():
    """factorial_tables: the variants' regularizers form the design; the paper's effects come along."""
    from types import SimpleNamespace

    from pae_lab.results.aggregate import factorial_tables
    from pae_lab.config.schema import StudyConfig

    study = StudyConfig.model_validate({"name": "x", "evaluation": {"extractor": "effnet-lite0"}})
    runs = [SimpleNamespace(variant=v, regularizers={r: {} for r in on}, config={}) for v, on in ABLATION_VARIANTS.items()]
    table = synthetic(0.05, seeds=3).rename(columns={"y": "ssc", "z": "lfd_effnet_lite0"})
    effects, strata = factorial_tables(study, runs, table, "lfd_effnet_lite0", ["ssc"])
    row = effects.set_index(["response", "effect"]).loc[("ssc", "ssr")]
    assert row["estimate"] == pytest.approx(3.5, abs=0.2) and row["agrees_with_paper"] == "yes"
    assert row["paper"] == pytest.approx(paper_effects(ABLATION, find_design(ABLATION_VARIANTS), ["ssc"])["ssc"]["ssr"])
    assert set(effects["response"]) == {"ssc", "lfd_effnet_lite0"} and not strata.empty
    # not a design: no effects
    assert factorial_tables(study, runs[:5], table, "lfd_effnet_lite0", ["ssc"])[0].empty
