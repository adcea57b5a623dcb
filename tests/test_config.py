"""Study files: valid ones load, broken ones give one clear line naming file, key and value."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pae_lab.config.loading import StudyError
from pae_lab.plan.preflight import load_study

ROOT = Path(__file__).resolve().parents[1]
BROKEN = sorted((ROOT / "tests" / "broken_studies").glob("*.yaml"))


def expected(path: Path) -> str:
    """The `# expect:` first line; read as bytes, since some broken files are binary or not UTF-8."""
    return path.read_bytes().splitlines()[0].decode().removeprefix("# expect:").strip()


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_study_gives_one_clear_line(path: Path) -> None:
    with pytest.raises(StudyError) as err:
        load_study(path)
    message = str(err.value)
    assert message.startswith(str(path)), message
    assert expected(path) in message
    assert "\n" not in message


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_cli_gives_one_line_and_exit_2_for_every_broken_study(path: Path) -> None:
    from typer.testing import CliRunner

    from pae_lab.cli import app

    result = CliRunner().invoke(app, ["run", str(path)])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}") and expected(path) in lines[0], result.output
    assert "Traceback" not in result.output


def test_version() -> None:
    from typer.testing import CliRunner

    from pae_lab import __version__
    from pae_lab.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"pae-lab {__version__}"


def test_cli_prints_the_error_without_traceback() -> None:
    path = ROOT / "tests" / "broken_studies" / "unknown_variant.yaml"
    proc = subprocess.run([sys.executable, "-m", "pae_lab", "run", str(path)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    out = proc.stdout + proc.stderr
    assert "unknown variant 'ssrr'" in out and "Traceback" not in out


@pytest.mark.parametrize("path", sorted((ROOT / "studies").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_studies_are_valid(path: Path) -> None:
    study = load_study(path, check_files=path.stem not in ("imagenet256", "tokenizer_zoo"))  # name files on a cluster
    from pae_lab.plan.runs import expand, run_stage_names

    runs = expand(study)
    assert len(runs) == len(study.variants) * len(study.seeds)
    assert all(set(run_stage_names()) <= set(r.hashes) for r in runs)
    assert len({r.identity for r in runs}) == len(runs)  # no two runs share a configuration


def test_dry_run_validates_the_cluster_study_and_lists_missing_files() -> None:
    proc = subprocess.run([sys.executable, "-m", "pae_lab", "run", "studies/imagenet256.yaml", "--dry-run"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid (18 runs, launcher slurm)" in proc.stdout
    assert "prior.params.weights: prior weights file not found" in proc.stdout
    assert "tokenizer.vfm.params.weights: VFM weights file not found" in proc.stdout


def test_dry_run_of_the_zoo_lists_every_missing_checkpoint() -> None:
    proc = subprocess.run([sys.executable, "-m", "pae_lab", "run", "studies/tokenizer_zoo.yaml", "--dry-run"],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "COLUMNS": "300"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid (6 runs, launcher slurm)" in proc.stdout
    assert ("evaluation.num_samples: 10000 generated images per score, but the held-out set (rFD, floors) 5000 "
            "(data.val_size holds 5000)") in proc.stdout
    for key in ("variants[1].tokenizer.path: external tokenizer (diffusers) not found: '/checkpoints/sd-vae-ft-ema'",
                "variants[2].tokenizer.path", "variants[3].tokenizer.path",
                "variants[4].tokenizer.path: external tokenizer (ldm_kl)", "variants[4].tokenizer.config: LDM model config",
                "variants[4].tokenizer.latent_stats: latent statistics file", "variants[5].tokenizer.path: external tokenizer (torchscript)"):
        assert key in proc.stdout, key


def test_overrides_apply_dotted_keys(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: s\n")
    study = load_study(path, {"training.steps": 7, "evaluation.sampler.steps": 3})
    assert study.training.steps == 7 and study.evaluation.sampler.steps == 3


def test_inline_variant_with_base_and_override(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nvariants:\n  - pae\n  - {name: pae_no_mcr, base: pae, regularizers: {mcr: null}}\n")
    from pae_lab.plan.runs import expand

    runs = expand(load_study(path))
    regs = {r.variant: set(r.regularizers) for r in runs}
    assert regs == {"pae": {"ssr", "mcr", "scr"}, "pae_no_mcr": {"ssr", "scr"}}


def _alias_bomb(levels: int = 9) -> str:
    """The "billion laughs": each anchor a list of nine aliases of the one before, 9**levels values."""
    lines, prev = ["name: bomb", "a: &a [x, x, x, x, x, x, x, x, x]"], "a"
    for key in "bcdefghijk"[: levels - 1]:
        lines.append(f"{key}: &{key} [{', '.join([f'*{prev}'] * 9)}]")
        prev = key
    return "\n".join(lines) + "\n"


@pytest.fixture
def alarm():
    """Fail a test that hangs instead of hanging the suite: SIGALRM after the given seconds."""
    import signal

    def ring(signum, frame):  # noqa: ANN001
        raise TimeoutError("still loading when the alarm rang")

    old = signal.signal(signal.SIGALRM, ring)
    yield lambda seconds: signal.alarm(seconds)
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_alias_bomb_is_refused_at_once_naming_the_key(tmp_path: Path, alarm) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb())
    alarm(3)  # composing the 11-line file takes milliseconds; walking its expansion took minutes
    with pytest.raises(StudyError) as err:
        load_study(path)
    message = str(err.value)
    assert message.startswith(f"{path}: f: ") and "aliases" in message and "\n" not in message, message


def test_alias_inside_its_own_anchor_is_refused(tmp_path: Path, alarm) -> None:
    path = tmp_path / "cycle.yaml"
    path.write_text("name: s\ndata: {name: scenes, params: &p {x: [1, *p]}}\n")
    alarm(3)
    with pytest.raises(StudyError, match=r"data\.params\.x\[1\]: alias \*p inside its own anchor"):
        load_study(path)


def test_ordinary_aliases_still_load(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nseeds: &s [0, 1]\ndescription: &d shared\ndata: {name: scenes, params: {note: *d}}\n")
    study = load_study(path)
    assert study.seeds == [0, 1] and study.data.params["note"] == "shared"


def test_a_planned_study_with_a_width_arm_loads_again(tmp_path: Path) -> None:
    """Once planned, a study's variants are read back as plain records: the width arm's check must not
    need the resolved variant (a rerun of the ablation after a failed run crashed on it)."""
    import yaml

    from pae_lab.plan.runs import cached_variants, expand

    cfg = yaml.safe_load((ROOT / "studies" / "ablation_properties.yaml").read_text())
    path = tmp_path / "ablation.yaml"
    path.write_text(yaml.safe_dump({**cfg, "output_dir": str(tmp_path / "out")}))
    (tmp_path / "out").mkdir()
    expand(load_study(path))  # plans it: the resolved variants are kept in the study folder
    study = load_study(path)
    assert cached_variants(study) is not None and any(v.get("tokenizer") for v in cached_variants(study))


def test_the_ablations_oracle_control_named_in_its_header_loads(tmp_path: Path) -> None:
    """The study's header gives the positive control as --set flags: they must still load, give an
    oracle without its class channels (the label the generator is conditioned on) and a folder of its own."""
    import shlex

    from pae_lab.cli import parse_sets

    path = ROOT / "studies" / "ablation_properties.yaml"
    (line,) = [s for s in path.read_text().splitlines() if s.startswith("#") and "--set" in s]
    flags = shlex.split(line.lstrip("# "))
    sets = [flags[i + 1] for i, flag in enumerate(flags) if flag == "--set"]
    default = load_study(path, {"output_dir": str(tmp_path)}, preflight=False)
    oracle = load_study(path, {**parse_sets(sets), "output_dir": str(tmp_path)}, preflight=False)
    assert default.prior.name == "effnet_lite0" and default.data.params["cue"] == "texture_grid"
    assert oracle.prior.name == "oracle" and oracle.prior.params == {"semantic_weight": 0}
    assert oracle.name != default.name and oracle.data == default.data


def test_a_guidance_grid_without_class_dropout_is_refused() -> None:
    """The sweep would have no unconditional model to guide with: said at load, not after training."""
    from pydantic import ValidationError

    from pae_lab.config.schema import StudyConfig

    with pytest.raises(ValidationError, match="cfg_grid: \\[1.0, 2.0\\] needs the unconditional model"):
        StudyConfig.model_validate({"name": "g", "generator": {"class_dropout": 0},
                                    "evaluation": {"sampler": {"cfg_grid": [1.0, 2.0]}}})
    StudyConfig.model_validate({"name": "g", "generator": {"class_dropout": 0}})  # no grid: nothing to refuse
