"""Streaming ImageFolder: both layouts, resize + centre crop, deterministic resumable sharded order, disk splits."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pae_lab.config.schema import StudyConfig
from pae_lab.data.diskarray import DiskArray
from pae_lab.data.splits import DiskSplit, write_split
from pae_lab.data.stream import FolderImages, describe_folder, scan_imagefolder, stream_loader
from pae_lab.plan.graph import STAGES
from pae_lab.plan.layout import SplitLayout
from pae_lab.stages.execute import run_stage


def _draw(path: Path, seed: int, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def flat(tmp_path: Path) -> Path:
    for c, name in enumerate(["cat", "dog", "emu"]):
        for i in range(10):
            _draw(tmp_path / "flat" / name / f"{i:02d}.png", 100 * c + i, (24 + i, 20))
    return tmp_path / "flat"


@pytest.fixture
def split(tmp_path: Path) -> Path:
    for s, n in (("train", 6), ("val", 2)):
        for name in ("a", "b"):
            for i in range(n):
                _draw(tmp_path / "in" / s / name / f"{i}.jpg", hash((s, name, i)) % 1000, (20, 30))
    return tmp_path / "in"


def test_split_layout(split: Path) -> None:
    train, val = scan_imagefolder(split, "train"), scan_imagefolder(split, "val")
    assert train.layout == val.layout == "split" and train.classes == ["a", "b"]
    assert len(train) == 12 and len(val) == 4 and sorted(set(train.labels)) == [0, 1]
    assert describe_folder(split) == "split layout, 12 train / 4 val images in 2 classes"


def test_flat_layout_seeded_disjoint_split(flat: Path) -> None:
    train, val = scan_imagefolder(flat, "train", val_fraction=0.2), scan_imagefolder(flat, "val", val_fraction=0.2)
    assert train.layout == "flat" and len(train) == 24 and len(val) == 6
    assert not set(train.files) & set(val.files) and len(set(train.files) | set(val.files)) == 30
    assert scan_imagefolder(flat, "val", val_fraction=0.2).files == val.files  # deterministic
    assert scan_imagefolder(flat, "val", val_fraction=0.2, seed=1).files != val.files  # seeded
    assert len(scan_imagefolder(flat, "train", size=5)) == 5
    with pytest.raises(FileNotFoundError, match="data.params.root: .* is not a directory"):
        scan_imagefolder(flat / "nope", "train")


def test_resize_and_centre_crop(flat: Path) -> None:
    ds = FolderImages(scan_imagefolder(flat, "train"), 16)
    img, label = ds[0]
    assert img.shape == (3, 16, 16) and img.dtype == torch.uint8
    source = Image.open(ds.index.files[0]).convert("RGB")
    w, h = source.size  # shorter side (20) -> 16, then the centre 16 x 16
    nw = round(w * 16 / h)
    expected = np.asarray(source.resize((nw, 16), Image.Resampling.BICUBIC))[:, (nw - 16) // 2:(nw - 16) // 2 + 16]
    np.testing.assert_array_equal(img.numpy().transpose(1, 2, 0), expected)
    assert label == ds.index.labels[0]


def _order(ds, **kwargs) -> list[int]:
    return [int(i) for i in stream_loader(ds, 4, **kwargs).sampler]


def test_order_is_deterministic_resumable_and_sharded(flat: Path) -> None:
    ds = FolderImages(scan_imagefolder(flat, "train"), 8)
    full = _order(ds, shuffle=True, seed=3, workers=0)
    assert full == _order(ds, shuffle=True, seed=3, workers=0) and sorted(full) == list(range(len(ds)))
    assert full != _order(ds, shuffle=True, seed=3, epoch=1, workers=0)
    assert _order(ds, shuffle=True, seed=3, start=10, workers=0) == full[10:]
    ranks = [_order(ds, shuffle=True, seed=3, rank=r, world_size=3, workers=0) for r in range(3)]
    assert sorted(sum(ranks, [])) == list(range(len(ds))) and ranks[1] == full[1::3]
    a = torch.cat([x for x, _ in stream_loader(ds, 5, workers=0)])
    b = torch.cat([x for x, _ in stream_loader(ds, 5, workers=2)])
    assert torch.equal(a, b)  # workers change nothing


def test_streamed_split_on_disk(flat: Path, tmp_path: Path) -> None:
    ds = FolderImages(scan_imagefolder(flat, "train"), 8)
    s = SplitLayout(tmp_path / "s")
    written = write_split(s, stream_loader(ds, 7, workers=2), len(ds), 8, ds.index.classes, False)
    assert isinstance(written.images, DiskArray) and len(written) == 27
    np.testing.assert_array_equal(written.images[5], ds[5][0].numpy())
    np.testing.assert_array_equal(np.load(s.images, mmap_mode="r")[3], ds[3][0].numpy())
    again = write_split(SplitLayout(tmp_path / "t"), stream_loader(ds, 3, workers=0), len(ds), 8, ds.index.classes, False)
    assert again.digest == written.digest and DiskSplit.open(s).digest == written.digest
    assert list(written.labels) == list(ds.index.labels)


def test_data_stage_streams_an_imagefolder(split: Path, tmp_path: Path) -> None:
    study = StudyConfig.model_validate({"name": "f", "data": {"name": "imagefolder", "resolution": 16, "train_size": 16,
                                                              "val_size": 16, "workers": 1, "params": {"root": str(split)}}})
    summary = run_stage(STAGES.get("data"), study, {"data": tmp_path / "data"}, "test").summary
    assert summary["train_size"] == 12 and summary["val_size"] == 4 and summary["num_classes"] == 2
    assert DiskSplit.open(SplitLayout(tmp_path / "data" / "train")).images.shape == (12, 3, 16, 16)


def test_dry_run_reports_the_folder_layout_and_image_count(flat: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    import yaml

    study = tmp_path / "folder.yaml"
    study.write_text(yaml.safe_dump({"name": "folder", "output_dir": str(tmp_path / "out"), "data": {
        "name": "imagefolder", "resolution": 16, "train_size": 16, "val_size": 16,
        "params": {"root": str(flat), "val_fraction": 0.2}}}))
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "pae_lab", "run", str(study), "--dry-run"], cwd=root,
                          capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(root), "COLUMNS": "200",
                                                                            "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "data.params.root: flat layout, 24 train / 6 val images in 3 classes" in proc.stdout
    for name in ("cat", "dog", "emu"):  # an empty folder: named, with what is wrong, as a warning
        (flat / name).rename(tmp_path / name)
    proc = subprocess.run([sys.executable, "-m", "pae_lab", "run", str(study), "--dry-run"], cwd=root,
                          capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(root), "COLUMNS": "200",
                                                                            "PATH": "/usr/bin:/bin"})
    assert "warning:" in proc.stdout and "no class folders under" in proc.stdout
