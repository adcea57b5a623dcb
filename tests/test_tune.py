"""`pae-lab tune`: the search block, ask/tell over the real pipeline, resume, failures, pruning, outputs."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from rich.console import Console

from conftest import TINY
from pae_lab.plan.runs import run_stage_names
from pae_lab.config.schema import StudyConfig
from pae_lab.config.loading import StudyError
from pae_lab.plan.preflight import load_study
from pae_lab.fsutil import read_json
from pae_lab.tuning.driver import TuneDriver, dashboard_command
from pae_lab.tuning.algorithms import PRUNERS
from pae_lab.tuning.apply import TrialConfigError, check_search, default_values, trial_study
from pae_lab.tuning.objectives import read_intermediate
from pae_lab.tuning.outputs import write_search_outputs
from pae_lab.config.search import SearchConfig

QUIET = Console(quiet=True)
WEIGHTS = {"regularizers.ssr.weight": {"type": "float", "low": 0.0, "high": 1.0},
           "regularizers.scr.weight": {"type": "log_float", "low": 0.1, "high": 2.0}}


class AlwaysPrune(optuna.pruners.BasePruner):
    """Prunes at the first intermediate value: pruning must stop a running trial."""

    def prune(self, study, trial) -> bool:
        return True


def tiny(tmp: Path, search: dict, **overrides) -> dict:
    cfg = copy.deepcopy(TINY)
    cfg["generator"]["eval_at"] = []  # one gFID evaluation per run
    cfg["metrics"] = {"names": ["psnr", "lpc", "ssc"], "n_images": 32}
    cfg["evaluation"]["num_samples"] = 32
    cfg.update(name="tune", output_dir=str(tmp / "study"), search=search, **overrides)
    return cfg


def write_study(tmp: Path, cfg: dict) -> Path:
    path = tmp / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def reuse_shared(source: StudyConfig, target: StudyConfig) -> None:
    """Copy the content-addressed shared stages (data, prior, refine) of an earlier study: same hashes."""
    shutil.copytree(source.study_dir() / "shared", target.study_dir() / "shared", dirs_exist_ok=True)


# ---------------------------------------------------------------- the search block
def test_mapping_and_list_forms_parse_the_same() -> None:
    as_map = SearchConfig.model_validate({"params": WEIGHTS})
    as_list = SearchConfig.model_validate({"params": [{"path": p, **s} for p, s in WEIGHTS.items()]})
    assert as_map == as_list
    assert list(as_map.by_label()) == ["ssr.weight", "scr.weight"]
    assert as_map.directions == ["minimize"] and as_map.objective_names == ["gfid"]
    assert as_map.sampler.name == "tpe" and as_map.pruner.name == "none" and as_map.enqueue_defaults


@pytest.mark.parametrize("search, expect", [
    ({"params": {"regularizers.ssr.weight": {"low": 1.0, "high": 0.5}}},
     "search.params.regularizers.ssr.weight: parameter 'regularizers.ssr.weight' (float): low (1) must be below high (0.5)"),
    ({"params": {"regularizers.ssr.weight": {"type": "log_float", "low": 0.0, "high": 1.0}}},
     "a log scale needs low > 0"),
    ({"params": {"regularizers.mcr.mode": {"type": "categorical"}}}, "needs a non-empty `choices` list"),
    ({"params": {"regularizers.mcr.medium_deg": {"type": "int", "low": 20.5, "high": 60}}}, "must be whole numbers"),
    ({"params": {"regularizers.ssr": {"low": 0, "high": 1}}}, "regularizers.<regularizer>.<param>"),
    ({"params": {"launcher.max_parallel": {"type": "int", "low": 1, "high": 4}}}, "'launcher' organises the study"),
    ({"params": {"regularizers.ssr.weight": {"low": 0, "high": 1, "lo": 3}}},
     "search.params.regularizers.ssr.weight.lo: Extra inputs are not permitted"),
    ({"params": [{"type": "float", "low": 0, "high": 1}]}, "params[0] needs a `path`"),
    ({"params": {}}, "search.params: Dictionary should have at least 1 item"),
    ({"params": WEIGHTS, "sampler": {"name": "cmaes"}},
     "search.sampler.name: unknown optuna sampler 'cmaes'; registered: nsga2, random, tpe"),
    ({"params": WEIGHTS, "objectives": [{"metric": "gfid"}, {"metric": "rfid"}], "pruner": {"name": "median"}},
     "pruner 'median' needs a single objective"),
    ({"params": WEIGHTS, "objectives": [{"metric": "lpc", "terms": {"lpc": 1}}]}, "either `metric`"),
    ({"params": WEIGHTS, "objectives": [{"metric": "lpc", "direction": "down"}]},
     "search.objectives[0].direction: Input should be 'minimize' or 'maximize' (got 'down')"),
    ({"params": WEIGHTS, "n_trials": 0}, "search.n_trials: Input should be greater than or equal to 1 (got 0)"),
])
def test_bad_search_blocks_give_one_line_with_the_key_path(tmp_path: Path, search: dict, expect: str) -> None:
    path = write_study(tmp_path, {"name": "bad", "search": search})
    with pytest.raises(StudyError) as err:
        load_study(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and expect in message and "\n" not in message, message


@pytest.mark.parametrize("params, base, expect", [
    ({"regularizers.nope.weight": {"low": 0, "high": 1}}, "pae",
     "search.params.regularizers.nope.weight: unknown regularizer 'nope'"),
    ({"regularizers.ssr.sharpness": {"low": 0, "high": 1}}, "pae", "regularizer 'ssr' has no parameter 'sharpness'"),
    ({"training.lrr": {"type": "log_float", "low": 1e-4, "high": 1e-2}}, "pae",
     "search.params.training.lrr: the study has no key 'training.lrr'"),
    ({"regularizers.ssr.weight": {"low": 0.5, "high": 1.0}}, "pae",
     "the base value 0.2 lies outside the searched range ([0.5, 1]); widen the range or set search.enqueue_defaults: false"),
    ({"regularizers.mcr.mode": {"type": "categorical", "choices": ["cascade", "sideways"]}}, "pae", None),
    ({"regularizers.ssr.weight": {"low": 0, "high": 1}}, "paee", "search.base_variant: unknown variant 'paee'"),
])
def test_cross_checks_name_the_search_key(tmp_path: Path, params: dict, base: str, expect: str | None) -> None:
    path = write_study(tmp_path, {"name": "bad", "search": {"params": params, "base_variant": base}})
    study = load_study(path)
    if expect is None:  # the default ('cascade') is fine; 'sideways' only fails in the trial that draws it
        check_search(study, path)
        with pytest.raises(TrialConfigError, match="sideways"):
            trial_study(study, {"regularizers.mcr.mode": "sideways"}, 7)
        return
    with pytest.raises(StudyError) as err:
        check_search(study, path)
    assert str(err.value).startswith(f"{path}: ") and expect in str(err.value), str(err.value)


def test_a_study_without_search_block_cannot_be_tuned(tmp_path: Path) -> None:
    path = write_study(tmp_path, {"name": "plain"})
    with pytest.raises(StudyError, match="search: missing"):
        TuneDriver(load_study(path), QUIET, source=path)


def test_trial_study_writes_values_into_the_base_variant_and_the_config(tmp_path: Path) -> None:
    search = {"params": {**WEIGHTS, "regularizers.mcr.medium_deg": {"type": "float", "low": 20, "high": 60, "step": 2.5},
                         "training.lr": {"type": "log_float", "low": 1e-4, "high": 1e-2}}}
    study = StudyConfig.model_validate(tiny(tmp_path, search))
    assert default_values(study) == {"ssr.weight": 0.2, "scr.weight": 1.0, "mcr.medium_deg": 42.5,
                                     "training.lr": 2e-4}
    trial = trial_study(study, {"regularizers.ssr.weight": 0.0, "regularizers.scr.weight": 0.5,
                                "regularizers.mcr.medium_deg": 30, "training.lr": 1e-3}, 3)
    (variant,) = trial.variants
    assert variant["name"] == "trial-0003"
    assert variant["regularizers"]["scr"]["weight"] == 0.5 and variant["regularizers"]["mcr"]["medium_deg"] == 30
    assert trial.training.lr == 1e-3 and study.training.lr != 1e-3  # a copy: the study itself is untouched
    assert trial.search is None  # jobs re-validate their config: no sampler or pruner plugin needed there
    from pae_lab.plan.runs import expand

    (run,) = expand(trial)
    assert set(run.regularizers) == {"mcr", "scr"}  # weight 0 removes ssr, as in any variant spec


def test_dashboard_command_serves_the_journal_on_localhost(tmp_path: Path) -> None:
    study = StudyConfig.model_validate(tiny(tmp_path, {"params": WEIGHTS}))
    cmd = dashboard_command(study, port=8123)
    assert cmd[0].endswith("optuna-dashboard")
    assert cmd[1:] == [str(tmp_path / "study" / "optuna.journal"), "--host", "127.0.0.1", "--port", "8123"]
    rdb = StudyConfig.model_validate(tiny(tmp_path, {"params": WEIGHTS, "storage": "sqlite:///x.db"}))
    assert dashboard_command(rdb)[1] == "sqlite:///x.db"


# ---------------------------------------------------------------- outputs and intermediate values
def test_pareto_front_importances_and_tables_from_stored_trials(tmp_path: Path) -> None:
    search = SearchConfig.model_validate({"params": {"regularizers.ssr.weight": {"low": 0, "high": 1},
                                                     "regularizers.scr.weight": {"low": 0, "high": 2}},
                                          "objectives": [{"metric": "gfid"}, {"name": "proxy", "terms": {"lpc": 1}}]})
    study = optuna.create_study(directions=["minimize", "minimize"])
    dists = {"ssr.weight": optuna.distributions.FloatDistribution(0, 1),
             "scr.weight": optuna.distributions.FloatDistribution(0, 2)}
    points = [(0.1, 1.0, 5.0, 1.0), (0.5, 0.2, 3.0, 2.0), (0.9, 1.5, 4.0, 4.0), (0.3, 0.7, 1.0, 6.0), (0.7, 1.9, 6.0, 6.0)]
    for ssr, scr, gfid, proxy in points:
        study.add_trial(optuna.trial.create_trial(params={"ssr.weight": ssr, "scr.weight": scr},
                                                  distributions=dists, values=[gfid, proxy]))
    study.add_trial(optuna.trial.create_trial(params={"ssr.weight": 0.2, "scr.weight": 0.2}, distributions=dists,
                                              state=optuna.trial.TrialState.FAIL, user_attrs={"error": "boom"}))
    summary = write_search_outputs(study, search, tmp_path)

    trials = pd.read_csv(tmp_path / "trials.csv")
    assert list(trials["number"]) == [0, 1, 2, 3, 4, 5]
    assert {"values_0", "values_1", "params_ssr.weight", "params_scr.weight", "duration", "state"} <= set(trials.columns)
    assert trials.loc[5, "state"] == "FAIL" and trials.loc[5, "error"] == "boom"
    # (5,1), (3,2), (1,6) are non-dominated; (4,4) is dominated by (3,2), (6,6) by everything
    assert sorted(pd.read_csv(tmp_path / "pareto.csv")["number"]) == [0, 1, 3]
    best = read_json(tmp_path / "best.json")
    assert [b["number"] for b in best["best"]] == [0, 1, 3] and best["directions"] == ["minimize", "minimize"]
    assert best["best"][1]["values"] == {"gfid": 3.0, "proxy": 2.0} and best["best"][1]["params"]["ssr.weight"] == 0.5
    importances = pd.read_csv(tmp_path / "importances.csv")
    assert set(importances["param"]) == {"ssr.weight", "scr.weight"}
    assert {"importance", "importance_gfid", "importance_proxy"} <= set(importances.columns)
    assert importances["importance_proxy"].sum() == pytest.approx(1.0)
    assert summary.importance_note == ""


def test_importances_are_guarded_with_too_few_trials(tmp_path: Path) -> None:
    search = SearchConfig.model_validate({"params": {"regularizers.ssr.weight": {"low": 0, "high": 1}}})
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(params={"ssr.weight": 0.3}, value=2.0,
                                              distributions={"ssr.weight": optuna.distributions.FloatDistribution(0, 1)}))
    summary = write_search_outputs(study, search, tmp_path)
    assert summary.importances.empty and "need 3 completed trials" in summary.importance_note
    assert list(pd.read_csv(tmp_path / "pareto.csv")["number"]) == [0]


def test_intermediate_values_average_the_steps_every_seed_logged(tmp_path: Path) -> None:
    for seed, rows in {0: [(2, 1.0), (4, 0.5), (6, 0.25)], 1: [(2, 3.0), (4, float("nan"))]}.items():
        path = tmp_path / f"seed{seed}" / "tokenizer" / "metrics.jsonl"
        path.parent.mkdir(parents=True)
        path.write_text("".join(json.dumps({"step": s, "loss/l1": v}) + "\n" for s, v in rows) + '{"step": 8, "lo')
    values = read_intermediate([tmp_path / "seed0", tmp_path / "seed1"], "tokenizer", "loss/l1")
    assert values == {2: 2.0}  # step 4 is NaN in seed 1, step 6 is missing there, the torn line is skipped


# ---------------------------------------------------------------- the driver over the real pipeline
class InterruptedAtTell(TuneDriver):
    """A driver killed after trial 1's runs finished but before Optuna was told (Ctrl-C, a lost node)."""

    def tell(self, study, t, tracker, parent, outcomes=None):
        if t.number == 1:
            raise KeyboardInterrupt
        return super().tell(study, t, tracker, parent, outcomes)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tune")
    search = {"params": WEIGHTS, "parallel": 2, "n_trials": 2, "sampler": {"name": "random", "seed": 3},
              "objectives": [{"metric": "gfid"}, {"name": "proxy", "terms": {"lpc": 1.0, "ssc": -1.0}}]}
    cfg = tiny(tmp, search)
    with pytest.raises(KeyboardInterrupt):
        InterruptedAtTell(StudyConfig.model_validate(cfg), QUIET).run()
    root = Path(cfg["output_dir"])
    first = {p: p.stat().st_mtime_ns for p in root.glob("runs/trial-*/seed0/*/done.json")}
    cfg["search"]["n_trials"] = 3  # as `pae-lab tune --trials 3`
    study = StudyConfig.model_validate(cfg)
    outcome = TuneDriver(study, QUIET).run()
    return study, outcome, first


