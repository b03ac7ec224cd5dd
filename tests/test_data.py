"""Datasets: every on-disk layout, written here in its exact format, read back and compared
with what was written; class lists; the restricted unpickler; bad input; ``fewshot data``."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import fewshot
from fewshot.cli import main
from fewshot.data import (
    DATASETS,
    ImageSplit,
    check_split,
    class_names,
    list_datasets,
    load_pickle,
    load_split,
)
from fewshot.data._splits import cifar100_fine_names, imagenet_names
from fewshot.data.check import CLASS_COLUMNS

SPLITS_DIR = Path(fewshot.__file__).parent / "data" / "splits"
REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _json(name: str):
    return json.loads((SPLITS_DIR / name).read_text())


def _pixels(key: tuple, size: int = 32) -> np.ndarray:
    """A deterministic (size, size, 3) uint8 image for ``key``."""
    seed = int.from_bytes(repr(key).encode(), "little") % (2**63)
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _solid(key: tuple, size: int = 16) -> np.ndarray:
    """A solid colour image (survives JPEG almost exactly)."""
    colour = _pixels(key, 1)[0, 0] // 2 + 64
    return np.broadcast_to(colour, (size, size, 3)).copy()


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _py2_pickle(obj) -> bytes:
    """``obj`` pickled as Python 2 would (byte strings as STRING opcodes, numpy.core names)."""
    out = bytearray(b"\x80\x02")

    def string(b: bytes) -> None:
        out.extend(b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b)

    def put(o) -> None:
        if isinstance(o, dict):
            out.extend(b"}(")
            for k, v in o.items():
                put(k)
                put(v)
            out.extend(b"u")
        elif isinstance(o, list):
            out.extend(b"](")
            for v in o:
                put(v)
            out.extend(b"e")
        elif isinstance(o, tuple):
            out.extend(b"(")
            for v in o:
                put(v)
            out.extend(b"t")
        elif isinstance(o, bool):
            out.extend(b"\x88" if o else b"\x89")
        elif isinstance(o, int):
            out.extend(b"J" + struct.pack("<i", o))
        elif isinstance(o, str):
            string(o.encode("latin1"))
        elif o is None:
            out.extend(b"N")
        elif isinstance(o, np.ndarray) and o.dtype == np.uint8:
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n")
            put((0,))
            string(b"b")
            out.extend(b"tR(")
            put(1)
            put(tuple(o.shape))
            out.extend(b"cnumpy\ndtype\n")
            put(("u1", 0, 1))
            out.extend(b"R")
            put((3, "|", None, None, None, -1, -1, 0))
            out.extend(b"b")
            put(False)
            string(o.tobytes())
            out.extend(b"tb")
        else:  # pragma: no cover - generator misuse
            raise TypeError(type(o))

    put(obj)
    out.extend(b".")
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# Generators: write a tiny dataset in one layout; return the expected items in load order as
# (class name, image) pairs, and the pixel tolerance of the format.
# ---------------------------------------------------------------------------------------------


def gen_cifar_official(root: Path, name: str, split: str):
    fine = list(cifar100_fine_names())
    coarse_of = {f: c for c, fs in _json("cifar100_superclass_to_fine.json").items() for f in fs}
    coarse_names = sorted(_json("cifar100_superclass_to_fine.json"))
    order = np.random.default_rng(0).permutation(100)
    files = {}
    for part, per_class in (("train", 2), ("test", 1)):
        items = [(int(i), j) for j in range(per_class) for i in order]
        imgs = [_pixels((part, i, j)) for i, j in items]
        files[part] = items, imgs
        data = np.stack([im.transpose(2, 0, 1).reshape(-1) for im in imgs])  # R, G, B planes
        d = {
            "data": data,
            "fine_labels": [i for i, _ in items],
            "coarse_labels": [coarse_names.index(coarse_of[fine[i]]) for i, _ in items],
            "filenames": [f"{fine[i]}_{j}.png" for i, j in items],
            "batch_label": f"{part}ing batch 1 of 1",
        }
        (root / "cifar-100-python").mkdir(exist_ok=True)
        (root / "cifar-100-python" / part).write_bytes(_py2_pickle(d))
    meta = {"fine_label_names": fine, "coarse_label_names": coarse_names}
    (root / "cifar-100-python" / "meta").write_bytes(_py2_pickle(meta))
    wanted = set(class_names(name, split))
    return [(fine[i], im) for part in ("train", "test") for (i, _), im in zip(*files[part]) if fine[i] in wanted], 0


def gen_l2l_processed(root: Path, name: str, split: str):
    expected = []
    for c in class_names(name, split):
        d = root / "cifarfs" / "processed" / split / c
        d.mkdir(parents=True)
        for j in (1, 0):  # written out of order; read sorted by file name
            Image.fromarray(_pixels((c, j))).save(d / f"{j:04d}.png")
        expected += [(c, _pixels((c, 0))), (c, _pixels((c, 1)))]
    (root / "cifarfs" / "processed" / "other").mkdir()  # another split's folder is ignored
    return expected, 0


def gen_l2l_raw(root: Path, name: str, split: str):
    classes = class_names(name, split)
    data = root / "cifarfs" / "cifar100" / "data"
    for c in list(cifar100_fine_names())[:5] + classes:  # the archive holds other classes too
        (data / c).mkdir(parents=True, exist_ok=True)
        Image.fromarray(_pixels((c, 0))).save(data / c / "a.png")
    splits = root / "cifarfs" / "cifar100" / "splits" / "bertinetto"
    splits.mkdir(parents=True)
    (splits / f"{split}.txt").write_text("\n".join(reversed(classes)) + "\n")
    return [(c, _pixels((c, 0))) for c in classes], 0


def _fine_id_pickle(path: Path, name: str, split: str):
    fine = list(cifar100_fine_names())
    classes = class_names(name, split)
    items = [(c, j) for j in range(2) for c in reversed(classes)]
    imgs = [_pixels((c, j)) for c, j in items]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pickle.dump({"data": np.stack(imgs), "labels": [fine.index(c) for c, _ in items]}, fh, protocol=2)
    return [(c, im) for (c, _), im in zip(items, imgs)], 0


def gen_metaoptnet(root, name, split):
    return _fine_id_pickle(root / "CIFAR_FS" / f"CIFAR_FS_{split}.pickle", name, split)


def gen_fc100_pickle(root, name, split):
    return _fine_id_pickle(root / f"FC100_{split}.pickle", name, split)


def gen_rfs(root, name, split):
    return _fine_id_pickle(root / f"{split}.pickle", name, split)


def gen_mini_cache(root: Path, name: str, split: str):
    classes = class_names(name, split)
    rows = [(c, j) for j in range(3) for c in classes]  # classes interleaved in the array
    imgs = [_pixels((c, j), 12) for c, j in rows]
    class_dict = {c: [i for i, (cc, _) in enumerate(rows) if cc == c] for c in classes[::-1]}
    long = "validation" if split == "val" else split
    with (root / f"mini-imagenet-cache-{long}.pkl").open("wb") as fh:
        pickle.dump({"image_data": np.stack(imgs), "class_dict": class_dict}, fh, protocol=4)
    return [(c, im) for (c, _), im in zip(rows, imgs)], 0


def gen_ravi_csv(root: Path, name: str, split: str, per_class: int = 2, drop: int = 0):
    base = root / "miniImageNet"
    (base / "images").mkdir(parents=True, exist_ok=True)
    classes = class_names(name, split)[drop:]
    lines, expected = ["filename,label"], []
    for c in classes:
        for j in range(per_class):
            fname = f"{c}{j + 1:08d}.jpg"
            img = _solid((c, j))
            Image.fromarray(img).save(base / "images" / fname, quality=95)
            lines.append(f"{fname},{c}")
            expected.append((c, img))
    (base / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return expected, 3


CUB_CLASSES = [c for s in ("train", "val", "test") for c in class_names("cub", s)]


def gen_cub(root: Path, name: str, split: str, per_class: int = 2):
    """The official CUB_200_2011/ layout, all 200 classes, ``per_class`` tiny JPEGs each."""
    base = root / "CUB_200_2011"
    order = sorted(CUB_CLASSES)  # classes.txt order = sorted folder names
    images, labels, expected = [], [], []
    for cid, c in enumerate(order, 1):
        (base / "images" / c).mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            rel = f"{c}/{c.split('.', 1)[1]}_{j:04d}.jpg"
            img = _solid((c, j), size=8)
            Image.fromarray(img).save(base / "images" / rel, quality=95)
            images.append(f"{len(images) + 1} {rel}")
            labels.append(f"{len(labels) + 1} {cid}")
            if c in class_names("cub", split):
                expected.append((c, img))
    (base / "images.txt").write_text("\n".join(images) + "\n")
    (base / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (base / "classes.txt").write_text("\n".join(f"{i} {c}" for i, c in enumerate(order, 1)) + "\n")
    return expected, 3


def _tiered_labels(path: Path, split: str, labels: list[int], label_str: list[str]) -> None:
    # Written with bytes keys and names, as a Python 2 pickle read with encoding='bytes' gives.
    d = {
        b"label_specific": np.asarray(labels, dtype=np.int32),
        b"label_general": np.zeros(len(labels), dtype=np.int32),
        b"label_specific_str": [s.encode() for s in label_str],
        b"label_general_str": [b"n00000000"],
    }
    with path.open("wb") as fh:
        pickle.dump(d, fh, protocol=2)


def _tiered_items(name: str, split: str):
    classes = class_names(name, split)
    names = imagenet_names("tiered")
    # The labels pickle lists classes in its own order, half as wnids and half as names.
    order = list(np.random.default_rng(1).permutation(len(classes)))
    label_str = [classes[k] if n % 2 else names[classes[k]] for n, k in enumerate(order)]
    items = [(k, j) for j in range(2) for k in range(len(classes)) if j == 0 or k < 3]
    labels = [order.index(k) for k, _ in items]
    imgs = [_pixels((classes[k], j), 6) for k, j in items]
    expected = [(classes[k], im) for (k, _), im in zip(items, imgs)]
    return labels, label_str, imgs, expected


def gen_ren_png(root: Path, name: str, split: str):
    labels, label_str, imgs, expected = _tiered_items(name, split)
    blobs = [np.frombuffer(_png_bytes(im), dtype=np.uint8) for im in imgs]
    with (root / f"{split}_images_png.pkl").open("wb") as fh:
        pickle.dump(blobs, fh, protocol=2)
    _tiered_labels(root / f"{split}_labels.pkl", split, labels, label_str)
    return expected, 0


def gen_npz(root: Path, name: str, split: str, compressed: bool = False):
    labels, label_str, imgs, expected = _tiered_items(name, split)
    (root / "tiered-imagenet").mkdir()
    save = np.savez_compressed if compressed else np.savez
    save(root / "tiered-imagenet" / f"{split}_images.npz", images=np.stack(imgs))
    _tiered_labels(root / "tiered-imagenet" / f"{split}_labels.pkl", split, labels, label_str)
    return expected, 0


def gen_digits(root: Path, name: str, split: str):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    wanted = {"train": range(0, 5), "test": range(5, 10)}[split]
    expected = []
    for img, t in zip(bunch.images, bunch.target):
        if t in wanted:
            g = np.floor(img * 255.0 / 16.0 + 0.5).astype(np.uint8)  # round half up
            expected.append((str(t), np.repeat(g[:, :, None], 3, axis=2)))
    return expected, 0


GENERATORS = {
    ("cifar-fs", "cifar-100-python"): gen_cifar_official,
    ("cifar-fs", "learn2learn-processed"): gen_l2l_processed,
    ("cifar-fs", "learn2learn-raw"): gen_l2l_raw,
    ("cifar-fs", "metaoptnet"): gen_metaoptnet,
    ("cifar-fs", "rfs"): gen_rfs,
    ("fc100", "cifar-100-python"): gen_cifar_official,
    ("fc100", "fc100-pickle"): gen_fc100_pickle,
    ("fc100", "rfs"): gen_rfs,
    ("mini-imagenet", "mini-imagenet-cache"): gen_mini_cache,
    ("mini-imagenet", "ravi-csv"): gen_ravi_csv,
    ("tiered-imagenet", "ren-png-pickle"): gen_ren_png,
    ("tiered-imagenet", "npz"): gen_npz,
    ("digits", "sklearn"): gen_digits,
    ("cub", "official"): gen_cub,
}

CASES = [(d, layout, "test") for d, layout in GENERATORS] + [
    ("cifar-fs", "rfs", "val"),
    ("fc100", "cifar-100-python", "train"),
    ("mini-imagenet", "mini-imagenet-cache", "val"),
    ("digits", "sklearn", "train"),
    ("cub", "official", "train"),
    ("cub", "official", "val"),
]


def test_every_registered_layout_has_a_generator():
    registered = {(name, layout.name) for name, spec in DATASETS.items() for layout in spec.layouts}
    assert registered == set(GENERATORS)


@pytest.mark.parametrize("name,layout,split", CASES, ids=lambda v: str(v))
def test_layout_roundtrip(tmp_path, name, layout, split):
    expected, tol = GENERATORS[(name, layout)](tmp_path, name, split)
    root = tmp_path if DATASETS[name].needs_root else None
    ds = load_split(name, split, root)

    assert isinstance(ds, ImageSplit)
    assert ds.name == name and ds.split == split
    assert ds.class_names == class_names(name, split)
    want_labels = np.array([ds.class_names.index(c) for c, _ in expected])
    assert ds.labels.dtype == np.int64
    np.testing.assert_array_equal(ds.labels, want_labels)
    np.testing.assert_array_equal(ds.counts(), np.bincount(want_labels, minlength=len(ds.class_names)))
    picks = sorted({0, 1, len(ds) // 2, len(ds) - 1})
    for i in picks:
        img, label = ds[i]
        assert img.mode == "RGB" and label == want_labels[i]
        got = np.asarray(img)
        assert got.shape == expected[i][1].shape
        assert np.abs(got.astype(int) - expected[i][1].astype(int)).max() <= tol
        np.testing.assert_array_equal(ds.array(i), got)

    report = check_split(name, root, split=split)
    assert report.splits.loc[0, "layout"] == layout
    assert report.ok


def test_official_cifar_is_read_as_python2_pickle(tmp_path):
    gen_cifar_official(tmp_path, "cifar-fs", "test")
    meta = load_pickle(tmp_path / "cifar-100-python" / "meta")
    assert meta["fine_label_names"][:3] == ["apple", "aquarium_fish", "baby"]
    train = load_pickle(tmp_path / "cifar-100-python" / "train")
    assert train["data"].shape == (200, 3072) and train["data"].dtype == np.uint8


def test_cifar100_fine_ids_are_alphabetical():
    fine = cifar100_fine_names()
    assert len(fine) == 100 and fine[0] == "apple" and fine[99] == "worm"
    # Published CIFAR-100 fine ids of the aquatic mammals: beaver 4, dolphin 30, otter 55,
    # seal 72, whale 95.
    assert [fine[i] for i in (4, 30, 55, 72, 95)] == ["beaver", "dolphin", "otter", "seal", "whale"]


def test_npz_memory_mapped_when_stored_and_read_when_compressed(tmp_path):
    expected, _ = gen_npz(tmp_path, "tiered-imagenet", "test")
    ds = load_split("tiered-imagenet", "test", tmp_path)
    assert isinstance(ds.images, np.memmap)
    other = tmp_path / "c"
    other.mkdir()
    gen_npz(other, "tiered-imagenet", "test", compressed=True)
    dz = load_split("tiered-imagenet", "test", other)
    assert not isinstance(dz.images, np.memmap)
    np.testing.assert_array_equal(dz.array(5), expected[5][1])


# ---------------------------------------------------------------------------------------------
# Class lists
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,counts",
    [
        ("cifar-fs", (64, 16, 20)),
        ("fc100", (60, 20, 20)),
        ("mini-imagenet", (64, 16, 20)),
        ("tiered-imagenet", (351, 97, 160)),
        ("digits", (5, 5)),
        ("cub", (100, 50, 50)),
    ],
)
def test_class_names_counts_and_disjoint(name, counts):
    splits = DATASETS[name].splits
    lists = [class_names(name, s) for s in splits]
    assert tuple(len(x) for x in lists) == counts
    flat = [c for x in lists for c in x]
    assert len(set(flat)) == len(flat)


def test_class_names_follow_the_split_files():
    for name, file in [
        ("cifar-fs", "cifar_fs.json"),
        ("fc100", "fc100_fine_classes.json"),
        ("mini-imagenet", "mini_imagenet.json"),
        ("tiered-imagenet", "tiered_imagenet.json"),
    ]:
        for split, classes in _json(file).items():
            assert class_names(name, split) == classes
    assert class_names("digits", "test") == ["5", "6", "7", "8", "9"]
    # FC100 test = the fine classes of its four test superclasses, in hierarchy order.
    hierarchy = _json("cifar100_superclass_to_fine.json")
    assert class_names("fc100", "test") == [f for s in _json("fc100.json")["test"] for f in hierarchy[s]]
    names = class_names("cifar-fs", "test")
    names.append("x")
    assert "x" not in class_names("cifar-fs", "test")


def test_package_splits_match_shared_copy():
    shared = REAL_DATA.parent / "splits"
    if not shared.is_dir():
        pytest.skip("../shared/splits is absent")
    for f in shared.glob("*.json"):
        assert json.loads(f.read_text()) == _json(f.name), f.name


def test_list_datasets():
    assert list_datasets() == ["cifar-fs", "cub", "digits", "fc100", "mini-imagenet", "tiered-imagenet"]
    assert list_datasets("*imagenet") == ["mini-imagenet", "tiered-imagenet"]
    assert fewshot.load_split is load_split and fewshot.check_split is check_split


# ---------------------------------------------------------------------------------------------
# Restricted unpickler
# ---------------------------------------------------------------------------------------------


class _Evil:
    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "FC100_test.pickle"
    path.write_bytes(pickle.dumps({"data": _Evil(f"touch {marker}"), "labels": [0]}))
    with pytest.raises(ValueError, match=r"FC100_test\.pickle: refusing to unpickle global \w+\.system"):
        load_pickle(path)
    with pytest.raises(ValueError, match="refusing to unpickle"):
        load_split("fc100", "test", tmp_path)
    assert not marker.exists()


def test_restricted_unpickler_refuses_other_callables(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(eval, protocol=4))
    with pytest.raises(ValueError, match=r"refusing to unpickle global builtins\.eval"):
        load_pickle(path)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_restricted_unpickler_reads_numpy_and_containers(tmp_path, protocol):
    obj = {
        "a": np.arange(12, dtype=np.float32).reshape(3, 4),
        "s": np.int64(7),
        "l": [1, (2, "x")],
        "b": b"yz",
        "set": {1, 2},
    }
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    got = load_pickle(path)
    np.testing.assert_array_equal(got["a"], obj["a"])
    assert got["s"] == 7 and got["l"] == [1, (2, "x")] and got["b"] == b"yz" and got["set"] == {1, 2}


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="data root does not exist: .*nowhere"):
        load_split("cifar-fs", "test", tmp_path / "nowhere")


def test_root_required():
    with pytest.raises(ValueError, match="mini-imagenet needs a data root"):
        load_split("mini-imagenet", "test")


def test_unknown_layout_lists_every_path(tmp_path):
    with pytest.raises(ValueError) as info:
        load_split("cifar-fs", "test", tmp_path)
    msg = str(info.value)
    assert "\n" not in msg
    for layout in DATASETS["cifar-fs"].layouts:
        assert layout.name in msg
    for part in (
        "cifar-100-python/meta",
        "cifarfs/processed/test/",
        "cifarfs/cifar100/splits/bertinetto/test.txt",
        "CIFAR_FS/CIFAR_FS_test.pickle",
        "test.pickle",
    ):
        assert str(tmp_path / part) in msg


def test_unknown_dataset_and_split():
    with pytest.raises(ValueError, match=r"unknown dataset 'omniglot'; expected one of cifar-fs, cub, digits, fc100"):
        class_names("omniglot", "test")
    with pytest.raises(ValueError, match=r"unknown split 'val' for digits; expected one of train, test"):
        load_split("digits", "val")
    with pytest.raises(ValueError, match=r"unknown split 'valid' for mini-imagenet"):
        class_names("mini-imagenet", "valid")


def test_truncated_pickle(tmp_path):
    gen_fc100_pickle(tmp_path, "fc100", "test")
    path = tmp_path / "FC100_test.pickle"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"FC100_test\.pickle: not a readable pickle \(truncated"):
        load_split("fc100", "test", tmp_path)


def test_wrong_keys_and_shapes(tmp_path):
    with (tmp_path / "FC100_test.pickle").open("wb") as fh:
        pickle.dump({"images": np.zeros((2, 32, 32, 3), np.uint8), "labels": [0, 1]}, fh)
    with pytest.raises(ValueError, match=r"FC100_test\.pickle: missing key 'data'"):
        load_split("fc100", "test", tmp_path)
    with (tmp_path / "FC100_test.pickle").open("wb") as fh:
        pickle.dump({"data": np.zeros((2, 32, 32), np.uint8), "labels": [0, 1]}, fh)
    msg = r"'data' must be a 4-d uint8 array, found uint8 array of shape \(2, 32, 32\)"
    with pytest.raises(ValueError, match=msg):
        load_split("fc100", "test", tmp_path)


def test_local_labels_in_a_fine_id_pickle_are_reported(tmp_path):
    classes = class_names("fc100", "test")
    with (tmp_path / "FC100_test.pickle").open("wb") as fh:
        pickle.dump({"data": np.zeros((20, 32, 32, 3), np.uint8), "labels": list(range(20))}, fh)
    with pytest.raises(ValueError, match=r"classes missing .*global CIFAR-100 fine ids"):
        load_split("fc100", "test", tmp_path)
    assert len(classes) == 20


def test_class_count_off(tmp_path):
    gen_ravi_csv(tmp_path, "mini-imagenet", "test")
    csv = tmp_path / "miniImageNet" / "test.csv"
    lines = csv.read_text().splitlines()
    first = class_names("mini-imagenet", "test")[0]
    csv.write_text("\n".join(lines[:1] + lines[2:]) + "\n")  # first class loses one image
    msg = rf"test\.csv: mini-imagenet 'test' class '{first}' has 1 images where the other classes have 2"
    with pytest.raises(ValueError, match=msg):
        load_split("mini-imagenet", "test", tmp_path)
    assert len(load_split("mini-imagenet", "test", tmp_path, strict=False)) == 39
    report = check_split("mini-imagenet", tmp_path, split="test")
    assert report.status == "mismatch" and report.exit_code == 1
    row = report.classes.set_index("class_name").loc[first]
    assert (row["found"], row["status"]) == (1, "count")


def test_missing_and_extra_classes(tmp_path):
    gen_ravi_csv(tmp_path, "mini-imagenet", "test", drop=1)
    missing = class_names("mini-imagenet", "test")[0]
    with pytest.raises(ValueError, match=rf"1 of its 20 classes missing \('{missing}'\)"):
        load_split("mini-imagenet", "test", tmp_path)
    csv = tmp_path / "miniImageNet" / "test.csv"
    extra = class_names("mini-imagenet", "train")[0]
    Image.fromarray(_solid(("x",))).save(tmp_path / "miniImageNet" / "images" / "x.jpg")
    csv.write_text(csv.read_text() + f"x.jpg,{extra}\n")
    report = check_split("mini-imagenet", tmp_path, split="test")
    status = report.classes.set_index("class_name")["status"]
    assert status[missing] == "missing" and status[extra] == "extra"
    text = report.to_text()
    assert f"missing classes (1): {missing}" in text and f"extra classes (1): {extra}" in text


def test_undecodable_image(tmp_path):
    gen_ravi_csv(tmp_path, "mini-imagenet", "test")
    name = f"{class_names('mini-imagenet', 'test')[0]}00000002.jpg"
    (tmp_path / "miniImageNet" / "images" / name).write_bytes(b"not a jpeg")
    ds = load_split("mini-imagenet", "test", tmp_path)
    with pytest.raises(ValueError, match=rf"cannot decode image .*{name}"):
        ds.image(1)
    ds.image(0)


def test_undecodable_png_in_pickle(tmp_path):
    gen_ren_png(tmp_path, "tiered-imagenet", "test")
    path = tmp_path / "test_images_png.pkl"
    blobs = pickle.loads(path.read_bytes())
    blobs[2] = np.frombuffer(b"garbage", dtype=np.uint8)
    path.write_bytes(pickle.dumps(blobs))
    ds = load_split("tiered-imagenet", "test", tmp_path)
    with pytest.raises(ValueError, match=r"cannot decode image #2 in .*test_images_png\.pkl"):
        ds.image(2)


def test_listed_image_missing(tmp_path):
    gen_ravi_csv(tmp_path, "mini-imagenet", "test")
    victim = next((tmp_path / "miniImageNet" / "images").iterdir())
    victim.unlink()
    with pytest.raises(ValueError, match=rf"1 listed images are missing from .*images \(first: {victim.name}\)"):
        load_split("mini-imagenet", "test", tmp_path)


def test_bad_csv_header(tmp_path):
    gen_ravi_csv(tmp_path, "mini-imagenet", "test")
    csv = tmp_path / "miniImageNet" / "test.csv"
    csv.write_text("file,class\n" + "\n".join(csv.read_text().splitlines()[1:]))
    with pytest.raises(ValueError, match=r"test\.csv: expected the header 'filename,label'"):
        load_split("mini-imagenet", "test", tmp_path)


def test_tiered_labels_without_names_are_refused(tmp_path):
    gen_npz(tmp_path, "tiered-imagenet", "test")
    path = tmp_path / "tiered-imagenet" / "test_labels.pkl"
    with path.open("wb") as fh:
        pickle.dump({"labels": list(range(163))}, fh)
    with pytest.raises(ValueError, match=r"test_labels\.pkl: integer 'labels' without 'label_specific_str'"):
        load_split("tiered-imagenet", "test", tmp_path)


def test_npz_without_images_key(tmp_path):
    gen_npz(tmp_path, "tiered-imagenet", "test")
    np.savez(tmp_path / "tiered-imagenet" / "test_images.npz", data=np.zeros((1, 2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match=r"test_images\.npz: no array 'images' \(found \['data'\]\)"):
        load_split("tiered-imagenet", "test", tmp_path)


def test_truncated_npz(tmp_path):
    gen_npz(tmp_path, "tiered-imagenet", "test")
    path = tmp_path / "tiered-imagenet" / "test_images.npz"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"test_images\.npz: not a readable \.npz"):
        load_split("tiered-imagenet", "test", tmp_path)


def test_l2l_split_file_must_match_canonical(tmp_path):
    gen_l2l_raw(tmp_path, "cifar-fs", "test")
    txt = tmp_path / "cifarfs" / "cifar100" / "splits" / "bertinetto" / "test.txt"
    txt.write_text("\n".join(txt.read_text().split()[1:] + ["apple"]))
    with pytest.raises(ValueError, match=r"test\.txt: lists 20 classes that differ"):
        load_split("cifar-fs", "test", tmp_path)


# ---------------------------------------------------------------------------------------------
# check_split and the CLI
# ---------------------------------------------------------------------------------------------


def test_check_split_tidy_frames(tmp_path):
    for split in ("train", "test"):
        gen_ravi_csv(tmp_path, "mini-imagenet", split)
    report = check_split("mini-imagenet", tmp_path)
    assert tuple(report.classes.columns) == CLASS_COLUMNS
    assert list(report.splits["split"]) == ["train", "val", "test"]
    assert list(report.splits["status"]) == ["subset", "absent", "subset"]
    assert report.status == "absent" and report.exit_code == 1
    test_rows = report.classes[report.classes["split"] == "test"]
    assert list(test_rows["label"]) == list(range(20))
    assert set(test_rows["expected"]) == {600} and set(test_rows["found"]) == {2}


def test_cli_data_check(tmp_path, capsys):
    gen_ravi_csv(tmp_path, "mini-imagenet", "test")
    out_csv = tmp_path / "report.csv"
    assert (
        main(["data", "check", "mini-imagenet", "--root", str(tmp_path), "--split", "test", "--csv", str(out_csv)]) == 0
    )
    out = capsys.readouterr().out
    assert "SUBSET" in out and "2 per class (subset of 600)" in out
    assert tuple(pd.read_csv(out_csv).columns) == CLASS_COLUMNS

    # every split: val and train are absent -> 1
    assert main(["data", "check", "mini-imagenet", "--root", str(tmp_path)]) == 1
    assert "ABSENT" in capsys.readouterr().out

    # a missing class -> 1, naming it
    csv = tmp_path / "miniImageNet" / "test.csv"
    gone = class_names("mini-imagenet", "test")[-1]
    csv.write_text("\n".join(line for line in csv.read_text().splitlines() if not line.endswith(gone)) + "\n")
    assert main(["data", "check", "mini-imagenet", "--root", str(tmp_path), "--split", "test"]) == 1
    assert f"missing classes (1): {gone}" in capsys.readouterr().out


def test_cli_data_check_bad_input_exits_2(tmp_path, capsys):
    assert main(["data", "check", "mini-imagenet", "--root", str(tmp_path / "no")]) == 2
    assert "data root does not exist" in capsys.readouterr().err
    assert main(["data", "check", "mini-imagenet", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no mini-imagenet 'train' data found" in err and err.count("\n") == 1
    assert main(["data", "check", "imagenet", "--root", str(tmp_path)]) == 2
    assert "unknown dataset 'imagenet'" in capsys.readouterr().err


def test_cli_data_list_and_classes(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in list_datasets():
        assert name in out
    assert "train 351, val 97, test 160" in out
    assert main(["data", "classes", "fc100", "test"]) == 0
    assert capsys.readouterr().out.split() == class_names("fc100", "test")
    assert main(["data", "check", "digits"]) == 0
    assert "result: OK" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# Real data (../shared/data), skipped when absent
# ---------------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_real_mini_imagenet():
    root = REAL_DATA / "mini-imagenet"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    test = load_split("mini-imagenet", "test", REAL_DATA)
    assert len(test) == 12000 and set(test.counts()) == {600}
    assert test.class_names == class_names("mini-imagenet", "test")
    img, label = test[0]
    assert img.size == (84, 84) and img.mode == "RGB" and label == 0
    train = load_split("mini-imagenet", "train", root)
    assert len(train) == 16000 and train.counts().shape == (64,) and set(train.counts()) == {250}
    report = check_split("mini-imagenet", REAL_DATA)
    assert dict(zip(report.splits["split"], report.splits["status"])) == {
        "train": "subset",
        "val": "subset",
        "test": "ok",
    }
    assert report.exit_code == 0


# ---------------------------------------------------------------------------------------------
# CUB-200-2011 and LibFewShot's CSV layout
# ---------------------------------------------------------------------------------------------


def test_cub_split_is_chen_et_al_rule():
    # CloserLookFewShot: sorted class folders; base i % 2 == 0, val i % 4 == 1, novel i % 4 == 3
    order = sorted(CUB_CLASSES)
    assert len(order) == 200 and order[0] == "001.Black_footed_Albatross" and order[-1] == "200.Common_Yellowthroat"
    assert class_names("cub", "train") == order[0::2]
    assert class_names("cub", "val") == order[1::4]
    assert class_names("cub", "test") == order[3::4]
    assert class_names("cub", "test")[:2] == ["004.Groove_billed_Ani", "008.Rhinoceros_Auklet"]


def test_cub_data_check_and_errors(tmp_path, capsys):
    gen_cub(tmp_path, "cub", "test")
    assert main(["data", "check", "cub", "--root", str(tmp_path)]) == 0
    assert "result: OK" in capsys.readouterr().out
    ds = load_split("cub", "test", tmp_path / "CUB_200_2011")  # the folder itself works too
    assert len(ds) == 100 and ds.class_names[0] == "004.Groove_billed_Ani"
    base = tmp_path / "CUB_200_2011"
    victim = next((base / "images" / "004.Groove_billed_Ani").iterdir())
    victim.unlink()
    with pytest.raises(ValueError, match=r"images\.txt: 1 listed images of the test classes are missing"):
        load_split("cub", "test", tmp_path)
    assert load_split("cub", "train", tmp_path).counts().tolist() == [2] * 100  # other splits unaffected
    lines = (base / "image_class_labels.txt").read_text().splitlines()
    lines[0] = "1 2"
    (base / "image_class_labels.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(
        ValueError, match=r"image 1 is in folder '001.Black_footed_Albatross' but labelled '002.Laysan_Albatross'"
    ):
        load_split("cub", "train", tmp_path)


def test_cub_table_column():
    from fewshot.report import DATASET_ORDER, dataset_display

    assert DATASET_ORDER[-1] == "cub" and dataset_display("cub") == "CUB"


def test_libfewshot_csv_layout(tmp_path):
    # LibFewShot's miniImageNet--ravi: {split}.csv with a header row (filename,label, skipped by
    # LibFewShot), a UTF-8 BOM written by some tools, images/ possibly in sub-folders.
    base = tmp_path / "miniImageNet--ravi"
    classes = class_names("mini-imagenet", "test")
    lines = ["filename,label"]
    for k, c in enumerate(classes):
        sub = f"{c}/" if k % 2 else ""
        (base / "images" / c).mkdir(parents=True, exist_ok=True)
        for j in range(2):
            rel = f"{sub}{c}{j + 1:08d}.jpg"
            Image.fromarray(_solid((c, j))).save(base / "images" / rel, quality=95)
            lines.append(f"{rel},{c}")
    (base / "test.csv").write_text("\ufeff" + "\r\n".join(lines) + "\r\n", encoding="utf-8")
    ds = load_split("mini-imagenet", "test", tmp_path)
    assert ds.counts().tolist() == [2] * 20 and ds.labels[:4].tolist() == [0, 0, 1, 1]
    assert ds.path(2).parent.name == classes[1]
    assert check_split("mini-imagenet", tmp_path, split="test").ok
