"""On-disk layouts, dataset specs, and the step from "what is on disk" to a checked split.

A :class:`Layout` names the files it needs (templates relative to a data root); the first
layout of a dataset whose files all exist under the root is used. Its ``load`` returns a
:class:`Found`: the class of every item in source order, named as in the benchmark's split
files (CIFAR-100 fine names, ImageNet wnids, digit strings). :func:`finalize` checks it
against the canonical class list and numbers the labels; :mod:`fewshot.data.check` reports
on it instead.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fewshot.data._base import ImageSplit

__all__ = [
    "LayoutNotFound",
    "Found",
    "Layout",
    "DatasetSpec",
    "resolve_root",
    "locate",
    "scan",
    "finalize",
    "count_status",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


class LayoutNotFound(ValueError):
    """No known layout of a dataset's split exists under the data root."""


@dataclass(frozen=True)
class Found:
    """What a layout found for one split, before it is checked against the class list.

    Attributes:
        classes: the distinct class names present (the benchmark's vocabulary).
        item_class: ``(N,)`` int64, index into ``classes`` of each item, in source order.
        build: ``build(labels, class_names) -> ImageSplit`` over all ``N`` items.
        source: the file or directory read, for messages.
        declared: classes the source declares but holds no item of (e.g. empty folders).
    """

    classes: list[str]
    item_class: np.ndarray
    build: Callable[[np.ndarray, list[str]], ImageSplit]
    source: str
    declared: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        """Items per class name (declared-but-empty classes count 0)."""
        n = np.bincount(self.item_class, minlength=len(self.classes)) if len(self.classes) else []
        out = {c: 0 for c in self.declared}
        out.update({c: int(k) for c, k in zip(self.classes, n)})
        return out


@dataclass(frozen=True)
class Layout:
    """One on-disk format of a dataset.

    Attributes:
        name: short identifier shown by ``fewshot data list`` and in reports.
        description: where the format comes from.
        files: paths relative to a base directory, all required; ``{split}`` is
            ``train``/``val``/``test`` and ``{split_long}`` is ``train``/``validation``/``test``.
            A trailing ``/`` requires a directory.
        load: ``load(paths, spec, split) -> Found`` with ``paths`` matching ``files``.
        bases: sub-directories of the data root tried in turn (``""`` is the root itself).
        hint: appended to class-mismatch errors (e.g. the label convention the files need).
    """

    name: str
    description: str
    files: tuple[str, ...]
    load: Callable[[list[Path], DatasetSpec, str], Found]
    bases: tuple[str, ...] = ("",)
    hint: str = ""

    def candidates(self, root: Path, split: str) -> list[list[Path]]:
        """For each base directory, the paths this layout needs for ``split``."""
        long = "validation" if split == "val" else split
        return [[root / base / f.format(split=split, split_long=long) for f in self.files] for base in self.bases]

    def match(self, root: Path, split: str) -> list[Path] | None:
        """The first candidate whose paths all exist, or ``None``."""
        for paths in self.candidates(root, split):
            if all(_exists(p, f) for p, f in zip(paths, self.files)):
                return paths
        return None

    def looked_for(self, root: Path, split: str) -> str:
        """One-line description of every path tried, for error messages."""
        alts = [" + ".join(_show(p, f) for p, f in zip(paths, self.files)) for paths in self.candidates(root, split)]
        return f"{self.name} ({' or '.join(alts) if alts else 'bundled'})"


def _exists(path: Path, template: str) -> bool:
    return path.is_dir() if template.endswith("/") else path.is_file()


def _show(path: Path, template: str) -> str:
    return f"{path}/" if template.endswith("/") else str(path)


@dataclass(frozen=True)
class DatasetSpec:
    """A registered benchmark.

    Attributes:
        name: registry name (``"cifar-fs"``).
        title: human-readable name with its reference.
        splits: the splits it defines, e.g. ``("train", "val", "test")``.
        class_list: ``class_list(split) -> list[str]``, the canonical class order.
        images_per_class: the count every class has in the full benchmark, or ``None`` when
            counts vary (tieredImageNet, digits).
        layouts: on-disk formats, tried in order.
        needs_root: ``False`` for bundled data (digits).
        provenance: where the class lists come from.
        image_size: the images' nominal ``(height, width)``.
    """

    name: str
    title: str
    splits: tuple[str, ...]
    class_list: Callable[[str], list[str]]
    images_per_class: int | None
    layouts: tuple[Layout, ...]
    needs_root: bool = True
    provenance: str = ""
    image_size: tuple[int, int] | None = None


def resolve_root(spec: DatasetSpec, root: str | os.PathLike | None) -> Path:
    """``root`` as an existing directory.

    Raises:
        ValueError: ``root`` is ``None`` for a dataset that needs one.
        FileNotFoundError: ``root`` does not exist.
        NotADirectoryError: ``root`` is a file.
    """
    if root is None:
        if not spec.needs_root:
            return Path(".")
        raise ValueError(
            f"{spec.name} needs a data root (--data-root DIR); formats looked for: "
            + "; ".join(layout.name for layout in spec.layouts)
        )
    path = Path(root).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data root does not exist: {path}")
    if not path.is_dir():
        raise NotADirectoryError(f"data root is not a directory: {path}")
    return path


