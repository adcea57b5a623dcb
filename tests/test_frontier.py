"""The reconstruction-generation frontier against synthetic runs with known answers."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from analysis.frontier import FrontierError, fit_frontier, run_distances, variant_distances

GFD = "fd_effnet_lite0"
BASELINES = {"baseline_w2": 18.0, "baseline_w4": 21.0, "baseline": 24.0}  # PSNR per width


def line(psnr: float) -> float:
    """The true frontier: a wider, sharper baseline reconstructs better and generates worse."""
    return 2.0 + 0.25 * psnr


def runs(offsets: dict[str, tuple[float, float]], noise: float = 0.05, seeds: int = 3, seed: int = 0) -> pd.DataFrame:
    """Three seeds of every baseline on the frontier, and of each variant at (PSNR, offset from the frontier)."""
    rng = np.random.default_rng(seed)
    rows = []
    for variant, (psnr, offset) in {**{b: (p, 0.0) for b, p in BASELINES.items()}, **offsets}.items():
        for s in range(seeds):
            x = psnr + 0.3 * rng.standard_normal()
            rows.append({"variant": variant, "seed": s, "status": "done", "psnr": x,
                         GFD: float(np.exp(line(x) + offset + noise * rng.standard_normal()))})
    return pd.DataFrame(rows)


def test_a_variant_on_the_frontier_at_lower_psnr_is_no_better_than_a_baseline_of_equal_reconstruction():
    table = runs({"mcr": (19.5, 0.0)})
    fit = fit_frontier(table, BASELINES, GFD)
    assert fit.slope == pytest.approx(0.25, abs=0.05) and fit.df == 9 - 2
    out = variant_distances(table, fit, GFD).set_index("variant")
    mcr = out.loc["mcr"]
    assert mcr["gfd"] < out.loc["baseline", "gfd"] / 2  # its raw gFD looks far better than the baseline's
    assert abs(mcr["distance"]) < 0.1 and mcr["lo"] < 0 < mcr["hi"]  # but not at equal reconstruction
    assert not mcr["extrapolated"] and not mcr["baseline"] and out.loc["baseline", "baseline"]


def test_a_variant_below_the_frontier_has_a_negative_distance_whose_interval_excludes_zero():
    table = runs({"pae": (20.0, -0.5)})
    fit = fit_frontier(table, BASELINES, GFD)
    pae = variant_distances(table, fit, GFD).set_index("variant").loc["pae"]
    assert pae["distance"] == pytest.approx(-0.5, abs=0.1) and pae["hi"] < 0
    per_run = run_distances(table[table["variant"] == "pae"], fit, GFD)
    assert per_run.mean() == pytest.approx(pae["distance"]) and len(per_run) == 3


def test_the_interval_carries_the_frontiers_own_uncertainty_and_flags_extrapolation():
    """Far outside the baselines' PSNR the line's prediction variance widens the interval (and says so)."""
    table = runs({"near": (21.0, 0.0), "far": (30.0, 0.0)}, noise=0.1, seed=3)
    fit = fit_frontier(table, BASELINES, GFD)
    out = variant_distances(table, fit, GFD).set_index("variant")
    assert out.loc["far", "extrapolated"] and "extrapolated" in out.loc["far", "note"]
    assert not out.loc["near", "extrapolated"]
    line_var = fit.residual_var * fit.leverage(out.loc["far", "psnr"])
    assert out.loc["far", "se"] ** 2 >= line_var > fit.residual_var * fit.leverage(out.loc["near", "psnr"])
    assert 2 <= out.loc["far", "df"] <= 2 + fit.df  # Welch: between the seeds' df and the sum


def test_the_baselines_interval_at_three_seeds_covers_zero_about_95_percent_of_the_time():
    """Coverage of a variant truly on the frontier, over many synthetic studies (t with the right df)."""
    hits = [variant_distances(t := runs({"v": (20.0, 0.0)}, noise=0.2, seed=k), fit_frontier(t, BASELINES, GFD), GFD)
            .set_index("variant").loc["v"] for k in range(300)]
    coverage = np.mean([h["lo"] <= 0 <= h["hi"] for h in hits])
    assert 0.91 <= coverage <= 0.99


def test_one_width_draws_no_frontier_and_says_why():
    table = runs({}).query("variant == 'baseline'")
    with pytest.raises(FrontierError, match="1 unregularized baseline width"):
        fit_frontier(table, BASELINES, GFD)


def test_aggregation_reads_gfd_when_the_study_has_no_width_arm():
    """The default target is the frontier distance; without baselines at two widths the study reads gFD
    and says why in one line (study.json's notes, columns.csv's note)."""
    from pae_lab.config.schema import StudyConfig
    from pae_lab.results.aggregate import accepted_target, frontier_fit

    study = StudyConfig.model_validate({"name": "x", "evaluation": {"extractor": "effnet-lite0"}})
    cols = study.evaluation.columns()
    assert study.evaluation.correlation_target == "frontier" and cols.targets()["frontier"] == cols.frontier
    own = study.model_dump(mode="json")["tokenizer"]

    def spec(variant: str, channels: int = own["latent_channels"], *regularizers: str) -> SimpleNamespace:
        return SimpleNamespace(variant=variant, regularizers={r: {} for r in regularizers},
                               config={"tokenizer": {**own, "latent_channels": channels}})

    fit, gap = frontier_fit(study, [spec("baseline"), spec("ssr", 2, "ssr")], runs({}))
    assert fit is None and gap.startswith("no width arm") and "\n" not in gap
    gfd_passed = pd.DataFrame({"column": [cols.fd, cols.frontier], "passes_controls": [True, True], "failed_controls": ["", ""]})
    target, note = accepted_target(study, gfd_passed, gap)
    assert target == cols.fd and note.startswith(f"{cols.fd} in place of the frontier distance") and "\n" not in note
    fit, gap = frontier_fit(study, [spec("baseline_w2", 2), spec("baseline_w4", 4), spec("baseline")], runs({}))
    assert fit is not None and gap == ""
    assert accepted_target(study, gfd_passed, gap) == (cols.frontier, f"{cols.frontier} is gFD at equal reconstruction: "
                                                                      f"{cols.frontier} passed its controls")