def test_interrupted_search_continues_and_reuses_finished_trials(searched) -> None:
    study, outcome, first = searched
    assert outcome.told == {1: "COMPLETE", 2: "COMPLETE"}  # trial 0 was told before the interruption
    assert outcome.states == {"COMPLETE": 3}
    root = study.study_dir()
    assert {p.parts[-4] for p in first} == {"trial-0000", "trial-0001"} and len(first) == 2 * len(run_stage_names())  # every run stage of both trials
    assert {p: p.stat().st_mtime_ns for p in first} == first  # trial 1 was told from its finished runs, not retrained
    assert sorted(p.name for p in (root / "runs").iterdir()) == ["trial-0000", "trial-0001", "trial-0002"]


def test_trials_are_told_the_pipeline_values(searched) -> None:
    study, _, _ = searched
    root = study.study_dir()
    trials = pd.read_csv(root / "trials.csv").set_index("number")
    results = pd.read_csv(root / "results.csv").set_index("variant")
    assert list(trials["state"]) == ["COMPLETE"] * 3
    assert trials.loc[0, "params_ssr.weight"] == 0.2 and trials.loc[0, "params_scr.weight"] == 1.0  # the paper's weights first
    assert trials.loc[1, "params_ssr.weight"] != 0.2
    for number, row in trials.iterrows():
        res = results.loc[f"trial-{number:04d}"]
        assert row["values_0"] == pytest.approx(res["fd_effnet_lite0_96"])
        assert row["values_1"] == pytest.approx(res["lpc"] - res["ssc"])
        assert row["duration"] > 0
    front = set(pd.read_csv(root / "pareto.csv")["number"])
    dominated = {a for a in trials.index for b in trials.index
                 if all(trials.loc[b, c] <= trials.loc[a, c] for c in ("values_0", "values_1"))
                 and any(trials.loc[b, c] < trials.loc[a, c] for c in ("values_0", "values_1"))}
    assert front == set(trials.index) - dominated
    assert {b["number"] for b in read_json(root / "best.json")["best"]} == front
    assert set(pd.read_csv(root / "importances.csv")["param"]) == {"ssr.weight", "scr.weight"}
    info = read_json(root / "study.json")
    assert info["kind"] == "tune" and info["directions"] == ["minimize", "minimize"]
    assert info["objectives"] == ["fd_effnet_lite0_96", "proxy"] and info["gfd"] == "fd_effnet_lite0_96"
    assert info["target"] == "fd_effnet_lite0_96"  # the frontier target falls back to gFD: the trials have no width arm
    assert (root / "optuna.journal").is_file() and (root / "correlations.csv").is_file()


