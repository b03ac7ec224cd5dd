"""Which classes of a few-shot split are in a backbone's pretraining label set.

Every ImageNet-pretrained result on miniImageNet / tieredImageNet is evaluated on classes the
backbone was trained on; CIFAR-FS and FC100 share some classes with ImageNet too.
:func:`pretraining_overlap` answers, per class of a split:

- miniImageNet / tieredImageNet classes are ImageNet WordNet ids: matched by ``wnid``;
- CIFAR-FS / FC100 classes are CIFAR-100 names: each maps to the WordNet synset it denotes
  (``fewshot/data/splits/cifar100_wordnet.json``, hand-vetted, with notes), found ``by name``
  (the CIFAR name is one of the synset's lemmas) or as a vetted ``synonym``; the class counts as
  seen when that synset is in the label set. Homonyms (ImageNet-1k's ``mouse`` is the computer
  mouse) and subclasses (ImageNet-1k's red fox under CIFAR's fox) are not counted.

Label sets are timm's synset lists in ``timm/data/_info/`` (located without importing timm,
so this module stays torch-free).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "LABEL_SETS",
    "OVERLAP_COLUMNS",
    "PretrainingOverlapWarning",
    "label_set_synsets",
    "pretraining_overlap",
    "overlap_summary",
    "label_set_of_model",
    "warn_overlap",
    "overlap_footnote",
]

#: Pretraining label sets: name -> timm synset file in ``timm/data/_info/``.
LABEL_SETS: dict[str, str] = {
    "imagenet-1k": "imagenet_synsets.txt",
    "imagenet-12k": "imagenet12k_synsets.txt",
    "imagenet-21k": "imagenet21k_goog_synsets.txt",
    "imagenet-21k-goog": "imagenet21k_goog_synsets.txt",
    "imagenet-21k-miil": "imagenet21k_miil_synsets.txt",
    "imagenet-22k": "imagenet22k_synsets.txt",
    "imagenet-22k-ms": "imagenet22k_ms_synsets.txt",
}

#: Columns of :func:`pretraining_overlap`'s frame (and of ``fewshot data overlap --out``).
OVERLAP_COLUMNS: tuple[str, ...] = ("class", "in_pretraining", "matched", "how")

_WNID_DATASETS = ("mini-imagenet", "tiered-imagenet")
_CIFAR_DATASETS = ("cifar-fs", "fc100")


class PretrainingOverlapWarning(UserWarning):
    """Features are extracted on classes the backbone's pretraining label set contains."""


def _info_dir() -> Path:
    spec = importlib.util.find_spec("timm")
    if spec is None or spec.origin is None:
        raise ValueError("timm is not installed; its synset lists are needed for the overlap check")
    return Path(spec.origin).parent / "data" / "_info"


@functools.cache
def _read_lines(filename: str) -> tuple[str, ...]:
    return tuple((_info_dir() / filename).read_text("utf-8").split())


@functools.cache
def _lemmas() -> dict[str, str]:
    text = (_info_dir() / "imagenet_synset_to_lemma.txt").read_text("utf-8")
    return dict(line.split("\t", 1) for line in text.splitlines() if "\t" in line)


def label_set_synsets(label_set: str) -> frozenset[str]:
    """The WordNet ids of ``label_set`` (a key of :data:`LABEL_SETS`).

    Raises:
        ValueError: unknown label set.
    """
    try:
        filename = LABEL_SETS[label_set]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown pretraining label set {label_set!r}; expected one of {', '.join(LABEL_SETS)}"
        ) from None
    return frozenset(_read_lines(filename))


@functools.cache
def _cifar_mapping() -> Mapping[str, Any]:
    from fewshot.data._splits import read_split_file

    return read_split_file("cifar100_wordnet.json")["classes"]


def _describe(wnid: str) -> str:
    lemma = _lemmas().get(wnid)
    return f"{wnid} {lemma}" if lemma else wnid


