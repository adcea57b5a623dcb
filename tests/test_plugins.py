"""One of each extension point, added by a plugin in its own module (tests/plugin_everywhere.py),
appears everywhere it should with no other edit: the README's "adding a metric / stage / launcher /
architecture" shown working."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import TINY

TESTS = Path(__file__).resolve().parent
ENV = {**os.environ, "COLUMNS": "400", "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pae_lab", *args], cwd=TESTS, env=ENV, capture_output=True, text=True,
                          timeout=900)


@pytest.fixture(scope="module")
def plugged(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("plugged")
    cfg = copy.deepcopy(TINY)
    cfg["tokenizer"]["name"] = "mirror_conv"
    cfg.update(name="plugged", output_dir=str(tmp / "study"), variants=["baseline", "ssr", "pae"],
               plugins=["plugin_everywhere"], launcher={"name": "echo_inline", "greeting": "from a plugin launcher"})
    path = tmp / "plugged.yaml"
    path.write_text(yaml.safe_dump(cfg))
    done = cli("run", str(path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "echo_inline: from a plugin launcher" in done.stdout  # the launcher ran the jobs with its own settings
    assert "mirror_conv: built by the plugin" in done.stdout  # the architecture's builder made the tokenizer
    return path


def test_listings_and_the_yaml_reference_name_every_plugin_entry() -> None:
    listing = cli("registry", "--plugin", "plugin_everywhere").stdout
    for section, name in (("metrics", "latent_abs"), ("stages", "loss_echo"), ("launchers", "echo_inline"),
                          ("architectures", "mirror_conv")):
        line = next(l for l in listing.splitlines() if l.startswith(f"{section}:"))
        assert name in line, (section, line)
    reference = cli("schema", "--plugin", "plugin_everywhere").stdout
    assert "echo_inline" in reference and "greeting" in reference and "mirror_conv" in reference


def test_metric_and_stage_columns_reach_results_correlations_and_status(plugged: Path) -> None:
    root = plugged.parent / "study"
    results = pd.read_csv(root / "results.csv")
    runs = results[results["kind"] == "variant"]
    assert runs["latent_abs"].notna().all() and runs["echoed_loss"].notna().all()
    assert (runs["echoed_loss"] == runs["train_loss"]).all()  # the stage read its input as declared
    correlations = pd.read_csv(root / "correlations.csv").set_index("metric")
    assert correlations.loc["latent_abs", "direction"] == "lower"  # the declared direction, nowhere else
    status = cli("status", str(plugged)).stdout
    assert "latent_abs" in status and "loss_echo" in status  # a headline metric's column; the stage's own
    baseline_row = next(line for line in status.splitlines() if "baseline" in line)
    import plugin_everywhere  # noqa: F401  registers loss_echo here too
    from pae_lab.plan.runs import run_stage_names
    assert "loss_echo" in run_stage_names() and baseline_row.count("done") == len(run_stage_names())  # every stage, the plugin's too
    assert f"{runs.iloc[0]['latent_abs']:.3f}" in baseline_row  # the metric's value, not only its header


def test_metric_reaches_mlflow_and_the_report(plugged: Path) -> None:
    import mlflow

    root = plugged.parent / "study"
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("plugged")
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if r.data.tags.get("pae.kind") == "run"]
    assert len(children) == 3 and all("latent_abs" in r.data.metrics for r in children)
    parent = next(r for r in runs if r.data.tags.get("pae.kind") == "study")
    assert parent.data.params["tokenizer.name"] == "mirror_conv"  # the plugin architecture trained every run
    html = (root / "report" / "report.html").read_text()
    assert "latent_abs" in html
