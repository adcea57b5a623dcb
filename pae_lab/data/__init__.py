"""Datasets: a registry of factories returning in-memory `ImageSet`s (uint8 images, labels, segments).

Built-ins: "scenes" (procedural, the embedded default), "digits" (scikit-learn's bundled digits)
and "imagefolder" (root/<class>/<image>). Register your own with `@register_dataset("name")`.
"""
from pae_lab.data.imageset import ImageSet
from pae_lab.data.registry import DATASETS, build_dataset, register_dataset
from pae_lab.data import digits, imagefolder, scenes  # noqa: F401  (built-ins register on import)

__all__ = ["DATASETS", "ImageSet", "build_dataset", "register_dataset"]
