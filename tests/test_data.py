"""Datasets: the procedural scenes, scikit-learn digits, imagefolder, ImageSet files, the registry."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pae_lab.data import DATASETS, ImageSet, build_dataset, register_dataset
from pae_lab.registry import RegistryError


@pytest.fixture(scope="module")
def scenes32() -> ImageSet:
    return build_dataset("scenes", resolution=32, size=512, seed=0)


def test_scenes_deterministic_and_seeded(scenes32):
    again = build_dataset("scenes", resolution=32, size=512, seed=0)
    assert np.array_equal(again.images, scenes32.images)
    assert np.array_equal(again.segments, scenes32.segments)
    assert again.digest == scenes32.digest
    other = build_dataset("scenes", resolution=32, size=512, seed=1)
    val = build_dataset("scenes", resolution=32, size=512, seed=0, split="val")
    assert other.digest != scenes32.digest and val.digest != scenes32.digest
    assert not np.array_equal(val.images, scenes32.images)


def test_scenes_prefix_stable(scenes32):
    # image i depends on (seed, split, i) only: a smaller build is a prefix of a larger one
    small = build_dataset("scenes", resolution=32, size=300, seed=0)
    assert np.array_equal(small.images, scenes32.images[:300])
    assert np.array_equal(small.labels, scenes32.labels[:300])


@pytest.mark.parametrize("resolution", [32, 64, 24])
def test_scenes_shapes_and_types(resolution):
    ds = build_dataset("scenes", resolution=resolution, size=16, num_classes=6, max_objects=3)
    assert ds.images.shape == (16, 3, resolution, resolution) and ds.images.dtype == np.uint8
    assert ds.segments.shape == (16, resolution, resolution) and ds.segments.dtype == np.int64
    assert ds.labels.dtype == np.int64 and ds.labels.min() >= 0 and ds.labels.max() < 6
    assert ds.class_names == ["disk", "square", "triangle", "ring", "cross", "star"]
    assert ds.segments.max() <= 3


def test_scenes_segments_consistent(scenes32):
    seg = scenes32.segments
    for s in seg:
        ids = np.unique(s)
        # instance ids are 1..K with every one visible (occluded-away objects are renumbered out)
        objects = ids[ids > 0]
        assert np.array_equal(objects, np.arange(1, len(objects) + 1))
        assert len(objects) >= 1
    assert (seg == 0).any(axis=(1, 2)).mean() > 0.99  # background shows in (nearly) every image
    # the pixels of an instance share one colour pattern distinct from the background: mean colour differs
    img = scenes32.images[0].astype(float)
    fg, bg = img[:, seg[0] > 0].mean(1), img[:, seg[0] == 0].mean(1)
    assert np.abs(fg - bg).max() > 1.0


def test_scenes_label_is_most_visible_object():
    # with one object per image the label is that object's class and the mask its pixels
    ds = build_dataset("scenes", resolution=32, size=64, max_objects=1, num_classes=3)
    assert set(np.unique(ds.segments)) == {0, 1}
    # disks (class 0) fill more of their bounding circle than triangles (class 2)
    area = (ds.segments > 0).mean(axis=(1, 2))
    assert ds.labels.tolist().count(0) > 5 and ds.labels.tolist().count(2) > 5
    assert area[ds.labels == 0].mean() > area[ds.labels == 2].mean()


def test_scenes_class_balance(scenes32):
    counts = np.bincount(scenes32.labels, minlength=8)
    expected = len(scenes32) / 8
    assert counts.min() > 0.6 * expected and counts.max() < 1.4 * expected


def test_scenes_same_scene_at_every_resolution():
    a = build_dataset("scenes", resolution=32, size=8)
    b = build_dataset("scenes", resolution=64, size=8)
    down = b.images.reshape(8, 3, 32, 2, 32, 2).astype(float).mean(axis=(3, 5))
    assert np.abs(down - a.images).mean() < 12  # same layout and colours, edges differ
    other = build_dataset("scenes", resolution=32, size=8, seed=5)
    assert np.abs(other.images.astype(float) - a.images).mean() > 30


def test_scenes_bad_params_name_the_fix():
    with pytest.raises(ValueError, match="num_classes must be in"):
        build_dataset("scenes", num_classes=40)
    with pytest.raises(ValueError, match="split must be one of"):
        build_dataset("scenes", split="holdout")
    with pytest.raises(TypeError, match="takes: resolution"):
        build_dataset("scenes", resoluton=32)


@pytest.fixture(scope="module")
def textures32() -> ImageSet:
    return build_dataset("scenes", resolution=32, size=512, seed=0, cue="texture")


def test_texture_scenes_deterministic_prefix_stable_balanced(textures32):
    assert textures32.class_names == ["stripes", "checker", "dots", "hex", "waves", "rings", "crosshatch", "noise"]
    small = build_dataset("scenes", resolution=32, size=300, seed=0, cue="texture")
    assert np.array_equal(small.images, textures32.images[:300]) and np.array_equal(small.segments, textures32.segments[:300])
    assert small.digest != build_dataset("scenes", resolution=32, size=300, seed=0).digest  # the cue is in the data
    counts = np.bincount(textures32.labels, minlength=8)
    assert counts.min() > 0.6 * 64 and counts.max() < 1.4 * 64


def test_texture_scenes_hide_the_segments_from_average_colour(textures32):
    """Only texture marks objects: an object's mean colour is near its background's (a shape-cue scene's is not),
    yet its pixels differ from the background's pattern."""
    def gaps(ds: ImageSet) -> np.ndarray:
        out = []
        for img, seg in zip(ds.images.astype(float), ds.segments):
            fg, bg = img[:, seg == 1].mean(1), img[:, seg == 0].mean(1)
            contrast = img[:, seg == 0].std(1).mean()  # the palette's spread inside the background
            out.append(np.abs(fg - bg).mean() / max(contrast, 1.0))
        return np.array(out)

    shape_cue = build_dataset("scenes", resolution=32, size=512, seed=0)
    assert np.median(gaps(textures32)) < 0.5 * np.median(gaps(shape_cue))
    assert all(img.std() > 10 for img in textures32.images[:64])  # textured, not flat


def _non_texture_cues(ds: ImageSet) -> np.ndarray:
    """Per image: its mean colour, and the area and centroid of its largest segment (the class's object)."""
    rows = []
    grid = np.arange(ds.images.shape[-1])
    for img, seg in zip(ds.images.astype(float) / 255, ds.segments):
        main = np.bincount(seg.ravel())[1:].argmax() + 1
        ys, xs = np.nonzero(seg == main)
        rows.append([*img.mean(axis=(1, 2)), len(ys) / seg.size, xs.mean() / len(grid), ys.mean() / len(grid)])
    return np.array(rows)


def test_texture_scenes_hide_the_class_from_colour_size_and_place():
    """At the ablation's settings a 5-NN classifier on mean colour and the main object's area and centroid
    scores chance on texture scenes; on shape scenes the same probe reads the class (area tells a ring
    from a disk), so it has the power to see such a leak."""
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def accuracy(cue: str) -> float:
        ds = build_dataset("scenes", resolution=32, size=1024, seed=1, cue=cue, supersample=2)
        probe = make_pipeline(StandardScaler(), KNeighborsClassifier(5))
        return float(cross_val_score(probe, _non_texture_cues(ds), ds.labels, cv=4).mean())

    chance, se = 1 / 8, np.sqrt(1 / 8 * 7 / 8 / 1024)
    assert accuracy("texture") < chance + 3 * se
    assert accuracy("shape") > chance + 6 * se


def test_texture_scenes_bad_cue_names_the_choices():
    with pytest.raises(ValueError, match="cue must be one of shape, texture, texture_grid"):
        build_dataset("scenes", cue="colour")
    with pytest.raises(ValueError, match="stripes"):
        build_dataset("scenes", cue="texture", num_classes=9)


def _interior_cells(segments: np.ndarray, cell: int) -> np.ndarray:
    """[N, g, g]: cells whose pixels and a 2-pixel ring around them all hold one segment."""
    n, res, _ = segments.shape
    pad = np.pad(segments, ((0, 0), (2, 2), (2, 2)), mode="edge")
    g = res // cell
    out = np.zeros((n, g, g), bool)
    for cy in range(g):
        for cx in range(g):
            block = pad[:, cy * cell:cy * cell + cell + 4, cx * cell:cx * cell + cell + 4]
            out[:, cy, cx] = (block == block[:, :1, :1]).all(axis=(1, 2))
    return out


def test_texture_grid_cells_of_a_region_hold_the_same_pixels_and_colour_hides_the_family():
    """cue="texture_grid": each family covers exactly half of a cell at every supersampling, so inside
    a region every cell holds the same pixels, and every cell inside any region has the palette's
    mean colour: pooled colour sees only boundaries. Not so on cue="texture" (random period and phase)."""
    from pae_lab.data.scenes import GRID, GRID_FAMILIES

    for fn in GRID_FAMILIES.values():
        for samples in (4, 8, 16, 32):  # one 4 px cell at 1, 2, 4, 8 samples per pixel
            x, y = np.meshgrid((np.arange(samples) + 0.5) / samples, (np.arange(samples) + 0.5) / samples)
            assert fn(x, y, None, None).astype(float).mean() == 0.5

    def spreads(cue: str) -> tuple[int, float]:
        ds = build_dataset("scenes", resolution=32, size=128, seed=0, cue=cue)  # 1 sample per pixel: no edge blending
        cells = ds.images.reshape(128, 3, GRID, 4, GRID, 4).transpose(0, 2, 4, 1, 3, 5).reshape(128, GRID, GRID, -1)
        inside = _interior_cells(ds.segments, 4)
        pixels, colour = 0, 0.0
        for image, seg, keep in zip(cells.astype(int), ds.segments, inside):
            means = image[keep].reshape(-1, 3, 16).mean(-1)
            colour = max(colour, float(np.ptp(means, axis=0).max()) if len(means) else 0.0)
            for region in np.unique(seg[::4, ::4][keep]):
                mine = image[keep & (seg[::4, ::4] == region)]
                pixels = max(pixels, int(np.abs(mine - mine[:1]).max()))
        return pixels, colour

    assert spreads("texture_grid") == (0, 0.0)
    pixels, colour = spreads("texture")
    assert pixels > 30 and colour > 10
    grid = build_dataset("scenes", resolution=32, size=64, seed=0, cue="texture_grid", supersample=2)
    assert grid.class_names == list(GRID_FAMILIES) and len(np.unique(grid.labels)) == 8
    with pytest.raises(ValueError, match="resolution must be a multiple of 8; got resolution=36"):
        build_dataset("scenes", resolution=36, cue="texture_grid")


def test_digits():
    train = build_dataset("digits", resolution=16, size=200)
    val = build_dataset("digits", resolution=16, split="val")
    assert train.images.shape == (200, 3, 16, 16) and len(val) == 359
    assert set(np.unique(train.labels)) == set(range(10))
    assert set(np.unique(train.segments)) == {0, 1}
    # ink pixels are bright, background dark
    img = train.images[:, 0].astype(float)
    assert img[train.segments == 1].mean() > 100 > img[train.segments == 0].mean()


def _write_folder(root, sizes=((20, 30), (40, 24)), classes=("cat", "dog")):
    for ci, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        for k, (w, h) in enumerate(sizes):
            pix = np.full((h, w, 3), 40 + 150 * ci, np.uint8)
            Image.fromarray(pix).save(root / cls / f"im{k}.png")
    (root / "dog" / "notes.txt").write_text("ignored")


def test_imagefolder(tmp_path):
    _write_folder(tmp_path / "data")
    ds = build_dataset("imagefolder", root=str(tmp_path / "data"), resolution=16)
    assert ds.images.shape == (4, 3, 16, 16) and ds.segments is None
    assert ds.class_names == ["cat", "dog"] and ds.labels.tolist() == [0, 0, 1, 1]
    assert (ds.images[ds.labels == 0] == 40).all() and (ds.images[ds.labels == 1] == 190).all()
    capped = build_dataset("imagefolder", root=str(tmp_path / "data"), resolution=8, max_per_class=1)
    assert capped.labels.tolist() == [0, 1]
    sub = build_dataset("imagefolder", root=str(tmp_path / "data"), resolution=8, size=3, seed=1)
    assert len(sub) == 3


def test_imagefolder_masks_and_split(tmp_path):
    _write_folder(tmp_path / "data" / "train")
    for cls in ("cat", "dog"):
        (tmp_path / "masks" / "train" / cls).mkdir(parents=True)
        for k, (w, h) in enumerate(((20, 30), (40, 24))):
            m = np.zeros((h, w), np.uint8)
            m[:, : w // 2] = 2
            Image.fromarray(m).save(tmp_path / "masks" / "train" / cls / f"im{k}.png")
    ds = build_dataset("imagefolder", root=str(tmp_path / "data"), split="train", resolution=16,
                       masks_root=str(tmp_path / "masks"))
    assert ds.segments.shape == (4, 16, 16)
    assert set(np.unique(ds.segments)) == {0, 2}
    assert (ds.segments[:, :, 0] == 2).all() and (ds.segments[:, :, -1] == 0).all()


def test_imagefolder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        build_dataset("imagefolder", root=str(tmp_path / "missing"))
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    (tmp_path / "empty" / "cat" / "a.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"no images under .*empty.*\.jpg, \.jpeg, \.png"):
        build_dataset("imagefolder", root=str(tmp_path / "empty"))
    _write_folder(tmp_path / "data")
    with pytest.raises(FileNotFoundError, match="root/val/"):
        build_dataset("imagefolder", root=str(tmp_path / "data"), split="val")
    with pytest.raises(FileNotFoundError, match="mask"):
        build_dataset("imagefolder", root=str(tmp_path / "data"), masks_root=str(tmp_path / "nomasks"))


def test_imageset_save_load_roundtrip(tmp_path, scenes32):
    path = scenes32.save(tmp_path / "sub" / "scenes.npz")
    assert not [p for p in path.parent.iterdir() if p.name != "scenes.npz"]  # no temp file left
    back = ImageSet.load(path)
    assert back.digest == scenes32.digest and back.class_names == scenes32.class_names
    assert np.array_equal(back.images, scenes32.images) and np.array_equal(back.segments, scenes32.segments)
    plain = ImageSet(scenes32.images[:4], scenes32.labels[:4], scenes32.class_names)
    assert ImageSet.load(plain.save(tmp_path / "plain.npz")).segments is None


def test_imageset_validates_and_detects_corruption(tmp_path, scenes32):
    with pytest.raises(ValueError, match="uint8"):
        ImageSet(scenes32.images.astype(np.float32), scenes32.labels, scenes32.class_names)
    with pytest.raises(ValueError, match="labels must lie in"):
        ImageSet(scenes32.images[:2], np.array([0, 9]), ["a", "b"])
    tampered = dict(np.load(scenes32.subset(slice(0, 4)).save(tmp_path / "a.npz")))
    tampered["labels"] = (tampered["labels"] + 1) % 8
    np.savez(tmp_path / "b.npz", **tampered)
    with pytest.raises(ValueError, match="corrupt"):
        ImageSet.load(tmp_path / "b.npz")
    with pytest.raises(FileNotFoundError, match="ImageSet.save"):
        ImageSet.load(tmp_path / "none.npz")


def test_digest_tracks_content(scenes32):
    sub = scenes32.subset(slice(0, 10))
    changed = sub.images.copy()
    changed[0, 0, 0, 0] ^= 1
    assert ImageSet(changed, sub.labels, sub.class_names, sub.segments).digest != sub.digest
    assert ImageSet(sub.images, sub.labels, sub.class_names, None).digest != sub.digest


def test_user_registers_a_dataset():
    @register_dataset("test_tiny_user_set")
    def tiny(resolution: int = 8, size: int = 2) -> ImageSet:
        return ImageSet(np.zeros((size, 3, resolution, resolution), np.uint8), np.zeros(size, np.int64), ["only"])

    assert "test_tiny_user_set" in DATASETS.names("test_*")
    assert len(build_dataset("test_tiny_user_set", size=3)) == 3
    with pytest.raises(RegistryError, match="already registered"):
        register_dataset("test_tiny_user_set")(tiny)
    with pytest.raises(RegistryError, match="registered: .*scenes"):
        build_dataset("no_such_set")
