"""Check a dataset on disk against its canonical class lists: ``check_split`` and its report.

Per class, the report gives the expected and found number of images and a status:

- ``ok``: the full benchmark count (CIFAR-FS/FC100/miniImageNet: 600), or any count for
  benchmarks whose counts vary (tieredImageNet, digits);
- ``subset``: fewer images than the benchmark has, the same number as the other classes (e.g.
  the shared miniImageNet train split, 64 x 250);
- ``count``: a count that differs from the other classes or exceeds the benchmark's;
- ``missing``: a class of the split with no image; ``extra``: images of a class not in the split.

A split is ``ok``, ``subset`` (consistent but smaller), ``mismatch`` (any missing/extra/count)
or ``absent`` (no known layout for it under the root). ``fewshot data check`` exits 0 for ok
and subset, 1 for mismatch or absent, and 2 when it cannot check at all (unknown dataset,
missing root, nothing recognisable, unreadable file).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fewshot.data._layout import LayoutNotFound, count_status, resolve_root, scan
from fewshot.data._registry import get_dataset

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["DataCheck", "check_split", "CLASS_COLUMNS", "SPLIT_COLUMNS"]

#: Columns of :attr:`DataCheck.classes` (one row per split and class).
CLASS_COLUMNS = ("dataset", "split", "class_name", "label", "expected", "found", "status")
#: Columns of :attr:`DataCheck.splits` (one row per split).
SPLIT_COLUMNS = (
    "dataset",
    "split",
    "status",
    "layout",
    "source",
    "classes_expected",
    "classes_found",
    "images",
    "images_per_class",
    "missing",
    "extra",
    "wrong_count",
    "message",
)
_SEVERITY = {"ok": 0, "subset": 1, "mismatch": 2, "absent": 3}


@dataclass(frozen=True)
class DataCheck:
    """What ``check_split`` found.

    Attributes:
        dataset: the registry name.
        root: the data root checked.
        expected_per_class: the full benchmark's images per class, or ``None`` if it varies.
        classes: tidy DataFrame, one row per (split, class), columns :data:`CLASS_COLUMNS`;
            ``label`` is the canonical label (-1 for extra classes), ``expected`` is ``<NA>``
            when counts vary or the class is extra.
        splits: one row per split, columns :data:`SPLIT_COLUMNS`.
    """

    dataset: str
    root: str
    expected_per_class: int | None
    classes: pd.DataFrame
    splits: pd.DataFrame

    @property
    def status(self) -> str:
        """The worst split status: ``ok`` < ``subset`` < ``mismatch`` < ``absent``."""
        return max(self.splits["status"], key=_SEVERITY.__getitem__)

    @property
    def ok(self) -> bool:
        """True when every split is ``ok`` or ``subset``."""
        return self.status in ("ok", "subset")

    @property
    def exit_code(self) -> int:
        """0 when :attr:`ok`, else 1."""
        return 0 if self.ok else 1

    def to_text(self) -> str:
        """A plain-text report naming every difference."""
        lines = [f"{self.dataset} under {self.root}"]
        for row in self.splits.itertuples(index=False):
            if row.status == "absent":
                layouts = ", ".join(layout.name for layout in get_dataset(self.dataset).layouts)
                lines.append(
                    f"  {row.split:<5}  ABSENT   no files of any known layout ({layouts}); "
                    f"`--split {row.split}` lists the paths looked for"
                )
                continue
            rows = self.classes[self.classes["split"] == row.split]
            lines.append(
                f"  {row.split:<5}  {row.status.upper():<8} {row.layout}: {row.source}  "
                f"{row.classes_found}/{row.classes_expected} classes, {row.images} images, "
                f"{_per_class_text(row, rows, self.expected_per_class)}"
            )
            for status, title in (("missing", "missing classes"), ("extra", "extra classes")):
                names = rows.loc[rows["status"] == status, "class_name"].tolist()
                if names:
                    lines.append(f"         {title} ({len(names)}): {', '.join(names)}")
            wrong = rows[rows["status"] == "count"]
            if len(wrong):
                detail = ", ".join(f"{r.class_name} {r.found}" for r in wrong.itertuples())
                lines.append(f"         wrong counts ({len(wrong)}; the others have {row.images_per_class}): {detail}")
        lines.append(f"result: {self.status.upper()}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def _per_class_text(row: object, rows: pd.DataFrame, expected: int | None) -> str:
    import pandas as pd

    ref = row.images_per_class
    if pd.isna(ref):
        found = rows.loc[rows["status"] != "extra", "found"]
        found = found[found > 0]
        if not len(found):
            return "no images"
        return f"{found.min()}-{found.max()} per class (counts vary)"
    if expected is not None and ref < expected:
        return f"{ref} per class (subset of {expected})"
    return f"{ref} per class"


def check_split(name: str, root: str | os.PathLike | None, split: str | None = None) -> DataCheck:
    """Compare the data under ``root`` with the class lists and counts of ``name``.

    Args:
        name: a registered dataset.
        root: its data root (``None`` only for ``digits``).
        split: one split, or ``None`` for every split of the dataset (a split with no files
            under ``root`` is reported ``absent``).

    Returns:
        A :class:`DataCheck`; nothing is raised for missing/extra classes or wrong counts.

    Raises:
        ValueError: unknown dataset or split; no split of ``name`` recognisable under ``root``
            (the message lists every path looked for); an unreadable or refused file.
        FileNotFoundError: ``root`` does not exist.
    """
    import pandas as pd

    spec = get_dataset(name)
    if split is not None and split not in spec.splits:
        raise ValueError(f"unknown split {split!r} for {spec.name}; expected one of {', '.join(spec.splits)}")
    path = resolve_root(spec, root)
    splits = [split] if split is not None else list(spec.splits)
    class_rows: list[dict] = []
    split_rows: list[dict] = []
    errors: list[LayoutNotFound] = []
    for s in splits:
        expected = spec.class_list(s)
        try:
            layout, found = scan(spec, path, s)
        except LayoutNotFound as exc:
            if split is not None:
                raise
            errors.append(exc)
            split_rows.append(_split_row(spec.name, s, "absent", message=str(exc), classes_expected=len(expected)))
            continue
        counts = found.counts()
        per_class = [counts.get(c, 0) for c in expected]
        present = [n for n in per_class if n > 0]
        status_present, ref = count_status(present, spec.images_per_class)
        it = iter(status_present)
        statuses = [next(it) if n > 0 else "missing" for n in per_class]
        for k, (c, n, st) in enumerate(zip(expected, per_class, statuses)):
            class_rows.append(
                dict(
                    dataset=spec.name,
                    split=s,
                    class_name=c,
                    label=k,
                    expected=spec.images_per_class,
                    found=n,
                    status=st,
                )
            )
        known = set(expected)
        extra = sorted(c for c, n in counts.items() if n > 0 and c not in known)
        for c in extra:
            class_rows.append(
                dict(dataset=spec.name, split=s, class_name=c, label=-1, expected=None, found=counts[c], status="extra")
            )
        n_missing = statuses.count("missing")
        n_wrong = statuses.count("count")
        if n_missing or extra or n_wrong:
            status = "mismatch"
        elif "subset" in statuses:
            status = "subset"
        else:
            status = "ok"
        split_rows.append(
            _split_row(
                spec.name,
                s,
                status,
                layout=layout.name,
                source=found.source,
                classes_expected=len(expected),
                classes_found=len(present),
                images=int(sum(counts.values())),
                images_per_class=ref,
                missing=n_missing,
                extra=len(extra),
                wrong_count=n_wrong,
            )
        )
    if errors and len(errors) == len(splits):
        raise errors[0]
    classes = pd.DataFrame(class_rows, columns=list(CLASS_COLUMNS))
    classes["label"] = classes["label"].astype("int64")
    classes["found"] = classes["found"].astype("int64")
    classes["expected"] = classes["expected"].astype("Int64")
    table = pd.DataFrame(split_rows, columns=list(SPLIT_COLUMNS))
    table["images_per_class"] = table["images_per_class"].astype("Int64")
    where = str(path) if spec.needs_root else "(bundled data)"
    return DataCheck(spec.name, where, spec.images_per_class, classes, table)


def _split_row(dataset: str, split: str, status: str, **fields: object) -> dict:
    row = dict(
        dataset=dataset,
        split=split,
        status=status,
        layout="",
        source="",
        classes_expected=0,
        classes_found=0,
        images=0,
        images_per_class=None,
        missing=0,
        extra=0,
        wrong_count=0,
        message="",
    )
    row.update(fields)
    return row
