"""The dataset registry: ``DATASETS``, :func:`load_split`, :func:`class_names`, :func:`list_datasets`."""

from __future__ import annotations

import fnmatch
import os

from fewshot.data._base import ImageSplit
from fewshot.data._layout import DatasetSpec, finalize, resolve_root, scan
from fewshot.data.cifar import CIFAR_FS, FC100
from fewshot.data.cub import CUB
from fewshot.data.digits import DIGITS
from fewshot.data.mini_imagenet import MINI_IMAGENET
from fewshot.data.tiered_imagenet import TIERED_IMAGENET

__all__ = ["DATASETS", "get_dataset", "list_datasets", "class_names", "load_split"]

#: Registered benchmarks by name.
DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec for spec in (CIFAR_FS, FC100, MINI_IMAGENET, TIERED_IMAGENET, CUB, DIGITS)
}


def list_datasets(pattern: str = "*") -> list[str]:
    """Registered dataset names matching the shell-style ``pattern``, sorted."""
    return sorted(name for name in DATASETS if fnmatch.fnmatch(name, pattern))


def get_dataset(name: str) -> DatasetSpec:
    """The spec of dataset ``name``.

    Raises:
        ValueError: unknown name (the message lists the registered ones).
    """
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(list_datasets())}") from None


def _check_split(spec: DatasetSpec, split: str) -> None:
    if split not in spec.splits:
        raise ValueError(f"unknown split {split!r} for {spec.name}; expected one of {', '.join(spec.splits)}")


def class_names(name: str, split: str) -> list[str]:
    """The canonical class list of ``split``; label *k* is entry *k*. Reads no data file.

    Class names are CIFAR-100 fine names (CIFAR-FS; FC100 lists the fine classes of its
    superclasses), ImageNet wnids (mini/tieredImageNet) or digit strings (digits).

    Raises:
        ValueError: unknown dataset or split.
    """
    spec = get_dataset(name)
    _check_split(spec, split)
    return spec.class_list(split)


def load_split(name: str, split: str, root: str | os.PathLike | None = None, *, strict: bool = True) -> ImageSplit:
    """Load one split of a registered benchmark from ``root`` (auto-detecting its format).

    Labels are available at once; images decode lazily. Label *k* is the *k*-th class of
    :func:`class_names`; items within a class keep the source's order, so labels (and the
    episodes drawn from them) are identical on every machine.

    Args:
        name: a name from :func:`list_datasets`.
        split: ``"train"``, ``"val"`` or ``"test"`` (digits: ``"train"``, ``"test"``).
        root: the data root (``--data-root``); ignored by ``digits``.
        strict: for benchmarks with a fixed count per class (CIFAR-FS, FC100, miniImageNet:
            600), require every class to have the same count, at most that; a uniform subset
            (e.g. 250 per class) passes. ``False`` skips this check.

    Raises:
        ValueError: unknown dataset or split; no known layout under ``root`` (the message lists
            every path looked for); a corrupt or refused pickle; missing or unexpected classes;
            a class count off (when ``strict``).
        FileNotFoundError: ``root`` does not exist.
    """
    spec = get_dataset(name)
    _check_split(spec, split)
    path = resolve_root(spec, root)
    layout, found = scan(spec, path, split)
    return finalize(spec, split, layout, found, strict=strict)
