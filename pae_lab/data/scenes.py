""""scenes": the embedded default dataset, procedurally drawn, with instance masks and class labels.

Why procedural: the study needs images with known object layout (SSC compares latent clusters
with instance segments) and known classes (GSQ and linear probes), on any machine, offline.

Each image is a textured background with 1..max_objects shapes (rotated, possibly occluding each
other). `labels` is the class of the object with the most visible pixels; `segments` holds instance
ids after occlusion (0 = background, 1..K consecutive, every id visible). What the class is depends
on `cue`:
- "shape" (the default): the class is the object's shape; each object has its own colours and a
  random texture, so colour marks the segments and texture is noise.
- "texture": the class is the object's texture family (`FAMILIES`: stripes, checker, dots, hex,
  waves, rings, crosshatch, noise) at a random scale, angle and phase, on a random shape, drawn in
  the background's own two colours, which itself carries another family. Only texture marks the
  class and the boundaries, and every family covers about half of its area with each colour, so
  average colour gives neither away: what an ImageNet network, biased toward texture, reads well
  and a pixel autoencoder's local code does not.
- "texture_grid": as "texture", with every texture locked to an 8 x 8 grid (`GRID`, the default
  studies' latent grid): repeating once per cell, unrotated, phase 0, from families (`GRID_FAMILIES`)
  that cover exactly half of each cell, so every cell inside a region holds the same pixels and its
  mean colour is the palette's midpoint whatever the family. A pixel autoencoder's latent then sees
  the segments, and pooled colour does not; a fixed filter bank sees both the segments and the class.

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


def _frac(x: Array) -> Array:
    return x - np.floor(x)


def _hex_dots(x: Array, y: Array) -> Array:
    """Dots on a triangular lattice (unit spacing), radius 0.371: half the area."""
    h = _SQ3
    da = (_frac(x + 0.5) - 0.5) ** 2 + (_frac(y / h + 0.5) - 0.5) ** 2 * h * h
    db = (_frac(x) - 0.5) ** 2 + (_frac(y / h) - 0.5) ** 2 * h * h
    return (np.minimum(da, db) < 0.371 ** 2).astype(x.dtype)


# Texture families of cue="texture": a mix weight in {0, 1} from coordinates x, y in units of the
# texture's period (centred on the object, rotated, phase-shifted), each about half 1. The list
# order fixes class ids.
FAMILIES: dict[str, Callable[[Array, Array, Array, Array], Array]] = {
    "stripes": lambda x, y, r, grid: (_frac(x) < 0.5).astype(x.dtype),
    "checker": lambda x, y, r, grid: ((np.floor(2 * x) + np.floor(2 * y)) % 2).astype(x.dtype),
    "dots": lambda x, y, r, grid: ((_frac(x) - 0.5) ** 2 + (_frac(y) - 0.5) ** 2 < 0.4 ** 2).astype(x.dtype),
    "hex": lambda x, y, r, grid: _hex_dots(x, y),
    "waves": lambda x, y, r, grid: (_frac(x + 0.3 * np.sin(2 * math.pi * y / 2)) < 0.5).astype(x.dtype),
    "rings": lambda x, y, r, grid: (_frac(r) < 0.5).astype(x.dtype),
    "crosshatch": lambda x, y, r, grid: ((_frac(x) < 0.293) | (_frac(y) < 0.293)).astype(x.dtype),
    "noise": lambda x, y, r, grid: (_value_noise(grid, 1.5 * x, 1.5 * y) > 0.5).astype(x.dtype),
}


# cue="texture_grid": each family repeats once per cell of a GRID x GRID grid and covers exactly half of
# the cell at 1, 2, 4 or 8 samples per pixel of a resolution divisible by GRID (tests/test_data.py)
GRID = 8
EDGE = 1 / 256  # keeps the diagonals' edges off the pixel centres, where rounding would pick a side per cell
GRID_FAMILIES: dict[str, Callable[[Array, Array, Array, Array], Array]] = {
    "vertical": lambda x, y, r, grid: (_frac(x) < 0.5).astype(x.dtype),
    "horizontal": lambda x, y, r, grid: (_frac(y) < 0.5).astype(x.dtype),
    "checker": lambda x, y, r, grid: ((np.floor(2 * x) + np.floor(2 * y)) % 2).astype(x.dtype),
    "brick": lambda x, y, r, grid: (_frac(x + 0.25 * (np.floor(2 * y) % 2)) < 0.5).astype(x.dtype),
    "diagonal": lambda x, y, r, grid: (_frac(x + y + EDGE) < 0.5).astype(x.dtype),
    "antidiagonal": lambda x, y, r, grid: (_frac(x - y + EDGE) < 0.5).astype(x.dtype),
    "fine_checker": lambda x, y, r, grid: ((np.floor(4 * x) + np.floor(4 * y)) % 2).astype(x.dtype),
    "fine_stripes": lambda x, y, r, grid: (_frac(2 * x) < 0.5).astype(x.dtype),
}
CUES = {"shape": SHAPES, "texture": FAMILIES, "texture_grid": GRID_FAMILIES}  # cue -> what its classes are


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


def _rotate(x: Array, y: Array, angle: Array) -> tuple[Array, Array]:
    a = angle[:, None, None]
    return x * np.cos(a) + y * np.sin(a), -x * np.sin(a) + y * np.cos(a)


def _mix(a: Array, b: Array, t: Array) -> Array:
    """Per-image colours a, b [n, 3] blended by the mix weight t [n, H, W] -> [n, 3, H, W]."""
    return a[:, :, None, None] * (1 - t[:, None]) + b[:, :, None, None] * t[:, None]


def _class_of(draw: Array, num_classes: int) -> Array:
    """A slot's class from its class draw in [0, 1)."""
    return np.minimum((draw * num_classes).astype(np.int64), num_classes - 1)


