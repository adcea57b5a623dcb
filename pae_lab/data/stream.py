"""Streaming image folders: decoded, resized and centre-cropped per item, in DataLoader workers.

Two layouts: ImageNet's `root/train/<class>/` + `root/val/<class>/`, or a flat `root/<class>/`
split by a seeded shuffle (`val_fraction`). Each split is written in a seeded random order, so
its first n images are a class-mixed subset. Order is deterministic and resumable: a
`ResumableSampler` is a `DistributedSampler` (so it shards over ranks the same way) that also
skips the first `start` items of an epoch. Nothing but file paths and labels is held in memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from pae_lab.data.imagefolder import EXTENSIONS, _resize_crop


@dataclass(frozen=True)
class FolderIndex:
    """The files of one split, their labels, the class names (shared by both splits) and the layout found."""

    files: list[Path]
    labels: np.ndarray
    classes: list[str]
    layout: str  # "split" (root/train, root/val) or "flat" (root/<class>, seeded split)

    def __len__(self) -> int:
        return len(self.files)


def detect_layout(root: Path) -> str:
    return "split" if (root / "train").is_dir() and (root / "val").is_dir() else "flat"


def _classes(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(folder: Path, classes: list[str], max_per_class: int | None) -> tuple[list[Path], list[int]]:
    files, labels = [], []
    for label, name in enumerate(classes):
        if not (folder / name).is_dir():
            continue
        found = sorted(p for p in (folder / name).rglob("*") if p.suffix.lower() in EXTENSIONS)[:max_per_class]
        files += found
        labels += [label] * len(found)
    return files, labels


def folder_problem(root: str | Path) -> str | None:
    """What makes `root` no image folder, or None; cheap enough for preflight, as it stops at the first image."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return f"{root} is not a directory; lay images out as root/<class>/ or root/train/<class>/ + root/val/<class>/"
    top = root / "train" if detect_layout(root) == "split" else root
    classes = _classes(top)
    if not classes:
        return f"no class folders under {top}; lay images out as {top}/<class>/<image>"
    if not any(p.suffix.lower() in EXTENSIONS for name in classes for p in (top / name).rglob("*")):
        return f"no images ({', '.join(EXTENSIONS)}) in the {len(classes)} class folder(s) under {top}"
    return None


def scan_imagefolder(root: str | Path, split: str, *, size: int | None = None, val_fraction: float = 0.1, seed: int = 0,
                     max_per_class: int | None = None) -> FolderIndex:
    """Index one split in a seeded random order; `size` keeps the first `size` files of that order."""
    problem = folder_problem(root)
    if problem:
        raise FileNotFoundError(f"data.params.root: {problem}")
    root = Path(root).expanduser()
    layout = detect_layout(root)
    classes = _classes(root / "train" if layout == "split" else root)
    if layout == "split":
        files, labels = _files(root / split, classes, max_per_class)
    else:
        every, every_labels = _files(root, classes, max_per_class)
        order = np.random.default_rng([seed, 7]).permutation(len(every))
        n_val = int(round(val_fraction * len(every)))
        chosen = np.sort(order[:n_val] if split == "val" else order[n_val:])
        files, labels = [every[i] for i in chosen], [every_labels[i] for i in chosen]
    if not files:
        raise FileNotFoundError(f"data.params.root: no {split} images ({', '.join(EXTENSIONS)}) under {root} ({layout} layout)")
    # a seeded shuffle, so that every "first n images" downstream (FD reference, panel, probes) mixes the classes
    keep = np.random.default_rng([seed, 11]).permutation(len(files))[:size]
    return FolderIndex([files[i] for i in keep], np.asarray(labels, np.int64)[keep], classes, layout)


class FolderImages(Dataset):
    """Item i: (uint8 [3, R, R], label[, int64 segments [R, R]]): the file resized (shorter side to R) and centre-cropped.

    With `masks` (a folder mirroring the image folder, PNG label maps), segments come along (nearest resize).
    """

    def __init__(self, index: FolderIndex, resolution: int, root: Path | None = None, masks: Path | None = None):
        self.index, self.resolution, self.root, self.masks = index, resolution, root, masks

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple:
        path = self.index.files[i]
        pixels = _resize_crop(path, "RGB", self.resolution, Image.Resampling.BICUBIC)
        item = (torch.from_numpy(pixels.transpose(2, 0, 1).copy()), int(self.index.labels[i]))
        if self.masks is None:
            return item
        mask = self.masks / path.relative_to(self.root).with_suffix(".png")
        if not mask.is_file():
            raise FileNotFoundError(f"data.params.masks_root: mask {mask} missing for image {path}")
        seg = _resize_crop(mask, None, self.resolution, Image.Resampling.NEAREST).astype(np.int64)
        return (*item, torch.from_numpy(seg))


class ResumableSampler(DistributedSampler):
    """`DistributedSampler` (seeded per epoch, sharded by rank) that starts `start` items into the epoch."""

    def __init__(self, dataset: Dataset, *, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0,
                 start: int = 0, drop_last: bool = False):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.start = start

    def __iter__(self):
        return iter(list(super().__iter__())[self.start:])

    def __len__(self) -> int:
        return max(0, super().__len__() - self.start)


def stream_loader(dataset: Dataset, batch_size: int, *, workers: int = 2, shuffle: bool = False, seed: int = 0,
                  epoch: int = 0, start: int = 0, rank: int = 0, world_size: int = 1) -> DataLoader:
    """Batches of this rank's share, in the order fixed by (seed, epoch), from item `start` on."""
    sampler = ResumableSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, start=start)
    sampler.set_epoch(epoch)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers)


def imagefolder_stream(root: str, resolution: int, size: int | None = None, split: str = "train", seed: int = 0,
                       val_fraction: float = 0.1, max_per_class: int | None = None,
                       masks_root: str | None = None) -> tuple[FolderImages, list[str]]:
    """The streaming form of the `imagefolder` dataset (same parameters, plus `val_fraction` for flat folders)."""
    index = scan_imagefolder(root, split, size=size, val_fraction=val_fraction, seed=seed, max_per_class=max_per_class)
    masks = Path(masks_root).expanduser() if masks_root else None
    return FolderImages(index, resolution, Path(root).expanduser(), masks), index.classes


# Datasets that stream from disk: `name -> factory(**data params) -> (Dataset, class names)`.
STREAMING = {"imagefolder": imagefolder_stream}


def describe_folder(root: str | Path, seed: int = 0, val_fraction: float = 0.1, max_per_class: int | None = None,
                    **_: object) -> str:
    """One line for `--dry-run`: the layout found and the images per split."""
    found = {split: scan_imagefolder(root, split, val_fraction=val_fraction, seed=seed, max_per_class=max_per_class)
             for split in ("train", "val")}
    return (f"{found['train'].layout} layout, {len(found['train'])} train / {len(found['val'])} val images "
            f"in {len(found['train'].classes)} classes")
