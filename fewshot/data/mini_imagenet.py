"""miniImageNet (Vinyals et al. 2016) with the Ravi & Larochelle (2017) split: 64/16/20 ImageNet
classes (wnids, ``splits/mini_imagenet.json``), 600 images per class, 84x84 RGB.

Layouts, tried in this order under the data root (and under ``mini-imagenet/``,
``miniImageNet/``, ``miniimagenet/``, ``mini_imagenet/`` inside it):

``mini-imagenet-cache``
    ``mini-imagenet-cache-{train,validation,test}.pkl`` (Ren et al.; torchmeta,
    learn2learn): a dict with ``image_data`` (N x 84 x 84 x 3 uint8) and ``class_dict``
    ``{wnid: [row indices]}``. Items are the listed rows in row order.
``ravi-csv``
    ``{train,val,test}.csv`` with the header ``filename,label`` (label = wnid) and an
    ``images/`` folder holding the files (flat, or in sub-folders named in ``filename``).
    Items follow the CSV order. This is also LibFewShot's format (its ``miniImageNet--ravi``
    folder, which is one of the folders looked in; a UTF-8 byte-order mark is accepted).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from fewshot.data._base import ArraySplit, FileSplit
from fewshot.data._layout import DatasetSpec, Found, Layout, codes
from fewshot.data._pickle import as_str, load_pickle, str_keys
from fewshot.data._splits import split_classes

__all__ = ["MINI_IMAGENET"]

_BASES = ("", "mini-imagenet", "miniImageNet", "miniimagenet", "mini_imagenet", "miniImageNet--ravi")


def _load_cache(paths: list[Path], spec: DatasetSpec, split: str) -> Found:
    (path,) = paths
    d = str_keys(load_pickle(path), path)
    for key in ("image_data", "class_dict"):
        if key not in d:
            raise ValueError(f"{path}: missing key {key!r} (found {sorted(map(str, d))})")
    images = d["image_data"]
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4 and images.shape[3] == 3):
        desc = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise ValueError(f"{path}: 'image_data' must be an N x H x W x 3 uint8 array, found {desc}")
    class_dict = str_keys(d["class_dict"], path, "'class_dict' to be a dict")
    n = images.shape[0]
    owner = np.full(n, -1, dtype=np.int64)
    classes = [as_str(c) for c in class_dict]
    for k, rows in enumerate(class_dict.values()):
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            raise ValueError(f"{path}: class_dict[{classes[k]!r}] indexes rows outside 0..{n - 1}")
        if (owner[rows] >= 0).any():
            raise ValueError(f"{path}: class_dict[{classes[k]!r}] shares rows with another class")
        owner[rows] = k
    rows = np.flatnonzero(owner >= 0)
    item_class = owner[rows]
    empty = tuple(c for k, c in enumerate(classes) if not (item_class == k).any())

    def build(labels: np.ndarray, class_names: list[str]) -> ArraySplit:
        full = rows.shape[0] == n
        return ArraySplit(spec.name, split, labels, class_names, images, None if full else rows, source=str(path))

    return Found(classes, item_class, build, str(path), declared=empty)


def _load_csv(paths: list[Path], spec: DatasetSpec, split: str) -> Found:
    csv_path, image_dir = paths
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            rows = [r for r in reader if r]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{csv_path}: not a readable CSV ({exc})") from None
    if header is None or [h.strip() for h in header] != ["filename", "label"]:
        raise ValueError(f"{csv_path}: expected the header 'filename,label', found {header}")
    bad = next((i for i, r in enumerate(rows) if len(r) != 2), None)
    if bad is not None:
        raise ValueError(f"{csv_path}: row {bad + 2} has {len(rows[bad])} fields, expected 2")
    files = [r[0].strip() for r in rows]
    present = set(os.listdir(image_dir))
    absent = [f for f in files if (f not in present if "/" not in f else not (image_dir / f).is_file())]
    if absent:
        raise ValueError(f"{csv_path}: {len(absent)} listed images are missing from {image_dir} (first: {absent[0]})")
    classes, item_class = codes([r[1].strip() for r in rows])
    image_paths = [image_dir / f for f in files]

    def build(labels: np.ndarray, class_names: list[str]) -> FileSplit:
        return FileSplit(spec.name, split, labels, class_names, image_paths, source=str(csv_path))

    return Found(classes, item_class, build, str(csv_path))


MINI_IMAGENET = DatasetSpec(
    name="mini-imagenet",
    title="miniImageNet (Vinyals et al. 2016; Ravi & Larochelle 2017 split)",
    splits=("train", "val", "test"),
    class_list=lambda split: split_classes("mini_imagenet.json", split),
    images_per_class=600,
    image_size=(84, 84),
    provenance="Ren et al. few-shot-ssl-public mini_imagenet_split/Ravi/*.csv",
    layouts=(
        Layout(
            "mini-imagenet-cache",
            "pickled arrays (image_data, class_dict)",
            ("mini-imagenet-cache-{split_long}.pkl",),
            _load_cache,
            bases=_BASES,
        ),
        Layout(
            "ravi-csv",
            "Ravi & Larochelle CSV (filename,label) + images/ folder",
            ("{split}.csv", "images/"),
            _load_csv,
            bases=_BASES,
        ),
    ),
)
