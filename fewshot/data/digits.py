"""digits: scikit-learn's bundled 8x8 handwritten digits as a tiny offline few-shot benchmark.

Source: :func:`sklearn.datasets.load_digits` (1,797 images, 10 classes, shipped with
scikit-learn; nothing is downloaded). The split is defined here, not in the literature:

- ``train`` (base classes): digits ``"0"``-``"4"``
- ``test`` (novel classes): digits ``"5"``-``"9"`` — enough for 5-way episodes on unseen classes

There is no ``val`` split. Class names are the digit strings; label *k* is the *k*-th digit of
the split (test label 0 is digit 5). Items keep scikit-learn's order. Pixel intensities 0..16
become uint8 exactly as ``(v * 255 + 8) // 16`` (0 -> 0, 8 -> 128, 16 -> 255); items are
grayscale repeated to RGB. Counts per class vary (174-183), so checks report them only.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from fewshot.data._base import ArraySplit
from fewshot.data._layout import DatasetSpec, Found, Layout, codes

__all__ = ["DIGITS", "DIGITS_SPLITS", "digits_arrays"]

#: The base/novel split of the digits benchmark.
DIGITS_SPLITS: dict[str, list[str]] = {
    "train": ["0", "1", "2", "3", "4"],
    "test": ["5", "6", "7", "8", "9"],
}


@functools.cache
def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits: ``(N, 8, 8)`` uint8 images (0..255) and ``(N,)`` int64 digits."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    raw = np.rint(bunch.images).astype(np.int64)  # the bundled values are integers 0..16
    images = ((raw * 255 + 8) // 16).astype(np.uint8)
    images.setflags(write=False)
    return images, np.asarray(bunch.target, dtype=np.int64)


def _load(paths: list[Path], spec: DatasetSpec, split: str) -> Found:
    images, target = digits_arrays()
    wanted = np.array([int(c) for c in DIGITS_SPLITS[split]])
    rows = np.flatnonzero(np.isin(target, wanted))
    classes, item_class = codes([str(d) for d in target[rows]])
    source = "sklearn.datasets.load_digits"

    def build(labels: np.ndarray, class_names: list[str]) -> ArraySplit:
        return ArraySplit(spec.name, split, labels, class_names, images, rows, source=source)

    return Found(classes, item_class, build, source)


DIGITS = DatasetSpec(
    name="digits",
    title="digits (scikit-learn load_digits; base 0-4 / novel 5-9, defined by fewshot)",
    splits=("train", "test"),
    class_list=lambda split: list(DIGITS_SPLITS[split]),
    images_per_class=None,
    image_size=(8, 8),
    needs_root=False,
    provenance="fewshot.data.digits.DIGITS_SPLITS",
    layouts=(Layout("sklearn", "bundled with scikit-learn (no files needed)", (), _load),),
)
