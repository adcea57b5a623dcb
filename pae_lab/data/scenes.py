""""scenes": the embedded default dataset, procedurally drawn, with instance masks and class labels.

Why procedural: the study needs images with known object layout (SSC compares latent clusters
with instance segments) and known classes (GSQ and linear probes), on any machine, offline.

Each image is a textured background with 1..max_objects shapes (own colour, own texture, rotated,
possibly occluding each other). `labels` is the class of the object with the most visible pixels;
`segments` holds instance ids after occlusion (0 = background, 1..K consecutive, every id visible).

Every random number of image i comes from its own generator seeded by (seed, split, i), and
shapes and textures are defined in continuous coordinates, so:
- the first n images of a size-N build equal a size-n build (prefix-stable);
- the same (seed, split, i) draws the same scene at every resolution;
- "train", "val" and "test" never share a scene generator.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from pae_lab.data.imageset import ImageSet
from pae_lab.data.registry import register_dataset

SPLITS = {"train": 0, "val": 1, "test": 2}
NOISE_GRID = 8  # value-noise lattice per image: textures stay resolution-independent
CHUNK = 256  # images rendered at once: bounds memory at large resolutions

Array = np.ndarray
_SQ3 = math.sqrt(3.0)


def _star(u: Array, v: Array) -> Array:
    r = np.hypot(u, v)
    theta = np.arctan2(v, u)
    return r <= 0.45 + 0.55 * ((1.0 + np.cos(5.0 * theta)) / 2.0) ** 2


# Shapes in object coordinates (radius 1); the list order fixes class ids.
SHAPES: dict[str, Callable[[Array, Array], Array]] = {
    "disk": lambda u, v: u * u + v * v <= 1.0,
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.8,
    "triangle": lambda u, v: (v <= 0.5) & (_SQ3 / 2 * u - v / 2 <= 0.5) & (-_SQ3 / 2 * u - v / 2 <= 0.5),
    "ring": lambda u, v: (u * u + v * v <= 1.0) & (u * u + v * v >= 0.36),
    "cross": lambda u, v: ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.95)),
    "star": _star,
    "diamond": lambda u, v: np.abs(u) + np.abs(v) <= 1.0,
    "hexagon": lambda u, v: np.maximum(np.abs(u), np.maximum(np.abs(u / 2 + v * _SQ3 / 2), np.abs(u / 2 - v * _SQ3 / 2))) <= 0.87,
    "crescent": lambda u, v: (u * u + v * v <= 1.0) & ((u - 0.45) ** 2 + v * v >= 0.64),
    "bar": lambda u, v: (np.abs(u) <= 1.0) & (np.abs(v) <= 0.35),
}


def _value_noise(grid: Array, x: Array, y: Array) -> Array:
    """Smooth periodic noise in [0, 1]: bilinear (smoothstep) lookup of a [b,G,G] lattice at grid units x, y."""
    b, g, _ = grid.shape
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    x0, y0 = x0.astype(np.int64) % g, y0.astype(np.int64) % g
    x1, y1 = (x0 + 1) % g, (y0 + 1) % g
    flat = grid.reshape(-1)
    base = (np.arange(b) * g * g).reshape(-1, *([1] * (x.ndim - 1)))
    at = lambda yy, xx: flat[base + yy * g + xx]  # noqa: E731
    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    return top * (1 - fy) + bottom * fy


# Textures: a mix weight t in [0, 1] between an object's two colours, in its own coordinates.
TEXTURES: dict[str, Callable[[Array, Array, Array, Array], Array]] = {
    "solid": lambda u, v, f, grid: np.zeros_like(u),
    "gradient": lambda u, v, f, grid: np.clip((u + 1.0) / 2.0, 0.0, 1.0),
    "stripes": lambda u, v, f, grid: (np.sin(math.pi * f * u) > 0).astype(u.dtype),
    "checker": lambda u, v, f, grid: ((np.floor(f * u / 2) + np.floor(f * v / 2)) % 2).astype(u.dtype),
    "noise": lambda u, v, f, grid: _value_noise(grid, f * (u + 1.0), f * (v + 1.0)).astype(u.dtype),
}


def _by_choice(fns: list[Callable[..., Array]], choice: Array, out: Array, *args: Array) -> Array:
    """out[i] = fns[choice[i]](*(a[i] for a in args)), evaluating each function once on its images."""
    for k, fn in enumerate(fns):
        idx = np.nonzero(choice == k)[0]
        if idx.size:
            out[idx] = fn(*(a[idx] for a in args))
    return out


class _Layout:
    """Column layout of each image's uniform draws; the same for every resolution."""

    HEADER = 2  # number of objects, slot of the main (large) object
    BG = 9  # colour a (3), colour b (3), texture, angle, frequency
    OBJ = 15  # class, centre (2), radius, angle, colour 1 (3), colour 2 (3), texture, frequency, noise offset (2)

    def __init__(self, max_objects: int):
        self.max_objects = max_objects
        self.bg = self.HEADER
        self.obj = self.bg + self.BG
        self.noise = self.obj + self.OBJ * max_objects
        self.width = self.noise + 2 * NOISE_GRID * NOISE_GRID

    def slot(self, u: Array, j: int) -> Array:
        start = self.obj + self.OBJ * j
        return u[:, start:start + self.OBJ]


