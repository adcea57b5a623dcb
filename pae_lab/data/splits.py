"""A data split on disk: uint8 images, labels, optional segments and a digest, read batch by batch.

The data stage writes every split in this form (streamed datasets batch by batch, in-memory ones
in chunks); later stages open it as a `DiskSplit`, whose `images` and `segments` are `DiskArray`s,
so no stage holds a split in memory. The digest covers pixels, labels, segments and class names.
Where a split's files are is the caller's to say (`SplitFiles`; pae_lab.plan.layout.SplitLayout names them).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Protocol

import numpy as np

from pae_lab.data.diskarray import DiskArray, NpyWriter
from pae_lab.data.imageset import ImageSet, SplitShape
from pae_lab.fsutil import read_json, save_npy, write_json



class SplitFiles(Protocol):
    """The files of one split: its metadata (digest, class names, ...) and its arrays."""

    @property
    def meta(self) -> Path: ...
    @property
    def images(self) -> Path: ...
    @property
    def labels(self) -> Path: ...
    @property
    def segments(self) -> Path: ...


@dataclass(frozen=True)
class DiskSplit(SplitShape):
    images: DiskArray
    labels: np.ndarray
    class_names: list[str]
    segments: DiskArray | None
    digest: str

    @classmethod
    def open(cls, files: SplitFiles) -> "DiskSplit":
        meta = read_json(files.meta)
        if meta is None:
            raise FileNotFoundError(f"no data split at {files.meta.parent} ({files.meta.name} missing): "
                                    "rerun the data stage")
        segments = DiskArray(files.segments) if meta["has_segments"] else None
        return cls(DiskArray(files.images), np.load(files.labels), meta["class_names"], segments, meta["digest"])


def write_split(files: SplitFiles, batches: Iterable[tuple], n: int, resolution: int, class_names: list[str],
                has_segments: bool, progress: Callable[[int, int], None] | None = None) -> DiskSplit:
    """Write batches (uint8 images [b,3,R,R], labels [b][, int64 segments [b,R,R]]) as one split of `n` images."""
    images = NpyWriter(files.images, (n, 3, resolution, resolution), np.uint8)
    segments = NpyWriter(files.segments, (n, resolution, resolution), np.int64) if has_segments else None
    labels, h_img, h_seg = [], hashlib.sha256(), hashlib.sha256()
    for batch in batches:
        x, y = np.asarray(batch[0], np.uint8), np.asarray(batch[1], np.int64)
        images.write(x)
        h_img.update(np.ascontiguousarray(x).tobytes())
        labels.append(y)
        if segments is not None:
            seg = np.asarray(batch[2], np.int64)
            segments.write(seg)
            h_seg.update(np.ascontiguousarray(seg).tobytes())
        if progress is not None:
            progress(images.rows, n)
    images.close()
    if segments is not None:
        segments.close()
    label_array = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    save_npy(files.labels, label_array)
    parts = [h_img.hexdigest(), hashlib.sha256(label_array.tobytes()).hexdigest(),
             h_seg.hexdigest() if has_segments else "none", *class_names]
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]
    write_json(files.meta, {"digest": digest, "class_names": list(class_names), "has_segments": has_segments,
                                     "size": n, "resolution": resolution})
    return DiskSplit.open(files)


def write_imageset(files: SplitFiles, images: ImageSet, chunk: int = 1024) -> DiskSplit:
    """An in-memory ImageSet (procedural data) written in the same form."""
    def batches():
        for i in range(0, len(images), chunk):
            part = images.subset(slice(i, i + chunk))
            yield (part.images, part.labels) + (() if part.segments is None else (part.segments,))

    return write_split(files, batches(), len(images), images.resolution, images.class_names, images.segments is not None)