def test_trials_are_mlflow_children_of_the_tuning_run(searched) -> None:
    import mlflow

    study, _, _ = searched
    client = mlflow.MlflowClient(f"sqlite:///{study.study_dir() / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tune").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("pae.kind") == "tune"]
    children = sorted((r for r in runs if r.data.tags.get("pae.kind") == "run"), key=lambda r: r.data.tags["optuna.trial"])
    assert [c.data.tags["optuna.trial"] for c in children] == ["0", "1", "2"]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert children[0].data.tags["trial.ssr.weight"] == "0.2" and children[0].data.params["trial.scr.weight"] == "1.0"
    assert all(c.data.tags["optuna.state"] == "COMPLETE" and "objective/fd_effnet_lite0_96" in c.data.metrics for c in children)
    assert "best/fd_effnet_lite0_96" in parent.data.metrics and parent.data.tags["pareto.trials"]
    assert parent.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(parent.info.run_id, "trial/proxy")] == [0, 1, 2]


def test_failed_trials_are_recorded_as_fail(tmp_path: Path, searched) -> None:
    import plugin_nan  # noqa: F401  registers nan_loss and the 'explodes' variant, as `plugins:` does for the CLI

    brittle = {"name": "brittle", "base": "explodes", "regularizers": {"scr": {"pooled": False}}}
    search = {"base_variant": "brittle", "n_trials": 4, "sampler": {"name": "random", "seed": 0},
              "params": {"regularizers.nan_loss.weight": {"low": 0.5, "high": 2.0},
                         "regularizers.scr.patch": {"type": "categorical", "choices": [True, False]}}}
    study = StudyConfig.model_validate(tiny(tmp_path, search, plugins=["plugin_nan"], variants=[brittle]))
    reuse_shared(searched[0], study)
    outcome = TuneDriver(study, QUIET).run()
    assert outcome.states == {"FAIL": 4}
    trials = pd.read_csv(study.study_dir() / "trials.csv")
    assert trials.loc[0, "params_scr.patch"] and trials.loc[0, "params_nan_loss.weight"] == 1.0
    for _, row in trials.iterrows():  # a NaN loss in a run, or a value the scr constructor rejects
        expect = "NonFiniteLoss" if row["params_scr.patch"] else "pooled=False and patch=False"
        assert expect in row["error"], row["error"]
    assert not trials["params_scr.patch"].all(), "the seed should draw at least one config-breaking value"
    nan_run = study.study_dir() / "runs" / "trial-0000" / "seed0"
    assert read_json(nan_run / "failed.json")["stage"] == "tokenizer"