def _grid(b: int, res: int) -> tuple[Array, Array]:
    axis = (2.0 * (np.arange(res, dtype=np.float32) + 0.5) / res - 1.0)  # pixel centres in [-1, 1]
    return np.broadcast_to(axis[None, None, :], (b, res, res)), np.broadcast_to(axis[None, :, None], (b, res, res))


MAIN_RADIUS = {"shape": (0.28, 0.40), "texture": (0.36, 0.48)}  # of the image side, per cue


def _object_frame(p: Array, is_main: Array, X: Array, Y: Array, main_radius: tuple[float, float] = MAIN_RADIUS["shape"]
                  ) -> tuple[Array, Array, Array]:
    """Object coordinates (u, v) of every pixel, radius 1 at the object's edge, and the radius."""
    # main object: `main_radius` of the image side, near the centre; others 0.10-0.20 anywhere
    low, high = main_radius
    radius = np.where(is_main, low + (high - low) * p[:, 3], 0.10 + 0.10 * p[:, 3]) * 2.0
    spread = np.where(is_main, 0.4, 0.8)[:, None]
    centre = (2.0 * p[:, 1:3] - 1.0) * spread
    u, v = _rotate(X - centre[:, 0, None, None], Y - centre[:, 1, None, None], p[:, 4] * 2 * math.pi)
    r = radius[:, None, None]
    return u / r, v / r, r


def _counts(draws: Array, layout: _Layout) -> tuple[Array, Array]:
    """Objects per image and the slot of the main (large) object."""
    n_obj = 1 + np.minimum((draws[:, 0] * layout.max_objects).astype(np.int64), layout.max_objects - 1)
    return n_obj, np.minimum((draws[:, 1] * n_obj).astype(np.int64), n_obj - 1)


def _slots(draws: Array, layout: _Layout, n_obj: Array, num_classes: int, classes: Array):
    """Per object slot j: its class for every image (written into `classes[:, j]`, drawn or not), then
    (j, the images that draw it, their slot parameters, their classes) when any image does."""
    for j in range(layout.max_objects):
        p = layout.slot(draws, j)
        cls = _class_of(p[:, 0], num_classes)
        classes[:, j] = cls
        sel = np.nonzero(j < n_obj)[0]
        if sel.size:
            yield j, sel, p[sel], cls[sel]


