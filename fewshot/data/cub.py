"""CUB-200-2011 (Wah et al. 2011) with the few-shot class split of Chen et al. (ICLR 2019,
"A Closer Look at Few-shot Classification"), used by much later work: the 200
classes in ``classes.txt`` order (= sorted folder names), base/train = even positions
(100 classes), val = positions ``i % 4 == 1`` (50), novel/test = ``i % 4 == 3`` (50)
(``splits/cub.json``). Class names are the folder names, e.g. ``001.Black_footed_Albatross``.
Images per class vary (41 to 60; 11,788 in all).

Layout ``official``: the dataset as distributed, ``CUB_200_2011/`` (under the data root, or
the root itself) with ``images.txt`` (``<image_id> <class folder>/<file>``),
``image_class_labels.txt`` (``<image_id> <class_id>``), ``classes.txt``
(``<class_id> <class name>``) and ``images/``. Items follow ``images.txt`` order. Bounding
boxes, parts, attributes and the official train/test image split are not used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fewshot.data._base import FileSplit
from fewshot.data._layout import DatasetSpec, Found, Layout
from fewshot.data._splits import split_classes

__all__ = ["CUB"]

_BASES = ("CUB_200_2011", "", "cub", "CUB")


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a readable text file ({exc})") from None
    pairs = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise ValueError(f"{path}: line {i} should read '<id> <value>', got {line!r}")
        pairs.append((parts[0], parts[1].strip()))
    return pairs


def _unique_ids(pairs: list[tuple[str, str]], path: Path) -> dict[str, str]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError(f"{path}: an id is listed twice")
    return out


def _load_official(paths: list[Path], spec: DatasetSpec, split: str) -> Found:
    images_txt, labels_txt, classes_txt, image_dir = paths
    images = _read_pairs(images_txt)
    image_class = _unique_ids(_read_pairs(labels_txt), labels_txt)
    class_name = _unique_ids(_read_pairs(classes_txt), classes_txt)
    wanted = set(spec.class_list(split))
    files, names = [], []
    for image_id, rel in images:
        if image_id not in image_class:
            raise ValueError(f"{labels_txt}: no class for image id {image_id} ({rel})")
        cid = image_class[image_id]
        if cid not in class_name:
            raise ValueError(f"{classes_txt}: unknown class id {cid} (image {image_id})")
        name = class_name[cid]
        folder = rel.split("/", 1)[0]
        if folder != name:
            raise ValueError(f"{images_txt}: image {image_id} is in folder {folder!r} but labelled {name!r}")
        if name in wanted:
            files.append(image_dir / rel)
            names.append(name)
    absent = [f for f in files if not f.is_file()]
    if absent:
        raise ValueError(
            f"{images_txt}: {len(absent)} listed images of the {split} classes are missing (first: {absent[0]})"
        )
    index: dict[str, int] = {}
    item_class = np.array([index.setdefault(n, len(index)) for n in names], dtype=np.int64)

    def build(labels: np.ndarray, class_names: list[str]) -> FileSplit:
        return FileSplit(spec.name, split, labels, class_names, files, source=str(images_txt))

    return Found(list(index), item_class, build, str(images_txt))


CUB = DatasetSpec(
    name="cub",
    title="CUB-200-2011 (Wah et al. 2011; Chen et al. 2019 few-shot split)",
    splits=("train", "val", "test"),
    class_list=lambda split: split_classes("cub.json", split),
    images_per_class=None,
    image_size=None,  # images vary (about 500 x 375); few-shot work resizes them (84 px)
    provenance="Chen et al. 2019 CloserLookFewShot filelists/CUB/write_CUB_filelist.py rule on classes.txt",
    layouts=(
        Layout(
            "official",
            "CUB_200_2011/ as distributed: images.txt, image_class_labels.txt, classes.txt, images/",
            ("images.txt", "image_class_labels.txt", "classes.txt", "images/"),
            _load_official,
            bases=_BASES,
        ),
    ),
)
