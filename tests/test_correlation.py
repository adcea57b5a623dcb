"""correlate / correlate_file / metric_metric_matrix against scipy and the paper's ablation table."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau, spearmanr

from analysis.correlation import correlate, correlate_file, metric_metric_matrix
from analysis.metric_info import direction_of
from analysis.rank_stats import kendall, loo_rank_accuracy, spearman

# method.md: the 2x2x2 regularizer ablation (SSC, LPC, GSQ, gFID)
PAPER = pd.DataFrame({
    "variant": ["none", "ssr", "mcr", "scr", "ssr+mcr", "ssr+scr", "mcr+scr", "all"],
    "ssc": [0.18, 0.29, 0.23, 0.21, 0.33, 0.31, 0.24, 0.35],
    "lpc": [0.320, 0.296, 0.221, 0.286, 0.187, 0.258, 0.176, 0.170],
    "gsq": [0.19, 0.26, 0.24, 0.39, 0.33, 0.46, 0.45, 0.50],
    "gfid": [7.18, 2.74, 2.53, 2.63, 2.02, 2.10, 2.08, 1.86],
})
FAST = {"n_boot": 400, "n_perm": 400}


def test_point_estimates_match_scipy_and_intervals_contain_them():
    out = correlate(PAPER, "gfid", **FAST).set_index("metric")
    assert list(out.index) == ["ssc", "lpc", "gsq"]
    for m in ("ssc", "lpc", "gsq"):
        row = out.loc[m]
        assert row["n"] == 8
        assert row["spearman"] == pytest.approx(spearmanr(PAPER[m], PAPER["gfid"]).statistic)
        assert row["kendall"] == pytest.approx(kendalltau(PAPER[m], PAPER["gfid"]).statistic)
        assert row["spearman_lo"] <= row["spearman"] <= row["spearman_hi"]
        assert row["kendall_lo"] <= row["kendall"] <= row["kendall_hi"]
        assert 0 < row["spearman_p"] <= 1 and row["agrees"]
    assert out.loc["lpc", "direction"] == "lower" and out.loc["gsq", "direction"] == "higher"
    assert out.loc["lpc", "spearman"] > 0.9 and out.loc["lpc", "spearman_p"] < 0.01


def test_vectorised_statistics_match_scipy_with_ties():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 4, (50, 9)).astype(float), rng.normal(size=(50, 9))
    ref_s = [spearmanr(a, b).statistic for a, b in zip(x, y)]
    ref_k = [kendalltau(a, b).statistic for a, b in zip(x, y)]
    np.testing.assert_allclose(spearman(x, y), ref_s, rtol=1e-12)
    np.testing.assert_allclose(kendall(x, y), ref_k, rtol=1e-12)
    assert np.isnan(spearman(np.ones(4), np.arange(4.0)))


def test_seeds_are_averaged_within_a_variant_before_bootstrapping():
    rng = np.random.default_rng(1)
    seeds = pd.concat([PAPER.assign(seed=s, ssc=PAPER["ssc"] + rng.normal(0, 0.01, 8)) for s in range(3)])
    out = correlate(seeds, "gfid", **FAST).set_index("metric")
    assert list(out.index) == ["ssc", "lpc", "gsq"]  # "seed" is not a metric
    assert out.loc["lpc", "n"] == 8
    means = seeds.groupby("variant")[["ssc", "gfid"]].mean()
    assert out.loc["ssc", "spearman"] == pytest.approx(spearmanr(means["ssc"], means["gfid"]).statistic)
    assert out.attrs["unit"] == "variant" and out.attrs["n_units"] == 8


def test_small_and_constant_inputs_give_nan_with_a_note():
    out = correlate(PAPER.iloc[:2], "gfid", **FAST)
    assert out["spearman"].isna().all() and out["note"].str.contains("need >= 3").all()
    const = correlate(PAPER.assign(flat=1.0), "gfid", ["flat", "lpc"], **FAST).set_index("metric")
    assert math.isnan(const.loc["flat", "spearman"]) and "constant" in const.loc["flat", "note"]
    assert pd.isna(const.loc["flat", "agrees"]) and const.loc["lpc", "spearman"] > 0.9
    three = correlate(PAPER.iloc[:3], "gfid", **FAST).set_index("metric")  # degenerate resamples dropped
    assert three.loc["lpc", "spearman_lo"] <= three.loc["lpc", "spearman"] <= three.loc["lpc", "spearman_hi"]
    assert "degenerate" in three.loc["lpc", "note"]


def test_agrees_flags_a_metric_moving_the_wrong_way():
    wrong = PAPER.assign(psnr=PAPER["gfid"] * 2 + 20)  # higher PSNR with worse gFID
    out = correlate(wrong, "gfid", ["psnr"], **FAST)
    assert out.loc[0, "direction"] == "higher" and not out.loc[0, "agrees"]
    custom = correlate(wrong, "gfid", ["psnr"], directions={"psnr": "lower"}, **FAST)
    assert custom.loc[0, "agrees"]


def test_loo_rank_accuracy_known_answers():
    x = np.arange(6.0)
    assert loo_rank_accuracy(x, 3 * x + 1) == 1.0
    assert loo_rank_accuracy(x, -x) == 1.0  # the fit learns the sign
    assert loo_rank_accuracy(np.ones(6), x) == 0.5  # a constant metric ranks nothing
    rng = np.random.default_rng(0)
    chance = [loo_rank_accuracy(rng.normal(size=8), rng.normal(size=8)) for _ in range(200)]
    assert np.mean(chance) == pytest.approx(0.5, abs=0.05)
    # one swapped pair out of 15: the learned direction never flips, so accuracy = concordance
    assert loo_rank_accuracy(x, np.array([0.0, 2, 1, 3, 4, 5])) == pytest.approx(1 - 2 * 1 / 30)
    assert correlate(PAPER, "gfid", **FAST).set_index("metric").loc["lpc", "loo_rank_acc"] > 0.8


def test_direction_lookup():
    assert direction_of("eval/LPC") == "lower"
    assert direction_of("lpc_rho0.1") == "lower" and direction_of("lip_dec_max") == "lower"
    assert direction_of("something_else") is None


def test_correlate_file_errors_name_the_file_and_the_columns(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results table at .*missing.csv"):
        correlate_file(tmp_path / "missing.csv", "gfid")
    path = tmp_path / "runs.csv"
    PAPER.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"'fid' not found in .*runs.csv; columns: variant, ssc, lpc, gsq, gfid"):
        correlate_file(path, "fid")
    with pytest.raises(ValueError, match=r"runs.csv: metric columns \['ssim'\] not found"):
        correlate_file(path, "gfid", metrics=["ssim"])
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="empty.csv is empty"):
        correlate_file(tmp_path / "empty.csv", "gfid")
    with pytest.raises(ValueError, match="unit column 'run' not found"):
        correlate_file(path, "gfid", unit="run")


def test_correlate_file_writes_the_table(tmp_path):
    path, out = tmp_path / "runs.csv", tmp_path / "sub" / "corr.csv"
    PAPER.drop(columns="variant").to_csv(path, index=False)  # no variant column: each row is a unit
    result = correlate_file(path, "gfid", out=out, **FAST)
    written = pd.read_csv(out)
    assert list(written["metric"]) == ["ssc", "lpc", "gsq"]
    assert written["spearman"].to_numpy() == pytest.approx(result["spearman"].to_numpy())


def test_metric_metric_matrix_is_spearman():
    mat = metric_metric_matrix(PAPER, ["ssc", "lpc", "gsq"])
    assert mat.loc["ssc", "lpc"] == pytest.approx(spearmanr(PAPER["ssc"], PAPER["lpc"]).statistic)
    assert np.allclose(np.diag(mat), 1.0) and mat.equals(mat.T)


def test_cli_correlate_defaults_to_the_study_correlation_target(tmp_path):
    """Without --target, `pae-lab correlate` reads what the study chose (results.csv's correlation_target)."""
    from typer.testing import CliRunner

    from pae_lab.cli import app

    table = PAPER.rename(columns={"gfid": "lfd_x"}).assign(fd_x=PAPER["gfid"][::-1].to_numpy(), correlation_target="lfd_x")
    table.to_csv(tmp_path / "results.csv", index=False)
    out = tmp_path / "corr.csv"
    result = CliRunner().invoke(app, ["correlate", str(tmp_path / "results.csv"), "--out", str(out), "--n-boot", "50"])
    assert result.exit_code == 0, result.output
    metrics = set(pd.read_csv(out)["metric"])
    assert "lfd_x" not in metrics and {"fd_x", "ssc"} <= metrics  # lfd_x is the target, the others its predictors


def test_partial_spearman_removes_a_metric_that_tracks_the_target_only_through_psnr():
    """m follows PSNR and the target follows PSNR: raw rho is high, rho at fixed PSNR about 0;
    a metric with its own effect keeps its partial correlation."""
    from analysis.rank_stats import partial_spearman

    rng = np.random.default_rng(0)
    psnr = rng.normal(25, 2, 40)
    own = rng.normal(0, 1, 40)
    table = pd.DataFrame({"variant": [f"v{i}" for i in range(40)], "psnr": psnr, "target": psnr + 0.8 * own + rng.normal(0, 0.3, 40),
                          "m": psnr + rng.normal(0, 0.3, 40), "k": own})
    out = correlate(table, "target", ["m", "k", "psnr"], partial="psnr", n_boot=300, n_perm=300).set_index("metric")
    assert out.loc["m", "spearman"] > 0.6 and abs(out.loc["m", "partial_spearman_psnr"]) < 0.3
    assert out.loc["k", "partial_spearman_psnr"] > 0.6 and out.loc["k", "partial_spearman_psnr_p"] < 0.01
    assert out.loc["k", "partial_spearman_psnr_lo"] < out.loc["k", "partial_spearman_psnr"] < out.loc["k", "partial_spearman_psnr_hi"]
    assert np.isnan(out.loc["psnr", "partial_spearman_psnr"]) and list(out.columns)[-1] == "note"
    # vectorised over resamples like spearman
    x = rng.normal(size=(5, 12))
    assert partial_spearman(x, x + 0.1, rng.normal(size=(5, 12))).shape == (5,)


def test_partial_spearman_keeps_its_level_when_both_track_the_covariate() -> None:
    """x and y both follow z (as metrics and gFD both follow PSNR) but not each other given z: over
    400 studies of 10 variants the test rejects at about its 5% level and the 95% interval covers 0
    about 95% of the time (a bootstrap over units and x-only shuffling gave 12% and 55%)."""
    from analysis.correlation import _partial_one

    rng = np.random.default_rng(3)
    rejected = covered = 0
    for _ in range(400):
        z = rng.normal(size=10)
        out = _partial_one(z + 0.5 * rng.normal(size=10), z + 0.5 * rng.normal(size=10), z, "psnr", confidence=0.95)
        rejected += out["partial_spearman_psnr_p"] < 0.05
        covered += out["partial_spearman_psnr_lo"] <= 0 <= out["partial_spearman_psnr_hi"]
    assert rejected / 400 <= 0.08 and covered / 400 >= 0.91, (rejected, covered)
