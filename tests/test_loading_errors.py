"""Problems found before anything runs reach the user through the real CLI as one line on stderr."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(study: Path, *sets: str, dry_run: bool = False) -> subprocess.CompletedProcess:
    """`pae-lab run study --set ...` in a fresh interpreter, as a user types it."""
    args = [sys.executable, "-m", "pae_lab", "run", str(study), *(["--dry-run"] if dry_run else [])]
    args += [arg for value in sets for arg in ("--set", value)]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "COLUMNS": "80"})


def assert_one_line(proc: subprocess.CompletedProcess, study: Path, key: str, value: str) -> None:
    """Exit 2, and stderr is one `error:` line naming the study file, the key and the value."""
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {study}: {key}: "), proc.stderr
    assert repr(value) in lines[0], lines[0]


@pytest.fixture
def smoke(tmp_path: Path) -> Path:
    return Path(shutil.copy(ROOT / "studies" / "smoke.yaml", tmp_path / "smoke.yaml"))


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_output_dir_under_a_file(smoke: Path, tmp_path: Path, dry_run: bool) -> None:
    (tmp_path / "a_file").write_text("")
    out = str(tmp_path / "a_file" / "study")
    proc = run_cli(smoke, f"output_dir={out}", dry_run=dry_run)
    assert_one_line(proc, smoke, "output_dir", out)
    assert "is a file, not a folder" in proc.stderr


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_output_dir_where_no_folder_can_be_made(smoke: Path) -> None:
    proc = run_cli(smoke, "output_dir=/proc/nope/study")  # root may write almost anywhere, but not here
    assert_one_line(proc, smoke, "output_dir", "/proc/nope/study")
    assert "cannot create folders in /proc" in proc.stderr


@pytest.mark.parametrize("layout", ["empty", "no_images"])
def test_imagefolder_without_images(smoke: Path, tmp_path: Path, layout: str) -> None:
    root = tmp_path / "images"
    root.mkdir()
    if layout == "no_images":
        (root / "cat").mkdir()
        (root / "cat" / "notes.txt").write_text("")
    proc = run_cli(smoke, f"output_dir={tmp_path / 'out'}", "data.name=imagefolder", f"data.params.root={root}")
    assert_one_line(proc, smoke, "data.params.root", str(root))
    assert not (tmp_path / "out").exists()  # refused before the driver made the study folder