def pretraining_overlap(dataset: str, split: str, label_set: str = "imagenet-1k") -> pd.DataFrame:
    """Per class of ``dataset``/``split``: is it in the pretraining ``label_set``?

    Args:
        dataset: ``mini-imagenet``, ``tiered-imagenet``, ``cifar-fs`` or ``fc100`` (``digits``
            has no ImageNet classes: every row is False).
        split: a split of the dataset.
        label_set: a key of :data:`LABEL_SETS` (``imagenet-1k``, ``imagenet-21k``, ...).

    Returns:
        One row per class in label order, columns :data:`OVERLAP_COLUMNS`: ``class``,
        ``in_pretraining`` (bool), ``matched`` (the ImageNet class, ``"wnid lemmas"``, or empty),
        ``how`` (``wnid`` | ``name`` | ``synonym``, empty when not matched).

    Raises:
        ValueError: unknown dataset, split or label set.
    """
    import pandas as pd

    from fewshot.data import class_names

    classes = class_names(dataset, split)
    synsets = label_set_synsets(label_set)
    rows = []
    for cls in classes:
        wnid, how = None, ""
        if dataset in _WNID_DATASETS:
            wnid, how = cls, "wnid"
        elif dataset in _CIFAR_DATASETS:
            entry = _cifar_mapping()[cls]
            wnid, how = entry["wnid"], entry["how"] or ""
        hit = wnid is not None and wnid in synsets
        rows.append(
            {"class": cls, "in_pretraining": hit, "matched": _describe(wnid) if hit else "", "how": how if hit else ""}
        )
    return pd.DataFrame(rows, columns=list(OVERLAP_COLUMNS))


def overlap_summary(dataset: str, split: str, label_set: str) -> dict[str, Any]:
    """``{"label_set", "dataset", "split", "n_classes", "n_overlap", "classes"}`` for a manifest."""
    frame = pretraining_overlap(dataset, split, label_set)
    seen = frame.loc[frame["in_pretraining"], "class"].tolist()
    return {
        "label_set": label_set,
        "dataset": dataset,
        "split": split,
        "n_classes": len(frame),
        "n_overlap": len(seen),
        "classes": seen,
    }


def label_set_of_model(name: str) -> str | None:
    """The label set a timm model's pretrained tag was trained on, or None when unknown.

    The tag decides (``..._in21k``, ``..._in22k`` and their ``_ft_in1k`` fine-tunes:
    ``imagenet-21k``, since the backbone saw those classes; ``_in12k``: ``imagenet-12k``;
    ``_in1k``: ``imagenet-1k``); otherwise the number of classes of the pretrained head
    (timm's ``infer_imagenet_subset`` table). ``name`` may carry a tag (``resnet50.a1_in1k``);
    without one timm's default tag is used. Unknown models give None.
    """
    import timm.models

    try:
        cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=False)
    except (RuntimeError, ValueError, KeyError):
        return None
    if cfg is None:
        return None
    tag = (getattr(cfg, "tag", None) or "").lower()
    if "in21k" in tag or "in22k" in tag:
        return "imagenet-21k"
    if "in12k" in tag:
        return "imagenet-12k"
    if "in1k" in tag:
        return "imagenet-1k"
    from timm.data.imagenet_info import infer_imagenet_subset

    subset = infer_imagenet_subset({"num_classes": getattr(cfg, "num_classes", None)})
    return subset if subset in LABEL_SETS else None


def warn_overlap(dataset: str, split: str, label_set: str | None) -> dict[str, Any] | None:
    """Warn once (:class:`PretrainingOverlapWarning`) when the split shares classes with
    ``label_set``; return :func:`overlap_summary` (None when ``label_set`` is None or the dataset
    has no ImageNet classes)."""
    if label_set is None or dataset not in _WNID_DATASETS + _CIFAR_DATASETS:
        return None
    summary = overlap_summary(dataset, split, label_set)
    if summary["n_overlap"]:
        warnings.warn(
            f"{summary['n_overlap']} of the {summary['n_classes']} {dataset}/{split} classes are in the "
            f"backbone's pretraining label set {label_set} (see `fewshot data overlap {dataset} --split "
            f"{split} --pretrained-on {label_set}`)",
            PretrainingOverlapWarning,
            stacklevel=3,
        )
    return summary


def overlap_footnote(results: list[str | Path]) -> str | None:
    """A footnote naming the results whose features were extracted on pretraining classes.

    Reads each results directory's ``manifest.json`` -> its feature file -> the feature
    manifest's ``pretraining_overlap`` (written by ``fewshot extract``). None when no result
    overlaps (or the feature files are gone).
    """
    import numpy as np

    parts = []
    for directory in results:
        try:
            manifest = json.loads((Path(directory) / "manifest.json").read_text("utf-8"))
            with np.load(manifest["features"]["path"], allow_pickle=False) as data:
                record = json.loads(str(data["manifest"])).get("pretraining_overlap")
        except (OSError, KeyError, TypeError, ValueError):
            continue
        if record and record["n_overlap"]:
            parts.append(
                f"{manifest.get('label', Path(directory).name)} ({record['dataset']}/{record['split']}): "
                f"{record['n_overlap']}/{record['n_classes']} classes in {record['label_set']}"
            )
    if not parts:
        return None
    return "Pretraining overlap: " + "; ".join(dict.fromkeys(parts)) + "."