def _render(draws: Array, layout: _Layout, res: int, num_classes: int) -> tuple[Array, Array, Array]:
    """cue="shape": images float [b,3,res,res] in [0,1], instance map [b,res,res], per-slot class [b,max_objects]."""
    b, n_tex = len(draws), len(TEXTURES)
    X, Y = _grid(b, res)
    noise = draws[:, layout.noise:].reshape(b, 2, NOISE_GRID, NOISE_GRID)
    n_obj, main = _counts(draws, layout)

    bg = draws[:, layout.bg:layout.bg + layout.BG]
    col_a = 0.3 + 0.4 * bg[:, 0:3]  # muted background colours, low contrast
    col_b = np.clip(col_a + 0.35 * (bg[:, 3:6] - 0.5), 0.0, 1.0)
    bu, bv = _rotate(X, Y, bg[:, 7] * 2 * math.pi)
    t = _texture(bu, bv, (bg[:, 6] * n_tex).astype(np.int64), 1.0 + 3.0 * bg[:, 8], noise[:, 0])
    canvas = _mix(col_a, col_b, t)
    seg, classes = np.zeros((b, res, res), dtype=np.int64), np.zeros((b, layout.max_objects), dtype=np.int64)

    for j, sel, p, cls in _slots(draws, layout, n_obj, num_classes, classes):
        u, v, _ = _object_frame(p, main[sel] == j, X[sel], Y[sel])
        mask = _by_choice(list(SHAPES.values())[:num_classes], cls, np.empty(u.shape, bool), u, v)
        c1 = p[:, 5:8]
        c2 = np.clip(c1 + 0.9 * (p[:, 8:11] - 0.5), 0.0, 1.0)
        # noise offset shifts the shared object lattice so objects of one image differ
        t = _texture(u + 2 * p[:, 13, None, None], v + 2 * p[:, 14, None, None],
                     (p[:, 11] * n_tex).astype(np.int64), 1.5 + 2.5 * p[:, 12], noise[sel, 1])
        colour = _mix(c1, c2, t)
        canvas[sel] = np.where(mask[:, None], colour, canvas[sel])
        seg[sel] = np.where(mask, j + 1, seg[sel])
    return canvas, seg, classes


def _family(x: Array, y: Array, family: Array, period: Array, phase: Array, grid: Array,
            families: dict[str, Callable[..., Array]]) -> Array:
    """Mix weight of each image's texture family (of `families`) at coordinates x, y (image units)."""
    s = 1.0 / period[:, None, None]
    r = np.hypot(x, y) * s
    xs, ys = x * s + phase[:, 0, None, None], y * s + phase[:, 1, None, None]
    return _by_choice(list(families.values()), family, np.empty_like(x), xs, ys, r, grid)