def test_a_constraint_reaches_optuna_and_an_infeasible_trial_is_never_best(tmp_path: Path, searched) -> None:
    """The driver stores each trial's violations before telling; Optuna's sampler reads them through
    constraints_func (its own `constraints` record), and best.json keeps only feasible trials."""
    search = {"params": WEIGHTS, "n_trials": 1, "sampler": {"name": "tpe", "seed": 0},
              "constraints": [{"metric": "psnr", "min": 1000.0}]}  # no tokenizer reconstructs at 1000 dB
    study = StudyConfig.model_validate(tiny(tmp_path, search))
    reuse_shared(searched[0], study)
    assert TuneDriver(study, QUIET).run().told == {0: "COMPLETE"}
    root = study.study_dir()
    psnr = pd.read_csv(root / "results.csv").set_index("variant").loc["trial-0000", "psnr"]
    trials = pd.read_csv(root / "trials.csv")
    assert trials.loc[0, "violation_psnr>=1000"] == pytest.approx(1000 - psnr) and not trials.loc[0, "feasible"]
    (stored,) = optuna.load_study(study_name="tune", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(root / "optuna.journal")))).trials
    assert stored.system_attrs["constraints"] == pytest.approx([1000 - psnr])
    assert read_json(root / "best.json")["best"] == [] and read_json(root / "best.json")["constraints"] == ["psnr>=1000"]


