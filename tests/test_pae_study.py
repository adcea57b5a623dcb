"""End to end with the `pae` architecture on the embedded prior: trains, is measured, resumes exactly after a kill."""
from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
PAE_TINY = {"name": "pae", "latent_channels": 4, "downsample": 4, "dam_depth": 1, "dam_width": 16, "compressor_width": 16,
            "decoder_width": 16, "decoder_depth": 1, "heads": 2, "vfm": {"params": {"input_resolution": 64}}}


def _write(tmp: Path, name: str, kill: bool = False) -> Path:
    """The `pae` variant plus the test plugin's `kill_once` (loss 0): SIGKILL at step 4, after the step-3 checkpoint,
    unless its marker file exists (the reference run and the resumed run)."""
    marker = tmp / f"{name}.killed"
    if not kill:
        marker.write_text("no kill")
    variant = {"name": "pae", "base": "pae", "regularizers": {"kill_once": {"weight": 1.0, "at_step": 4, "marker": str(marker)}}}
    cfg = copy.deepcopy(TINY)
    cfg.update({"name": name, "output_dir": str(tmp / name), "variants": [variant], "tokenizer": PAE_TINY,
                "plugins": ["plugin_kill"]})
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run(path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}
    return subprocess.run([sys.executable, "-m", "pae_lab", "run", str(path), "--no-report"], cwd=path.parent, env=env,
                          capture_output=True, text=True, timeout=600)


def _state(study_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(study_dir / "runs" / "pae" / "seed0" / "tokenizer" / "model.pt", weights_only=False)["state"]


@pytest.mark.timeout(900)
def test_pae_trains_is_measured_and_resumes_exactly_after_a_kill(tmp_path: Path) -> None:
    reference = _run(_write(tmp_path, "ref"))
    assert reference.returncode == 0, reference.stderr[-2000:]
    results = pd.read_csv(tmp_path / "ref" / "results.csv")
    results = results[results["kind"] == "variant"]  # beside the teacher / reference rows
    assert (results["status"] == "done").all()
    for column in ("psnr", "ssc", "lpc", "gsq", "fd_effnet_lite0_96"):
        assert results[column].notna().all(), column

    cut = _write(tmp_path, "cut", kill=True)
    shutil.copytree(tmp_path / "ref" / "shared", tmp_path / "cut" / "shared")  # same hashes: only the run is cut
    killed = _run(cut)
    assert killed.returncode == -9, (killed.returncode, killed.stderr[-2000:])
    tok = tmp_path / "cut" / "runs" / "pae" / "seed0" / "tokenizer"
    assert (tok / "checkpoint.pt").exists() and not (tok / "done.json").exists()
    resumed = _run(cut)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    done = yaml.safe_load((tok / "done.json").read_text())
    assert done["summary"]["resumed_from_step"] == 3
    ref_state, cut_state = _state(tmp_path / "ref"), _state(tmp_path / "cut")
    assert ref_state.keys() == cut_state.keys()
    for key in ref_state:
        assert torch.equal(ref_state[key], cut_state[key]), key
