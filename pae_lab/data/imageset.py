"""`ImageSet`: the one in-memory form every dataset entry returns, with a content digest.

Stages key their caches on `digest`, so two builds that produce the same pixels, labels and
segments share cached work no matter which entry or parameters made them. On disk an ImageSet
is a single uncompressed `.npz` (written atomically); it is small enough at pae-lab's sizes to
load whole, and one file is one rename.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pae_lab.fsutil import atomic_write


def content_digest(images: np.ndarray, labels: np.ndarray, segments: np.ndarray | None, class_names: list[str]) -> str:
    """sha256 over shapes, dtypes and bytes of every array plus the class names (first 16 hex digits)."""
    h = hashlib.sha256()
    for name, arr in (("images", images), ("labels", labels), ("segments", segments)):
        h.update(name.encode())
        if arr is None:
            h.update(b"none")
            continue
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(memoryview(arr).cast("B"))
    h.update("\x1f".join(class_names).encode())
    return h.hexdigest()[:16]


class SplitShape:
    """Size, side and class count of anything with `images` [N,3,H,W], `labels` and `class_names`."""

    images: np.ndarray
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class ImageSet(SplitShape):
    """uint8 images [N,3,H,W], int64 labels [N], int64 instance segments [N,H,W] (0 = background) or None."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    segments: np.ndarray | None = None
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        images, labels, segments = self.images, self.labels, self.segments
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"ImageSet.images must be uint8 [N,3,H,W], got {images.dtype} {images.shape}")
        n, _, h, w = images.shape
        if labels.dtype != np.int64 or labels.shape != (n,):
            raise ValueError(f"ImageSet.labels must be int64 [{n}], got {labels.dtype} {labels.shape}")
        if n and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise ValueError(f"ImageSet.labels must lie in [0, {len(self.class_names)}) (one per class name), "
                             f"got [{labels.min()}, {labels.max()}]")
        if segments is not None and (segments.dtype != np.int64 or segments.shape != (n, h, w)):
            raise ValueError(f"ImageSet.segments must be int64 [{n},{h},{w}] or None, got {segments.dtype} {segments.shape}")
        object.__setattr__(self, "class_names", list(self.class_names))
        object.__setattr__(self, "digest", content_digest(images, labels, segments, self.class_names))

    def subset(self, index: np.ndarray | slice) -> ImageSet:
        """The images at `index` (a slice or an index array), with their labels and segments."""
        return ImageSet(self.images[index], self.labels[index], self.class_names,
                        None if self.segments is None else self.segments[index])

    def save(self, path: str | Path) -> Path:
        """Write one uncompressed .npz atomically (temp file beside it, then rename)."""
        arrays = {"images": self.images, "labels": self.labels, "class_names": np.array(self.class_names, dtype=str),
                  "digest": np.array(self.digest)}
        if self.segments is not None:
            arrays["segments"] = self.segments

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

        return atomic_write(Path(path), write)

    @classmethod
    def load(cls, path: str | Path) -> ImageSet:
        """Read a file written by `save`; a digest that no longer matches the arrays is an error."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no ImageSet file at {path}: write one with ImageSet.save(path)")
        with np.load(path, allow_pickle=False) as npz:
            out = cls(npz["images"], npz["labels"], [str(c) for c in npz["class_names"]],
                      npz["segments"] if "segments" in npz.files else None)
            stored = str(npz["digest"])
        if stored != out.digest:
            raise ValueError(f"{path} is corrupt: stored digest {stored} != content digest {out.digest}; rebuild it")
        return out