@pytest.mark.parametrize("constraint, expect", [({"metric": "psnr"}, "neither `min` nor `max`"),
                                                ({"metric": "psnr", "min": 3, "max": 2}, "min 3.0 > max 2.0")])
def test_a_constraint_needs_a_sensible_bound(constraint: dict, expect: str) -> None:
    with pytest.raises(ValueError, match=expect):
        SearchConfig.model_validate({"params": WEIGHTS, "constraints": [constraint]})
    from pae_lab.config.search import ConstraintSpec

    both = ConstraintSpec(metric="psnr", min=18, max=30)
    assert both.label == "18<=psnr<=30" and both.violation(20) == -2 and both.violation(31) == 1


def test_a_job_that_died_is_marked_fail_not_left_running(tmp_path: Path, searched, monkeypatch) -> None:
    def killed(run_json, threads=None):
        raise MemoryError("killed by the OOM killer")

    monkeypatch.setattr("pae_lab.execution.job.execute_run", killed)  # the inline launcher's job process dies
    study = StudyConfig.model_validate(tiny(tmp_path, {"params": WEIGHTS, "n_trials": 1}))
    reuse_shared(searched[0], study)
    outcome = TuneDriver(study, QUIET).run()
    assert outcome.told == {0: "FAIL"}
    trials = pd.read_csv(study.study_dir() / "trials.csv")
    assert "job died: MemoryError: killed by the OOM killer" in trials.loc[0, "error"]