def _draw_uniforms(seed: int, split: str, start: int, stop: int, layout: _Layout) -> Array:
    """Row i holds image i's draws from its own generator (seed, split, i): prefix-stable."""
    sid = SPLITS[split]
    return np.stack([np.random.default_rng([seed, sid, i]).random(layout.width, dtype=np.float32)
                     for i in range(start, stop)])


def _texture(u: Array, v: Array, choice: Array, freq: Array, grid: Array) -> Array:
    fns = list(TEXTURES.values())
    return _by_choice(fns, choice, np.empty_like(u), u, v, freq[:, None, None], grid)


def _render(draws: Array, layout: _Layout, res: int, num_classes: int) -> tuple[Array, Array, Array]:
    """Images float [b,3,res,res] in [0,1], instance map [b,res,res], per-slot class [b,max_objects]."""
    b, n_tex = len(draws), len(TEXTURES)
    axis = (2.0 * (np.arange(res, dtype=np.float32) + 0.5) / res - 1.0)  # pixel centres in [-1, 1]
    X = np.broadcast_to(axis[None, None, :], (b, res, res))
    Y = np.broadcast_to(axis[None, :, None], (b, res, res))
    noise = draws[:, layout.noise:].reshape(b, 2, NOISE_GRID, NOISE_GRID)

    n_obj = 1 + np.minimum((draws[:, 0] * layout.max_objects).astype(np.int64), layout.max_objects - 1)
    main = np.minimum((draws[:, 1] * n_obj).astype(np.int64), n_obj - 1)

    bg = draws[:, layout.bg:layout.bg + layout.BG]
    col_a = 0.3 + 0.4 * bg[:, 0:3]  # muted background colours, low contrast
    col_b = np.clip(col_a + 0.35 * (bg[:, 3:6] - 0.5), 0.0, 1.0)
    ang = bg[:, 7, None, None] * 2 * math.pi
    bu, bv = X * np.cos(ang) + Y * np.sin(ang), -X * np.sin(ang) + Y * np.cos(ang)
    t = _texture(bu, bv, (bg[:, 6] * n_tex).astype(np.int64), 1.0 + 3.0 * bg[:, 8], noise[:, 0])
    canvas = col_a[:, :, None, None] * (1 - t[:, None]) + col_b[:, :, None, None] * t[:, None]
    seg = np.zeros((b, res, res), dtype=np.int64)
    classes = np.zeros((b, layout.max_objects), dtype=np.int64)

    for j in range(layout.max_objects):
        p = layout.slot(draws, j)
        cls = np.minimum((p[:, 0] * num_classes).astype(np.int64), num_classes - 1)
        classes[:, j] = cls
        sel = np.nonzero(j < n_obj)[0]
        if not sel.size:
            continue
        p, cls, is_main = p[sel], cls[sel], (main[sel] == j)
        # main object: radius 0.28-0.40 of the image side, near the centre; others 0.10-0.20 anywhere
        radius = np.where(is_main, 0.28 + 0.12 * p[:, 3], 0.10 + 0.10 * p[:, 3]) * 2.0
        spread = np.where(is_main, 0.4, 0.8)[:, None]
        centre = (2.0 * p[:, 1:3] - 1.0) * spread
        ang = (p[:, 4] * 2 * math.pi)[:, None, None]
        dx, dy = X[sel] - centre[:, 0, None, None], Y[sel] - centre[:, 1, None, None]
        r = radius[:, None, None]
        u = (dx * np.cos(ang) + dy * np.sin(ang)) / r
        v = (-dx * np.sin(ang) + dy * np.cos(ang)) / r
        mask = _by_choice(list(SHAPES.values())[:num_classes], cls, np.empty(u.shape, bool), u, v)
        c1 = p[:, 5:8]
        c2 = np.clip(c1 + 0.9 * (p[:, 8:11] - 0.5), 0.0, 1.0)
        # noise offset shifts the shared object lattice so objects of one image differ
        t = _texture(u + 2 * p[:, 13, None, None], v + 2 * p[:, 14, None, None],
                     (p[:, 11] * n_tex).astype(np.int64), 1.5 + 2.5 * p[:, 12], noise[sel, 1])
        colour = c1[:, :, None, None] * (1 - t[:, None]) + c2[:, :, None, None] * t[:, None]
        canvas[sel] = np.where(mask[:, None], colour, canvas[sel])
        seg[sel] = np.where(mask, j + 1, seg[sel])
    return canvas, seg, classes