def _render_textured(draws: Array, layout: _Layout, res: int, num_classes: int, locked: bool = False
                     ) -> tuple[Array, Array, Array]:
    """cue="texture": as `_render`, with the class a texture family and one palette per image.

    Draw columns reused: an object's class column picks its family, its texture column its shape,
    its angle rotates shape and texture, its frequency sets the period (0.12-0.22 of the image side,
    4-7 px at 32 px), its first colour draw swaps the palette, its noise offsets are the phase. The
    background's family differs from the main object's (else the main object would have no edge).
    `locked` (cue="texture_grid"): GRID_FAMILIES in image coordinates, repeating once per grid cell, phase 0.
    """
    b = len(draws)
    X, Y = _grid(b, res)
    noise = draws[:, layout.noise:].reshape(b, 2, NOISE_GRID, NOISE_GRID)
    n_obj, main = _counts(draws, layout)
    period = lambda f: 2.0 * (0.12 + 0.10 * f)  # noqa: E731  (image units: the side is 2)

    bg = draws[:, layout.bg:layout.bg + layout.BG]
    col_a = 0.2 + 0.6 * bg[:, 0:3]
    col_b = col_a + np.where(col_a > 0.5, -1.0, 1.0) * (0.25 + 0.15 * bg[:, 3:6])  # contrast 0.25-0.4 per channel
    class_draw = np.stack([layout.slot(draws, j)[:, 0] for j in range(layout.max_objects)], 1)[np.arange(b), main]
    main_cls = _class_of(class_draw, num_classes)
    bg_family = (main_cls + 1 + (bg[:, 6] * (num_classes - 1)).astype(np.int64)) % num_classes
    families, cell = (GRID_FAMILIES, 2.0 / GRID) if locked else (FAMILIES, None)

    def texture(x, y, family, frequency, phase, grid):
        """Locked: repeating once per grid cell at phase 0 (x, y the image's coordinates); else the drawn period and phase."""
        if locked:
            return _family(x, y, family, np.full(len(x), cell), np.zeros_like(phase), grid, families)
        return _family(x, y, family, period(frequency), phase, grid, families)

    bx, by = (X, Y) if locked else _rotate(X, Y, bg[:, 7] * 2 * math.pi)
    t = texture(bx, by, bg_family, bg[:, 8], bg[:, 3:5], noise[:, 0])
    canvas = _mix(col_a, col_b, t)
    seg, classes = np.zeros((b, res, res), dtype=np.int64), np.zeros((b, layout.max_objects), dtype=np.int64)

    for j, sel, p, cls in _slots(draws, layout, n_obj, num_classes, classes):
        u, v, r = _object_frame(p, main[sel] == j, X[sel], Y[sel], MAIN_RADIUS["texture"])
        shape = np.minimum((p[:, 11] * len(SHAPES)).astype(np.int64), len(SHAPES) - 1)
        mask = _by_choice(list(SHAPES.values()), shape, np.empty(u.shape, bool), u, v)
        tx, ty = (X[sel], Y[sel]) if locked else (u * r, v * r)
        t = texture(tx, ty, cls, p[:, 12], p[:, 13:15], noise[sel, 1])
        swap = (p[:, 5] < 0.5)[:, None, None, None]
        lo, hi = col_a[sel], col_b[sel]
        colour = np.where(swap, _mix(hi, lo, t), _mix(lo, hi, t))
        canvas[sel] = np.where(mask[:, None], colour, canvas[sel])
        seg[sel] = np.where(mask, j + 1, seg[sel])
    return canvas, seg, classes


RENDERERS = {"shape": _render, "texture": _render_textured,
             "texture_grid": lambda *args: _render_textured(*args, locked=True)}


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
           num_classes: int = 8, max_objects: int = 4, supersample: int = 1, cue: str = "shape") -> ImageSet:
    """Procedural scenes (see the module doc). `supersample` > 1 anti-aliases by rendering larger."""
    if split not in SPLITS:
        raise ValueError(f"scenes: split must be one of {', '.join(SPLITS)}, got {split!r}")
    if cue not in RENDERERS:
        raise ValueError(f"scenes: cue must be one of {', '.join(RENDERERS)}, got {cue!r}")
    names = list(CUES[cue])
    if not 2 <= num_classes <= len(names):
        raise ValueError(f"scenes: with cue={cue!r} num_classes must be in [2, {len(names)}] ({', '.join(names)}), "
                         f"got {num_classes}")
    if not 1 <= max_objects <= 8:
        raise ValueError(f"scenes: max_objects must be in [1, 8], got {max_objects}")
    if cue == "texture_grid" and resolution % GRID:
        raise ValueError(f"scenes: cue='texture_grid' locks textures to a {GRID} x {GRID} grid, so resolution must be "
                         f"a multiple of {GRID}; got resolution={resolution}")
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
        canvas, seg, classes = RENDERERS[cue](_draw_uniforms(seed, split, start, stop, layout), layout,
                                              resolution * ss, num_classes)
        if ss > 1:
            canvas = canvas.reshape(stop - start, 3, resolution, ss, resolution, ss).mean(axis=(3, 5))
            seg = seg[:, centre::ss, centre::ss]
        segments[start:stop], labels[start:stop] = _compact(seg, classes)
        images[start:stop] = np.clip(canvas * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return ImageSet(images, labels, names[:num_classes], segments)