@pytest.mark.timeout(400)
def test_pruning_stops_a_running_trial(tmp_path: Path, searched) -> None:
    """The trial holds at step 4 until its stop request appears, so the pruner acts on a running
    trial however fast training is (no race), and the training loop then stops it."""
    import mlflow

    import plugin_wait_stop  # noqa: F401  registers wait_stop, as `plugins:` does for the CLI

    PRUNERS.register("always", lambda **kw: AlwaysPrune())  # in the test: the registries fixture unregisters it after
    run_dir = tmp_path / "study" / "runs" / "trial-0000" / "seed0"
    holds = {"name": "holds", "base": "pae", "regularizers": {"wait_stop": {"at_step": 4, "stop_file": str(run_dir / "stop.json")}}}
    search = {"params": WEIGHTS, "n_trials": 1, "base_variant": "holds",
              "pruner": {"name": "always", "source": "loss/total", "interval_s": 0.2}}
    cfg = tiny(tmp_path, search, plugins=["plugin_wait_stop"], variants=[holds])
    cfg["training"].update(steps=40, log_every=2, checkpoint_every=50)
    study = StudyConfig.model_validate(cfg)
    reuse_shared(searched[0], study)
    outcome = TuneDriver(study, QUIET).run()
    assert outcome.told == {0: "PRUNED"}
    assert not (run_dir / "tokenizer" / "done.json").exists()
    steps = [json.loads(line)["step"] for line in (run_dir / "tokenizer" / "metrics.jsonl").read_text().splitlines()]
    assert 2 <= max(steps) <= 4  # stopped once the value at step 2 was pruned, at step 4 at the latest
    assert "StopRequested" in read_json(run_dir / "failed.json")["error"]
    stored = optuna.load_study(study_name="tune", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(study.study_dir() / "optuna.journal"))))
    (trial,) = stored.trials
    assert trial.state == optuna.trial.TrialState.PRUNED and 2 in trial.intermediate_values
    row = pd.read_csv(study.study_dir() / "trials.csv").iloc[0]
    assert row["state"] == "PRUNED" and pd.isna(row["value"])  # not the loss Optuna files as its value
    client = mlflow.MlflowClient(f"sqlite:///{study.study_dir() / 'mlflow.db'}")
    run_id = read_json(run_dir / "run.json")["mlflow_run_id"]
    assert client.get_run(run_id).info.status == "KILLED"


def test_cli_tune_prints_one_line_for_a_bad_search(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pae_lab.cli import app

    path = write_study(tmp_path, {"name": "bad", "search": {"params": {"regularizers.nope.weight": {"low": 0, "high": 1}}}})
    result = CliRunner().invoke(app, ["tune", str(path), "--trials", "2"])
    assert result.exit_code == 2
    assert "unknown regularizer 'nope'" in result.output and "Traceback" not in result.output
