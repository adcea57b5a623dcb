"""Issue 22: every registry lives in pae_lab.catalog and is listed by `pae-lab registry`; a launcher's
settings are its own config model, picked by `launcher.name` like a tokenizer architecture's."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
import yaml
from pydantic import Field
from typer.testing import CliRunner

from pae_lab.catalog import LAUNCHERS
from pae_lab.cli import app
from pae_lab.config.launchers import LauncherConfig, validate_launcher
from pae_lab.config.loading import StudyError, load_config


def study(tmp_path: Path, launcher: dict) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"name": "launchers", "launcher": launcher}))
    return path


def test_registry_command_lists_every_registry() -> None:
    out = CliRunner().invoke(app, ["registry"])
    assert out.exit_code == 0, out.output
    sections = dict(line.split(": ", 1) for line in out.output.splitlines())
    assert sections["stages"].split(", ") == sorted(["data", "prior", "refine", "reference", "teacher", "tokenizer",
                                                      "manifold", "generator", "generation", "controls", "guidance", "refit"])
    assert sections["extractors"] == "dinov2, effnet-lite0, effnet-lite0-96, inception"
    assert sections["launchers"] == "inline, local, slurm"
    assert sections["tuning_samplers"] == "nsga2, random, tpe"
    assert sections["pruners"] == "hyperband, median, none"
    assert {"architectures", "datasets", "priors", "regularizers", "variants", "samplers", "time_sampling",
            "metrics"} <= set(sections)
    one = CliRunner().invoke(app, ["registry", "launchers"])
    assert one.exit_code == 0 and one.output.strip() == "launchers: inline, local, slurm"


def test_each_launcher_validates_its_own_settings(tmp_path: Path) -> None:
    slurm = load_config(study(tmp_path, {"name": "slurm", "partition": "gpu", "nodes": 2, "gpus_per_node": 4})).launcher
    assert (type(slurm).__name__, slurm.partition, slurm.processes_per_job()) == ("SlurmConfig", "gpu", 8)
    local = load_config(study(tmp_path, {"name": "local", "max_parallel": 2, "tasks_per_job": 2})).launcher
    assert (local.max_parallel, local.processes_per_job()) == (2, 2)
    assert load_config(study(tmp_path, {})).launcher.name == "inline"
    # another launcher's flat key is set aside, so `--set launcher.name=inline` runs a study written for local
    inline = load_config(study(tmp_path, {"name": "inline", "max_parallel": 2})).launcher
    assert inline.name == "inline" and "max_parallel" not in inline.model_dump()
    with pytest.raises(StudyError, match=r"launcher: launcher 'inline' takes no max_paralel; it takes: name, threads_per_job"):
        load_config(study(tmp_path, {"name": "inline", "max_paralel": 2}))
    with pytest.raises(StudyError, match=r"study.yaml: launcher.nodes: Input should be greater than or equal to 1 \(got 0\)"):
        load_config(study(tmp_path, {"name": "slurm", "nodes": 0}))
    with pytest.raises(StudyError, match=r"unknown launcher 'cloud'; registered: inline, local, slurm"):
        load_config(study(tmp_path, {"name": "cloud"}))


def test_the_nested_slurm_block_of_before_issue_22_still_works(tmp_path: Path) -> None:
    """The README's old form: same settings as the flat one; another launcher's block is checked, then set aside."""
    nested = {"name": "slurm", "threads_per_job": 4, "slurm": {"partition": "cpu", "gpus_per_node": 0, "timeout_min": 60}}
    flat = {"name": "slurm", "threads_per_job": 4, "partition": "cpu", "gpus_per_node": 0, "timeout_min": 60}
    assert validate_launcher(nested) == validate_launcher(flat)
    switched = validate_launcher({"name": "local", "max_parallel": 2, "slurm": {"partition": "cpu"}})
    assert switched.model_dump() == validate_launcher({"name": "local", "max_parallel": 2}).model_dump()
    with pytest.raises(StudyError, match=r"launcher: slurm.partiton: Extra inputs are not permitted \(got 'cpu'\)"):
        load_config(study(tmp_path, {"name": "local", "slurm": {"partiton": "cpu"}}))


def test_launcher_settings_change_no_stage_hash(tmp_path: Path) -> None:
    from pae_lab.plan.graph import RunKey, stage_hashes

    for key in (RunKey("baseline", {}, 0), RunKey("ssr", {"ssr": {"weight": 0.5}}, 0)):  # the second hashes the teacher
        hashes = {tuple(stage_hashes(load_config(study(tmp_path, launcher)), key).items())
                  for launcher in ({}, {"name": "local", "max_parallel": 3}, {"name": "slurm", "slurm": {"mem_gb": 64}})}
        assert len(hashes) == 1


class CloudConfig(LauncherConfig):
    """`cloud`: a plugin's launcher."""

    name: Literal["cloud"] = "cloud"
    region: str = Field("eu", description="Where the jobs run.")


def test_a_plugin_launcher_registers_name_config_and_class(tmp_path: Path) -> None:
    from pae_lab.execution.launchers.base import Launcher, build_launcher, register_launcher
    from pae_lab.plan.schema_doc import study_reference
    from pae_lab.registry import RegistryError

    with pytest.raises(RegistryError, match="config must subclass LauncherConfig"):
        register_launcher("cloud", dict)
    with pytest.raises(RegistryError, match="launcher 'cloud' must be a subclass of Launcher"):
        register_launcher("cloud", CloudConfig)(dict)

    @register_launcher("cloud", CloudConfig)
    class CloudLauncher(Launcher):
        pass

    try:
        cfg = load_config(study(tmp_path, {"name": "cloud", "region": "us"})).launcher
        assert isinstance(cfg, CloudConfig) and cfg.region == "us"
        assert isinstance(build_launcher(cfg, tmp_path), CloudLauncher)
        with pytest.raises(StudyError, match="launcher 'cloud' takes no zone"):
            load_config(study(tmp_path, {"name": "cloud", "zone": "gpu"}))
        assert "#### `launcher (name: cloud)`" in study_reference() and "Where the jobs run." in study_reference()
    finally:
        LAUNCHERS.unregister("cloud")


def test_old_import_paths_still_work() -> None:
    from pae_lab.architectures import ARCHITECTURES, register_architecture  # noqa: F401 - the plugin import path
    from pae_lab.catalog import ARCHITECTURES as DECLARED, OPTUNA_SAMPLERS, PRUNERS, STAGES
    from pae_lab.execution.launchers.base import SlurmLauncher
    from pae_lab.execution.launchers.slurm import SlurmLauncher as Moved
    from pae_lab.plan.graph import STAGES as GRAPH_STAGES
    from pae_lab.tuning.algorithms import PRUNERS as TUNING_PRUNERS, SAMPLER_FACTORIES

    assert ARCHITECTURES is DECLARED and SlurmLauncher is Moved and GRAPH_STAGES is STAGES
    assert TUNING_PRUNERS is PRUNERS and SAMPLER_FACTORIES is OPTUNA_SAMPLERS