def locate(spec: DatasetSpec, root: Path, split: str) -> tuple[Layout, list[Path]]:
    """The first layout of ``spec`` present under ``root`` for ``split``, with its paths.

    Raises:
        LayoutNotFound: (a ``ValueError``) no layout matches; the message lists every path
            looked for.
    """
    for layout in spec.layouts:
        paths = layout.match(root, split)
        if paths is not None:
            return layout, paths
    tried = "; ".join(layout.looked_for(root, split) for layout in spec.layouts)
    raise LayoutNotFound(f"no {spec.name} '{split}' data found under {root}; looked for: {tried}")


def scan(spec: DatasetSpec, root: Path, split: str) -> tuple[Layout, Found]:
    """Locate and read ``split`` (labels only; no image is decoded)."""
    layout, paths = locate(spec, root, split)
    return layout, layout.load(paths, spec, split)


def count_status(counts: Sequence[int], expected: int | None) -> tuple[list[str], int | None]:
    """Per-class status for the counts of the classes present, and the reference count.

    ``expected`` is the full benchmark's images per class (``None``: counts may vary). The
    reference is the most common count, capped at ``expected``: classes at ``expected`` are
    ``"ok"``, classes at a smaller reference are a uniform ``"subset"``, all others have a
    wrong ``"count"``. Without ``expected`` every present class is ``"ok"``.
    """
    counts = [int(c) for c in counts]
    if expected is None or not counts:
        return ["ok"] * len(counts), None
    tally = collections.Counter(counts)
    mode = max(tally, key=lambda c: (tally[c], c))
    ref = mode if mode < expected else expected
    status = ["ok" if c == expected else "subset" if c == ref else "count" for c in counts]
    return status, ref


def _names(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(c) for c in items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def finalize(spec: DatasetSpec, split: str, layout: Layout, found: Found, *, strict: bool = True) -> ImageSplit:
    """Number the labels in canonical order and build the split.

    Raises:
        ValueError: classes of the split are missing or classes outside it are present; or,
            when ``strict`` and the benchmark has a fixed count per class, some class count
            differs from the others or exceeds it (a uniform subset is accepted).
    """
    expected = spec.class_list(split)
    counts = found.counts()
    present = {c for c, n in counts.items() if n > 0}
    missing = [c for c in expected if c not in present]
    extra = sorted(present.difference(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of its {len(expected)} classes missing ({_names(missing)})")
        if extra:
            parts.append(f"{len(extra)} classes not in the split ({_names(extra)})")
        hint = f"; {layout.hint}" if layout.hint else ""
        raise ValueError(
            f"{found.source}: {spec.name} '{split}' has {' and '.join(parts)}{hint}; "
            f"see `fewshot data check {spec.name}`"
        )
    if strict and spec.images_per_class is not None:
        per_class = [counts[c] for c in expected]
        status, ref = count_status(per_class, spec.images_per_class)
        wrong = [(c, n) for c, n, s in zip(expected, per_class, status) if s == "count"]
        if wrong:
            c, n = wrong[0]
            whose = "the benchmark has" if ref == spec.images_per_class else "the other classes have"
            raise ValueError(
                f"{found.source}: {spec.name} '{split}' class {c!r} has {n} images where {whose} "
                f"{ref} ({len(wrong)} classes off); see `fewshot data check {spec.name}`"
            )
    index = {c: k for k, c in enumerate(expected)}
    label_of = np.array([index[c] for c in found.classes], dtype=np.int64)
    labels = label_of[found.item_class] if found.item_class.size else np.zeros(0, np.int64)
    return found.build(labels, expected)


def list_images(directory: Path) -> list[Path]:
    """Image files directly in ``directory``, sorted by file name."""
    return sorted(
        (p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
        key=lambda p: p.name,
    )


def class_folders(directory: Path, names: Sequence[str]) -> tuple[list[str], list[list[Path]]]:
    """The sub-folders of ``directory`` among ``names`` (in that order) and their images."""
    present = [c for c in names if (directory / c).is_dir()]
    return present, [list_images(directory / c) for c in present]


def from_groups(
    names: Sequence[str], groups: Sequence[Sequence[object]]
) -> tuple[list[str], np.ndarray, list[object], tuple[str, ...]]:
    """Flatten per-class item lists: (classes present, item_class, items, empty classes)."""
    classes = [c for c, g in zip(names, groups) if len(g)]
    empty = tuple(c for c, g in zip(names, groups) if not len(g))
    item_class = (
        np.concatenate([np.full(len(g), k, dtype=np.int64) for k, g in enumerate(g for g in groups if len(g))])
        if classes
        else np.zeros(0, dtype=np.int64)
    )
    items = [item for g in groups for item in g]
    return classes, item_class, items, empty


def codes(values: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Distinct values in order of first appearance, and each value's index among them."""
    index: dict[str, int] = {}
    item_class = np.fromiter((index.setdefault(v, len(index)) for v in values), dtype=np.int64, count=len(values))
    return list(index), item_class
