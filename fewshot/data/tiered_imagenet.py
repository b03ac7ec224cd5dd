"""tieredImageNet (Ren et al., ICLR 2018): 351/97/160 ImageNet classes (wnids,
``splits/tiered_imagenet.json``) grouped in 20/6/8 categories; 84x84 RGB; the number of
images per class varies, so checks cover the class list and report the counts.

Layouts, tried in this order under the data root (and under ``tiered-imagenet/``,
``tieredImageNet/``, ``tiered_imagenet/``, ``tieredimagenet/`` inside it):

``ren-png-pickle``
    Ren et al.'s release: ``{split}_images_png.pkl``, a list of PNG-encoded images (uint8
    byte arrays), decoded one at a time on access; and ``{split}_labels.pkl``.
``npz``
    ``{split}_images.npz`` with the key ``images`` (N x 84 x 84 x 3 uint8; memory-mapped when
    the archive stores it uncompressed, as ``numpy.savez`` does) and ``{split}_labels.pkl``
    (the layout MetaOptNet and RFS read). The arrays are returned as stored: Ren et al.'s
    ``decompress`` script writes them with OpenCV, i.e. in BGR order.

The labels pickle must name its classes: ``label_specific`` (int per image) indexes
``label_specific_str`` (one entry per class, a wnid or its WordNet name, matched against
``splits/tiered_imagenet_wnid_names.json``). A pickle holding only integer ``labels``
(MetaOptNet/RFS re-packaging) cannot be matched to wnids and is refused; put Ren et al.'s
``{split}_labels.pkl`` beside the images instead.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np

from fewshot.data._base import ArraySplit, EncodedSplit
from fewshot.data._layout import DatasetSpec, Found, Layout, codes
from fewshot.data._pickle import as_str, load_pickle, str_keys
from fewshot.data._splits import imagenet_names, split_classes

__all__ = ["TIERED_IMAGENET", "open_npz_array"]

_BASES = ("", "tiered-imagenet", "tieredImageNet", "tiered_imagenet", "tieredimagenet")


def _read_labels(path: Path) -> tuple[np.ndarray, list[str]]:
    """(per-image index into the class list, class wnids) from a labels pickle."""
    d = str_keys(load_pickle(path), path)
    key = "label_specific" if "label_specific" in d else "labels" if "labels" in d else None
    if key is None:
        raise ValueError(f"{path}: no 'label_specific' key (found {sorted(map(str, d))})")
    if "label_specific_str" not in d:
        raise ValueError(
            f"{path}: integer {key!r} without 'label_specific_str' cannot be matched to "
            "tieredImageNet wnids; use Ren et al.'s labels pickle (label_specific, "
            "label_specific_str) for these images"
        )
    try:
        labels = np.asarray(d[key], dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: {key!r} must be a list of integers") from None
    raw = [str(as_str(s)).strip() for s in d["label_specific_str"]]
    if labels.size and (labels.min() < 0 or labels.max() >= len(raw)):
        raise ValueError(f"{path}: {key!r} indexes outside label_specific_str (0..{len(raw) - 1})")
    names = imagenet_names("tiered")
    by_name = {name: wnid for wnid, name in names.items()}
    wnids = [s if s in names else by_name.get(s, s) for s in raw]
    return labels, wnids


def _found(labels: np.ndarray, wnids: list[str], build, source: str) -> Found:
    vocab, class_of = codes(wnids)  # merges entries naming the same class
    ids, item_class = np.unique(class_of[labels], return_inverse=True)
    used = set(ids.tolist())
    empty = tuple(w for i, w in enumerate(vocab) if i not in used)
    return Found([vocab[i] for i in ids], item_class.astype(np.int64), build, source, declared=empty)


def _load_png_pickle(paths: list[Path], spec: DatasetSpec, split: str) -> Found:
    images_path, labels_path = paths
    labels, wnids = _read_labels(labels_path)
    blobs = load_pickle(images_path)
    if isinstance(blobs, np.ndarray) and blobs.dtype == object:
        blobs = list(blobs)
    if not isinstance(blobs, (list, tuple)):
        raise ValueError(f"{images_path}: expected a list of PNG byte arrays, found {type(blobs).__name__}")
    if len(blobs) != labels.shape[0]:
        raise ValueError(f"{images_path}: {len(blobs)} images for {labels.shape[0]} labels in {labels_path}")

    def build(lab: np.ndarray, class_names: list[str]) -> EncodedSplit:
        return EncodedSplit(spec.name, split, lab, class_names, blobs, source=str(images_path))

    return _found(labels, wnids, build, str(images_path))


def open_npz_array(path: str | Path, key: str) -> np.ndarray:
    """Array ``key`` of an ``.npz``: memory-mapped when stored uncompressed, else read.

    Raises:
        ValueError: not a zip archive, no such key, or an object array.
    """
    path = Path(path)
    member = f"{key}.npy"
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if member not in names:
                found = sorted(n.removesuffix(".npy") for n in names)
                raise ValueError(f"{path}: no array {key!r} (found {found})")
            info = zf.getinfo(member)
            if info.compress_type != zipfile.ZIP_STORED:
                with zf.open(member) as fh:
                    return np.lib.format.read_array(fh, allow_pickle=False)
        with path.open("rb") as fh:
            fh.seek(info.header_offset)
            head = fh.read(30)
            if len(head) < 30 or head[:4] != b"PK\x03\x04":
                raise ValueError(f"{path}: corrupt zip entry {member!r}")
            name_len, extra_len = struct.unpack("<HH", head[26:30])
            fh.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(fh)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(fh)
            offset = fh.tell()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a readable .npz archive ({exc})") from None
    if dtype.hasobject:
        raise ValueError(f"{path}: array {key!r} holds Python objects; refusing to load it")
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype=dtype)
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    if path.stat().st_size < expected:
        raise ValueError(f"{path}: truncated ({path.stat().st_size} bytes, {key!r} needs {expected})")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _load_npz(paths: list[Path], spec: DatasetSpec, split: str) -> Found:
    images_path, labels_path = paths
    labels, wnids = _read_labels(labels_path)
    images = open_npz_array(images_path, "images")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"{images_path}: 'images' must be N x H x W x 3 uint8, found {images.dtype} {images.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images_path}: {images.shape[0]} images for {labels.shape[0]} labels in {labels_path}")

    def build(lab: np.ndarray, class_names: list[str]) -> ArraySplit:
        return ArraySplit(spec.name, split, lab, class_names, images, source=str(images_path))

    return _found(labels, wnids, build, str(images_path))


TIERED_IMAGENET = DatasetSpec(
    name="tiered-imagenet",
    title="tieredImageNet (Ren et al., ICLR 2018)",
    splits=("train", "val", "test"),
    class_list=lambda split: split_classes("tiered_imagenet.json", split),
    images_per_class=None,
    image_size=(84, 84),
    provenance="Ren et al. few-shot-ssl-public tiered_imagenet_split/*.csv",
    layouts=(
        Layout(
            "ren-png-pickle",
            "Ren et al. PNG pickle + labels pickle",
            ("{split}_images_png.pkl", "{split}_labels.pkl"),
            _load_png_pickle,
            bases=_BASES,
        ),
        Layout(
            "npz",
            "images .npz (MetaOptNet/RFS) + Ren et al. labels pickle",
            ("{split}_images.npz", "{split}_labels.pkl"),
            _load_npz,
            bases=_BASES,
        ),
    ),
)
