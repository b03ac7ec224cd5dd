"""CIFAR-FS and FC100: few-shot splits of CIFAR-100 (32x32 RGB, 600 images per class).

- CIFAR-FS (Bertinetto et al., ICLR 2019): 64/16/20 fine classes, ``splits/cifar_fs.json``.
- FC100 (Oreshkin et al., NeurIPS 2018): the fine classes of 12/4/4 superclasses, 60/20/20,
  ``splits/fc100_fine_classes.json``.

Layouts, tried in this order under the data root:

``cifar-100-python``
    The official python version (``cifar-100-python/{train,test,meta}``, Python 2 pickles of
    dicts: ``data`` N x 3072 uint8 with the red, green and blue planes of a 32x32 image in
    row-major order; ``fine_labels``; ``meta`` has ``fine_label_names``). The train and test
    pickles are merged (500 + 100 = 600 per class), train items first.
``learn2learn-processed`` (CIFAR-FS)
    ``cifarfs/processed/{split}/<class>/*.png``, files sorted by name.
``learn2learn-raw`` (CIFAR-FS)
    ``cifarfs/cifar100/data/<class>/*.png`` with the class list
    ``cifarfs/cifar100/splits/bertinetto/{split}.txt``.
``metaoptnet`` / ``fc100-pickle``
    ``CIFAR_FS_{split}.pickle`` (MetaOptNet) or ``FC100_{split}.pickle`` (MetaOptNet,
    learn2learn): a dict with ``data`` (N x 32 x 32 x 3 uint8) and ``labels``, the global
    CIFAR-100 fine ids (0-99, alphabetical fine-name order).
``rfs``
    ``{split}.pickle`` with the same keys (RFS, Tian et al. 2020).

Pickles are read with :func:`fewshot.data._pickle.load_pickle` (no code runs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fewshot.data._base import ArraySplit, FileSplit
from fewshot.data._layout import (
    DatasetSpec,
    Found,
    Layout,
    class_folders,
    codes,
    from_groups,
)
from fewshot.data._pickle import as_str, load_pickle, str_keys
from fewshot.data._splits import cifar100_fine_names, split_classes

__all__ = ["CIFAR_FS", "FC100"]

_FINE_ID_HINT = "this format's labels must be global CIFAR-100 fine ids (0-99)"


def _field(d: dict, key: str, path: Path) -> object:
    if key not in d:
        raise ValueError(f"{path}: missing key {key!r} (found {sorted(map(str, d))})")
    return d[key]


def _uint8_array(value: object, path: Path, key: str, ndim: int) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype != np.uint8 or value.ndim != ndim:
        desc = f"{value.dtype} array of shape {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
        raise ValueError(f"{path}: {key!r} must be a {ndim}-d uint8 array, found {desc}")
    return value


def _int_labels(value: object, n: int, path: Path, key: str) -> np.ndarray:
    try:
        labels = np.asarray(value, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: {key!r} must be a list of integers") from None
    if labels.shape[0] != n:
        raise ValueError(f"{path}: {labels.shape[0]} {key!r} for {n} images")
    return labels


# -- official cifar-100-python ---------------------------------------------------------------


def _load_official(paths: list[Path], spec: DatasetSpec, split: str) -> Found:
    train_path, test_path, meta_path = paths
    meta = str_keys(load_pickle(meta_path), meta_path)
    names = [as_str(n) for n in _field(meta, "fine_label_names", meta_path)]
    if len(names) != 100:
        raise ValueError(f"{meta_path}: {len(names)} fine_label_names, expected 100")
    wanted = set(spec.class_list(split))
    parts, part_names = [], []
    for path in (train_path, test_path):
        d = str_keys(load_pickle(path), path)
        data = _uint8_array(_field(d, "data", path), path, "data", 2)
        if data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"{path}: 'data' rows have {data.shape[1]} values, expected 3072")
        fine = _int_labels(_field(d, "fine_labels", path), data.shape[0], path, "fine_labels")
        if fine.size and (fine.min() < 0 or fine.max() >= 100):
            raise ValueError(f"{path}: fine_labels outside 0-99")
        keep = np.flatnonzero(np.isin(fine, [i for i, n in enumerate(names) if n in wanted]))
        parts.append(data[keep].reshape(-1, 3, 32, 32))  # copies only this split's rows
        part_names.extend(names[i] for i in fine[keep])
        del d, data
    images = np.concatenate(parts) if parts else np.zeros((0, 3, 32, 32), np.uint8)
    classes, item_class = codes(part_names)
    source = str(train_path.parent)

    def build(labels: np.ndarray, class_names: list[str]) -> ArraySplit:
        return ArraySplit(spec.name, split, labels, class_names, images, channels_first=True, source=source)

    return Found(classes, item_class, build, source)


# -- MetaOptNet / learn2learn FC100 / RFS pickles -------------------------------------------


def _load_fine_id_pickle(paths: list[Path], spec: DatasetSpec, split: str) -> Found:
    (path,) = paths
    d = str_keys(load_pickle(path), path)
    data = _uint8_array(_field(d, "data", path), path, "data", 4)
    if data.shape[3] != 3:
        raise ValueError(f"{path}: 'data' must be N x H x W x 3, found shape {data.shape}")
    labels = _int_labels(_field(d, "labels", path), data.shape[0], path, "labels")
    fine = cifar100_fine_names()
    if labels.size and (labels.min() < 0 or labels.max() >= len(fine)):
        raise ValueError(f"{path}: labels outside 0-99; {_FINE_ID_HINT}")
    ids, item_class = np.unique(labels, return_inverse=True)
    classes = [fine[i] for i in ids]

    def build(lab: np.ndarray, class_names: list[str]) -> ArraySplit:
        return ArraySplit(spec.name, split, lab, class_names, data, source=str(path))

    return Found(classes, item_class.astype(np.int64), build, str(path))


# -- learn2learn folders ---------------------------------------------------------------------


def _folder_found(
    spec: DatasetSpec, split: str, directory: Path, names: list[str], groups: list[list[Path]], declared_source: str
) -> Found:
    classes, item_class, items, empty = from_groups(names, groups)

    def build(labels: np.ndarray, class_names: list[str]) -> FileSplit:
        return FileSplit(spec.name, split, labels, class_names, items, source=str(directory))

    return Found(classes, item_class, build, declared_source, declared=empty)


def _load_l2l_processed(paths: list[Path], spec: DatasetSpec, split: str) -> Found:
    (directory,) = paths
    expected = spec.class_list(split)
    extra = sorted(p.name for p in directory.iterdir() if p.is_dir() and p.name not in expected)
    names, groups = class_folders(directory, expected + extra)
    return _folder_found(spec, split, directory, names, groups, str(directory))


def _load_l2l_raw(paths: list[Path], spec: DatasetSpec, split: str) -> Found:
    data_dir, split_file = paths
    listed = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
    expected = spec.class_list(split)
    if sorted(listed) != sorted(expected):
        diff = sorted(set(listed).symmetric_difference(expected))[:5]
        raise ValueError(
            f"{split_file}: lists {len(listed)} classes that differ from the canonical "
            f"{spec.name} '{split}' split of {len(expected)} (e.g. {diff})"
        )
    names, groups = class_folders(data_dir, expected)
    missing = tuple(c for c in expected if c not in names)
    found = _folder_found(spec, split, data_dir, names, groups, str(data_dir))
    return Found(found.classes, found.item_class, found.build, found.source, declared=found.declared + missing)


# -- specs -----------------------------------------------------------------------------------


def _official(name: str) -> Layout:
    return Layout(
        "cifar-100-python",
        "official CIFAR-100 python pickles (train+test merged)",
        ("cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"),
        _load_official,
    )


def _pickles(name: str, pattern: str, bases: tuple[str, ...], description: str) -> Layout:
    return Layout(name, description, (pattern,), _load_fine_id_pickle, bases=bases, hint=_FINE_ID_HINT)


_CIFAR_FS_BASES = ("", "CIFAR-FS", "CIFAR_FS", "cifar-fs", "cifar_fs")
_FC100_BASES = ("", "FC100", "fc100")

CIFAR_FS = DatasetSpec(
    name="cifar-fs",
    title="CIFAR-FS (Bertinetto et al., ICLR 2019)",
    splits=("train", "val", "test"),
    class_list=lambda split: split_classes("cifar_fs.json", split),
    images_per_class=600,
    image_size=(32, 32),
    provenance="torchmeta assets cifar100/cifar-fs/*.json",
    layouts=(
        _official("cifar-fs"),
        Layout(
            "learn2learn-processed",
            "learn2learn CIFARFS class folders",
            ("cifarfs/processed/{split}/",),
            _load_l2l_processed,
        ),
        Layout(
            "learn2learn-raw",
            "learn2learn CIFARFS archive with Bertinetto split files",
            ("cifarfs/cifar100/data/", "cifarfs/cifar100/splits/bertinetto/{split}.txt"),
            _load_l2l_raw,
        ),
        _pickles(
            "metaoptnet",
            "CIFAR_FS_{split}.pickle",
            _CIFAR_FS_BASES,
            "MetaOptNet pickles (data, labels = CIFAR-100 fine ids)",
        ),
        _pickles("rfs", "{split}.pickle", _CIFAR_FS_BASES, "RFS pickles (data, labels = CIFAR-100 fine ids)"),
    ),
)

FC100 = DatasetSpec(
    name="fc100",
    title="FC100 (Oreshkin et al., NeurIPS 2018)",
    splits=("train", "val", "test"),
    class_list=lambda split: split_classes("fc100_fine_classes.json", split),
    images_per_class=600,
    image_size=(32, 32),
    provenance="torchmeta assets cifar100/fc100/*.json, expanded to fine classes",
    layouts=(
        _official("fc100"),
        _pickles(
            "fc100-pickle",
            "FC100_{split}.pickle",
            _FC100_BASES,
            "MetaOptNet / learn2learn pickles (data, labels = CIFAR-100 fine ids)",
        ),
        _pickles("rfs", "{split}.pickle", _FC100_BASES, "RFS pickles (data, labels = CIFAR-100 fine ids)"),
    ),
)
