""""imagefolder": the user's own images laid out as root/<class>/<image>, labels from folder names.

Images are resized (shorter side to `resolution`, bicubic) and centre-cropped. Optional
`masks_root` holds PNG label maps at the same relative paths (suffix .png): they become
`segments` after the same resize (nearest) and crop; without it `segments` is None.
With `split`, images come from root/<split>/<class>/.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pae_lab.data.imageset import ImageSet
from pae_lab.data.registry import register_dataset

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _resize_crop(path: Path, mode: str | None, resolution: int, resample: Image.Resampling) -> np.ndarray:
    """Read one file (converted to `mode` unless None), shorter side to `resolution`, centre crop."""
    with Image.open(path) as img:
        img = img.convert(mode) if mode else img.copy()  # copy: load before the file closes
    w, h = img.size
    scale = resolution / min(w, h)
    nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    img = img.resize((nw, nh), resample)
    left, top = (nw - resolution) // 2, (nh - resolution) // 2
    return np.asarray(img.crop((left, top, left + resolution, top + resolution)))


def _find(root: Path, max_per_class: int | None) -> tuple[list[Path], list[int], list[str]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"imagefolder: no class folders under {root}; lay images out as {root}/<class>/<image>")
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in EXTENSIONS)
        files += found[:max_per_class]
        labels += [label] * len(found[:max_per_class])
    if not files:
        raise FileNotFoundError(f"imagefolder: no images under {root}/<class>/ with extensions {', '.join(EXTENSIONS)}")
    return files, labels, classes


@register_dataset("imagefolder")
def imagefolder(root: str, resolution: int = 32, size: int | None = None, split: str | None = None, seed: int = 0,
                max_per_class: int | None = None, masks_root: str | None = None) -> ImageSet:
    """root/<class>/*.jpg|png -> ImageSet; `size` keeps a seeded random subset of that many images."""
    root_path = Path(root).expanduser()
    if split is not None:
        root_path = root_path / split
    if not root_path.is_dir():
        hint = f" (split={split!r} looks in root/{split}/)" if split is not None else ""
        raise FileNotFoundError(f"imagefolder: root {root_path} is not a directory{hint}; set data.params.root")
    files, labels, classes = _find(root_path, max_per_class)
    order = np.arange(len(files))
    if size is not None and size < len(files):
        order = np.sort(np.random.default_rng(seed).permutation(len(files))[:size])
    images = np.stack([_resize_crop(files[i], "RGB", resolution, Image.Resampling.BICUBIC)
                       for i in order]).transpose(0, 3, 1, 2).copy()
    segments = None
    if masks_root is not None:
        masks = Path(masks_root).expanduser() / (split or "")
        paths = [masks / files[i].relative_to(root_path).with_suffix(".png") for i in order]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"imagefolder: {len(missing)} mask(s) missing under {masks}, e.g. {missing[0]}; "
                                    f"each image needs a PNG label map at the same relative path")
        segments = np.stack([_resize_crop(p, None, resolution, Image.Resampling.NEAREST) for p in paths]).astype(np.int64)
    return ImageSet(images, np.asarray(labels, np.int64)[order], classes, segments)
