"""The canonical class lists shipped in ``fewshot/data/splits/`` (see its README.md)."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

__all__ = ["read_split_file", "split_classes", "cifar100_fine_names", "imagenet_names"]


@functools.cache
def read_split_file(filename: str) -> Any:
    """The parsed JSON file ``fewshot/data/splits/<filename>`` (cached; do not mutate)."""
    text = resources.files("fewshot.data").joinpath("splits", filename).read_text("utf-8")
    return json.loads(text)


def split_classes(filename: str, split: str) -> list[str]:
    """The class list of ``split`` in ``filename``, in file order (a fresh list)."""
    return list(read_split_file(filename)[split])


@functools.cache
def cifar100_fine_names() -> tuple[str, ...]:
    """The 100 CIFAR-100 fine class names in fine-label order (fine id *i* is entry *i*).

    The official ``cifar-100-python/meta`` lists ``fine_label_names`` alphabetically, so the
    fine ids of pickles that carry no names (MetaOptNet, RFS, learn2learn FC100) are the
    alphabetical ranks of the names.
    """
    hierarchy = read_split_file("cifar100_superclass_to_fine.json")
    return tuple(sorted(name for fines in hierarchy.values() for name in fines))


@functools.cache
def imagenet_names(dataset: str) -> dict[str, str]:
    """wnid -> WordNet name for every class of ``"mini"`` or ``"tiered"`` ImageNet."""
    table = read_split_file(f"{dataset}_imagenet_wnid_names.json")
    return {wnid: name for split in table.values() for wnid, name in split.items()}