def _compact(seg: Array, classes: Array) -> tuple[Array, Array]:
    """Renumber visible instances 1..K (fully occluded ones vanish); label = class of the most visible."""
    b, slots = classes.shape
    flat = seg.reshape(b, -1)
    counts = np.bincount((flat + (slots + 1) * np.arange(b)[:, None]).ravel(), minlength=b * (slots + 1))
    counts = counts.reshape(b, slots + 1)[:, 1:]
    labels = classes[np.arange(b), counts.argmax(1)]
    visible = counts > 0
    lut = np.concatenate([np.zeros((b, 1), np.int64), np.cumsum(visible, 1) * visible], axis=1)
    return np.take_along_axis(lut, flat, axis=1).reshape(seg.shape), labels


@register_dataset("scenes")
def scenes(resolution: int = 32, size: int = 2048, split: str = "train", seed: int = 0,
           num_classes: int = 8, max_objects: int = 4, supersample: int = 1) -> ImageSet:
    """Procedural scenes (see the module doc). `supersample` > 1 anti-aliases by rendering larger."""
    if split not in SPLITS:
        raise ValueError(f"scenes: split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not 2 <= num_classes <= len(SHAPES):
        raise ValueError(f"scenes: num_classes must be in [2, {len(SHAPES)}] (shapes: {', '.join(SHAPES)}), got {num_classes}")
    if not 1 <= max_objects <= 8:
        raise ValueError(f"scenes: max_objects must be in [1, 8], got {max_objects}")
    if resolution < 8 or size < 1 or supersample < 1:
        raise ValueError(f"scenes: need resolution >= 8, size >= 1, supersample >= 1; "
                         f"got resolution={resolution}, size={size}, supersample={supersample}")
    layout = _Layout(max_objects)
    images = np.empty((size, 3, resolution, resolution), np.uint8)
    segments = np.empty((size, resolution, resolution), np.int64)
    labels = np.empty(size, np.int64)
    ss, centre = supersample, supersample // 2
    for start in range(0, size, CHUNK):
        stop = min(start + CHUNK, size)
        canvas, seg, classes = _render(_draw_uniforms(seed, split, start, stop, layout), layout,
                                       resolution * ss, num_classes)
        if ss > 1:
            canvas = canvas.reshape(stop - start, 3, resolution, ss, resolution, ss).mean(axis=(3, 5))
            seg = seg[:, centre::ss, centre::ss]
        segments[start:stop], labels[start:stop] = _compact(seg, classes)
        images[start:stop] = np.clip(canvas * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return ImageSet(images, labels, list(SHAPES)[:num_classes], segments)
