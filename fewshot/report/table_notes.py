"""Extra marks and footnotes for Table 1: transductive rows and quoted rows' protocols.

Kept apart from :mod:`fewshot.report.tables` (which computes the cells) and applied around
:func:`fewshot.report.tables.render_table` by :func:`render_with_notes`:

* a results row whose classifier is transductive (it also uses the episode's unlabelled
  queries; :func:`fewshot.classifiers.is_transductive`) is marked ``§``;
* a quoted (published) row may state its protocol in optional columns of the quoted CSV,
  :data:`PROTOCOL_COLUMNS`: ``episodes`` (test episodes), ``ci`` (``t`` or ``z``),
  ``support_augmentation`` (augmented copies of each support image at test time; 1 = none)
  and ``image_size`` (pixels); the footnote then says, per quoted method, how its protocol
  differs from ours (episodes per run and CI formula from the results' manifests, no
  test-time augmentation, image size from the features file's preprocessing when recorded).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pandas as pd

from fewshot.classifiers import is_transductive, list_classifiers
from fewshot.report.tables import render_table
from fewshot.results import Results, read_results

__all__ = [
    "PROTOCOL_COLUMNS",
    "TRANSDUCTIVE_MARK",
    "our_protocol",
    "protocol_notes",
    "render_with_notes",
    "transductive_labels",
]

#: Optional protocol columns of a quoted-results CSV.
PROTOCOL_COLUMNS: tuple[str, ...] = ("episodes", "ci", "support_augmentation", "image_size")
#: Appended to the label of a row scored by a transductive classifier.
TRANSDUCTIVE_MARK = "§"


def _results(results: Sequence[Any]) -> list[Any]:
    if isinstance(results, (str, os.PathLike, Results)):
        results = [results]
    return [r if isinstance(r, Results) else read_results(r) for r in results]


def transductive_labels(results: Sequence[Any]) -> list[str]:
    """Labels of the results whose per-episode ``classifier`` is a transductive one."""

    out = []
    for r in _results(results):
        names = set(r.episodes["classifier"].astype(str)) if "classifier" in r.episodes else set()
        if any(n in list_classifiers() and is_transductive(n) for n in names) and r.label not in out:
            out.append(r.label)
    return out


def our_protocol(results: Sequence[Any]) -> dict[str, list]:
    """The protocol values of our results, each a sorted list of the distinct values seen."""
    eps, ci, size = set(), set(), set()
    for r in _results(results):
        eps.update(int(v) for v in r.episodes.groupby(["dataset", "n_way", "n_shot", "seed"]).size())
        ci.add(str(r.manifest.get("config", {}).get("ci") or "t"))
        s = (r.manifest.get("features") or {}).get("image_size")
        if s:
            size.add(int(max(s)))
    return {"episodes": sorted(eps), "ci": sorted(ci), "support_augmentation": [1], "image_size": sorted(size)}


def _describe(col: str, value: Any) -> str:
    if col == "episodes":
        return f"{int(value)} episodes"
    if col == "ci":
        return f"{value} CI"
    if col == "support_augmentation":
        return (
            "no test-time support augmentation" if int(value) <= 1 else f"{int(value)}x test-time support augmentation"
        )
    return f"{int(value)} px images"


def _quoted_protocols(quoted: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    df = quoted.copy() if isinstance(quoted, pd.DataFrame) else pd.read_csv(quoted, dtype={"method": str})
    cols = [c for c in PROTOCOL_COLUMNS if c in df.columns]
    bad = (
        df["ci"].dropna().astype(str).str.strip().pipe(lambda s: s[~s.isin(["t", "z"])])
        if "ci" in cols
        else pd.Series([], dtype=str)
    )
    if len(bad):
        raise ValueError(f"quoted results: column 'ci' must be t or z, got {bad.iloc[0]!r}")
    for c in cols:
        if c != "ci":
            v = pd.to_numeric(df[c], errors="coerce")
            if (v.isna() & df[c].notna()).any() or (v <= 0).any():
                raise ValueError(
                    f"quoted results: column {c!r} needs positive numbers, got {df[c][v.isna() & df[c].notna()].tolist()[:1] or df[c][v <= 0].tolist()[:1]}"
                )
    return df.loc[:, ["method", *cols]]


def protocol_notes(quoted: str | os.PathLike | pd.DataFrame | None, results: Sequence[Any]) -> list[str]:
    """Footnote sentences: for each quoted method, how its stated protocol differs from ours.

    Returns ``[]`` without ``quoted`` or when it has none of :data:`PROTOCOL_COLUMNS`.

    Raises:
        ValueError: a ``ci`` other than t/z, or non-positive / non-numeric protocol numbers.
    """
    if quoted is None:
        return []
    q = _quoted_protocols(quoted)
    cols = [c for c in PROTOCOL_COLUMNS if c in q.columns]
    if not cols:
        return []
    ours = our_protocol(results)
    ours_text = ", ".join(
        "/".join(str(v) for v in ours[c]) + " episodes per run"
        if c == "episodes"
        else "/".join(_describe(c, v) for v in ours[c])
        for c in PROTOCOL_COLUMNS
        if ours[c]
    )
    parts = []
    for method, rows in q.groupby("method", sort=False):
        diffs = []
        for c in cols:
            for v in dict.fromkeys(rows[c].dropna()):
                v = str(v).strip() if c == "ci" else int(float(v))
                if c == "support_augmentation":
                    differs = v > 1
                else:  # unknown on our side (image size not recorded): state theirs
                    differs = not ours[c] or any(o != v for o in ours[c])
                if differs:
                    diffs.append(_describe(c, v))
        stated = any(rows[c].notna().any() for c in cols)
        text = ", ".join(dict.fromkeys(diffs)) if diffs else ("same protocol" if stated else "protocol not stated")
        parts.append(f"{method} ‡: {text}")
    return [f"Protocols of quoted rows, where they differ from ours ({ours_text}): " + "; ".join(parts) + "."]


def render_with_notes(frame: pd.DataFrame, fmt: str, results: Sequence[Any], quoted: Any = None) -> str:
    """:func:`fewshot.report.tables.render_table`, with transductive rows marked ``§`` and the
    protocol footnote of :func:`protocol_notes` added (Markdown: a paragraph under the table;
    LaTeX: ``%`` lines on top; CSV: unchanged)."""
    if fmt == "csv":
        return render_table(frame, fmt)
    marked = transductive_labels(results)
    sentences = []
    if marked:
        frame = frame.assign(method=[f"{m} {TRANSDUCTIVE_MARK}" if m in marked else m for m in frame["method"]])
        sentences.append(
            f"{TRANSDUCTIVE_MARK} transductive: the classifier also uses each episode's unlabelled queries."
        )
    sentences += protocol_notes(quoted, results)
    text = render_table(frame, fmt)
    if not sentences:
        return text
    if fmt == "md":
        return text + "\n" + " ".join(sentences) + "\n"
    return "".join(f"% {s}\n" for s in sentences) + text
