"""The paper's Table 1: accuracy ± 95% CI per method, dataset and shot, marked by evidence level.

Two steps, so the numbers stay tidy until the last moment:

1. :func:`table_frame` computes one row per cell (method × dataset × shot) with raw numbers:
   for a method with several training runs the mean over runs and the 95% half-width over
   run means, for a one-run method its median episode seed's mean and episode half-width,
   as **fractions** in [0, 1] (the unit of ``summary.csv`` and of
   :func:`fewshot.report.compare.compare`); the level, Holm-corrected p against the
   baseline, ``significant``, ``best``, ``quoted``.
2. :func:`render_table` formats such a frame as Markdown or LaTeX (accuracies in percent)
   or as CSV (the frame itself: fractions).

Layout: rows are methods (quoted rows first, in file order, then results in input order,
unless ``order`` says otherwise); columns are dataset × shot with the datasets in the order
CIFAR-FS, FC100, miniImageNet, tieredImageNet, then any other dataset in first-seen order.
A cell reads ``87.00±0.70``; the best value of a column (compared at the two decimals
shown; ties all bold) is bold; ``†`` marks a method significantly better than the baseline
across training runs (run level) after Holm correction at ``alpha``, ``*`` one significantly
better at the checkpoint level only (one training run on a side); ``‡`` marks a quoted
(published, not re-run) row; a missing cell shows ``–``.

Quoted results (``quoted=``) are a CSV file (or DataFrame) with the columns

    method, dataset, n_shot, mean, half_width

in **percent**, as papers print them, one row per published number; :func:`read_quoted`
converts them to fractions, the unit of the table frame. ``n_way`` is optional (default 5),
``half_width`` may be empty (the cell then shows the mean alone), other columns are
ignored. ``dataset`` takes the registry name (``mini-imagenet``) or the display name
(``miniImageNet``). Quoted rows never get a significance mark (their episodes are not ours
to pair), but they do compete for bold: a published number that beats ours must not be
hidden by the typography.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from fewshot.report._cells import canonical_dataset, dataset_display, dataset_rank, median_cells, ordered_labels
from fewshot.report.compare import compare_methods, load_methods
from fewshot.results import Results

__all__ = [
    "TABLE_COLUMNS",
    "QUOTED_COLUMNS",
    "read_quoted",
    "table_frame",
    "render_table",
]

#: Columns of :func:`table_frame`. Accuracies (``mean``, ``half_width``, ``run_mean_min``,
#: ``run_mean_max``, ``between_run_sd``) are **fractions** in [0, 1], quoted rows included;
#: only :func:`render_table`'s Markdown and LaTeX show them in percent.
#:
#: ==================  =====================================================================
#: method              row label (results label or quoted method name)
#: quoted              True for a published number read from ``quoted``
#: dataset             registry name (``cifar-fs``, ...)
#: n_way, n_shot       episode shape of the column
#: mean, half_width    several training runs: the mean over runs ± the 95% t half-width over
#:                     the run means (k - 1 dof); one run: its median episode seed's mean ±
#:                     that seed's 95% half-width over episodes (fractions)
#: seed                the median episode seed of a one-run cell (NA otherwise)
#: n_train_runs        training runs of the cell (NA for quoted rows)
#: n_seeds             episode seeds per run
#: n_episodes          episodes per run and seed
#: n_query             query images per class
#: run_mean_min/max    smallest / largest training-run mean (NaN for one run)
#: between_run_sd      SD of the training-run means (NaN for one run)
#: level               level of the significance test against the baseline: ``run`` or
#:                     ``checkpoint`` (see :mod:`fewshot.report.compare`); empty for the
#:                     baseline and quoted rows
#: run_test            ``paired`` or ``welch`` for run-level rows, else empty
#: p_holm              Holm-adjusted p against the baseline (NaN for baseline, quoted rows)
#: significant         p_holm < alpha and the method's mean beats the baseline's
#: best                the mean, rounded as shown (percent, two decimals), is the largest
#:                     of its column
#: baseline            the baseline's label
#: test, alpha         the test (``t`` or ``wilcoxon``) and the significance level
#: ==================  =====================================================================
TABLE_COLUMNS: tuple[str, ...] = (
    "method",
    "quoted",
    "dataset",
    "n_way",
    "n_shot",
    "mean",
    "half_width",
    "seed",
    "n_train_runs",
    "n_seeds",
    "n_episodes",
    "n_query",
    "run_mean_min",
    "run_mean_max",
    "between_run_sd",
    "level",
    "run_test",
    "p_holm",
    "significant",
    "best",
    "baseline",
    "test",
    "alpha",
)

#: Required columns of a quoted-results CSV (``mean`` and ``half_width`` in percent, as
#: published); ``n_way`` is optional.
QUOTED_COLUMNS: tuple[str, ...] = ("method", "dataset", "n_shot", "mean", "half_width")

_FORMATS = ("md", "latex", "csv")
_INT_COLUMNS = ("seed", "n_train_runs", "n_seeds", "n_episodes", "n_query")
_MISSING = "–"
_DAGGER = "†"  # significant at the run level: the objective
_STAR = "*"  # significant at the checkpoint level: two checkpoints, not two objectives
_DDAGGER = "‡"


def _percent(fraction: float) -> str:
    """An accuracy (fraction) as the table prints it: percent with two decimals."""
    return f"{100.0 * fraction:.2f}"


def _shown(fraction: float) -> float:
    """The number a reader sees in a cell, for comparing cells as displayed."""
    return float(_percent(fraction))


def read_quoted(quoted: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """Read and validate quoted (published) results; see the module docstring for the format.

    The file (or DataFrame) gives ``mean`` and ``half_width`` in percent, as published; the
    frame returned holds them as fractions (divided by 100), the unit of :func:`table_frame`.

    Returns:
        A frame with ``method, quoted, dataset, n_way, n_shot, mean, half_width``
        (fractions in [0, 1]), datasets mapped to registry names.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: missing columns, non-numeric or out-of-range values, means that are all
            <= 1 (fractions given instead of percent), duplicate cells.
    """
    if isinstance(quoted, pd.DataFrame):
        df, where = quoted.copy(), "quoted results"
    else:
        if not os.path.isfile(quoted):
            raise FileNotFoundError(f"quoted results file not found: {quoted}")
        where = str(quoted)
        try:
            df = pd.read_csv(quoted, dtype={"method": str, "dataset": str})
        except (ValueError, OSError, EOFError, MemoryError) as exc:  # ParserError, EmptyDataError, UnicodeDecodeError
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(f"{where}: not a readable CSV of quoted results ({first})") from None
    missing = [c for c in QUOTED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{where} lacks columns {missing}; expected {list(QUOTED_COLUMNS)} (percent)")
    if "n_way" not in df.columns:
        df["n_way"] = 5
    if df["method"].isna().any() or df["dataset"].isna().any():
        raise ValueError(f"{where} has rows without a method or dataset")
    out = pd.DataFrame({"method": df["method"].astype(str).str.strip(), "quoted": True})
    out["dataset"] = [canonical_dataset(d) for d in df["dataset"].astype(str).str.strip()]
    for col in ("n_way", "n_shot", "mean", "half_width"):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & df[col].notna()
        if bad.any() or (col != "half_width" and values.isna().any()):
            first = df[col][values.isna()].iloc[0]
            raise ValueError(f"{where}: column {col!r} needs numbers, got {first!r}")
        out[col] = values.astype("int64" if col in ("n_way", "n_shot") else np.float64)
    bad = out[(out["mean"] < 0) | (out["mean"] > 100) | (out["half_width"] < 0)]
    if len(bad):
        raise ValueError(
            f"{where}: mean must be a percentage in [0, 100] and half_width >= 0, got "
            f"mean={bad['mean'].iloc[0]}, half_width={bad['half_width'].iloc[0]} "
            f"for {bad['method'].iloc[0]!r}"
        )
    if (out["mean"] <= 1).all():
        raise ValueError(
            f"{where}: every mean is <= 1, which looks like fractions; quoted results are in "
            f"percent as published (e.g. 61.2 for 61.2%), got mean={out['mean'].iloc[0]} "
            f"for {out['method'].iloc[0]!r}"
        )
    dup = out.duplicated(["method", "dataset", "n_way", "n_shot"])
    if dup.any():
        r = out[dup].iloc[0]
        raise ValueError(f"{where} lists {r['method']!r} on {r['dataset']} {r['n_shot']}-shot twice")
    return out.assign(mean=out["mean"] / 100.0, half_width=out["half_width"] / 100.0)


def table_frame(
    results: Sequence[Results | str | os.PathLike],
    baseline: str | None = None,
    order: Sequence[str] | None = None,
    alpha: float = 0.01,
    test: str = "t",
    quoted: str | os.PathLike | pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The cells of Table 1 as a tidy DataFrame with raw numbers.

    Each re-run cell comes from :func:`median_cells`: the mean over training runs ± the CI
    over run means when the method has several runs, else the median episode seed of its one
    run. Significance comes from :func:`fewshot.report.compare.compare_methods`, Holm-corrected
    across every comparison in the table, at the level the data supports: ``†`` when both
    sides have several training runs (run level: the objectives differ), ``*`` when one side
    has a single run (checkpoint level: two checkpoints differ on these episodes, which says
    nothing about the objectives). A method is marked when ``p_holm < alpha`` and its mean
    beats the baseline's. A dataset the baseline lacks gets no marks.

    Args:
        results: results directories or :class:`~fewshot.results.Results`; one row per
            label (directories sharing a label are merged, e.g. one per dataset).
        baseline: label of the baseline; default: the first results' label.
        order: row labels (results labels and quoted method names) in display order, each
            at most once; rows not named follow in the default order (quoted rows first,
            then input order).
        alpha: significance level, in (0, 1); default 0.01.
        test: ``"t"`` (default) or ``"wilcoxon"``.
        quoted: published results, a CSV path or DataFrame (see the module docstring).

    Returns:
        A DataFrame with columns :data:`TABLE_COLUMNS`, rows ordered by method, then dataset
        (table order), n_way, n_shot. Missing cells have no row.

    Raises:
        ValueError: an unknown baseline or ``order`` label, a label named twice in
            ``order``, a quoted method named like a results label, malformed quoted
            results, or any refusal of
            :func:`~fewshot.report.compare.compare` (episodes that do not pair).
    """
    if isinstance(results, (str, os.PathLike, Results)):
        results = [results]
    methods = load_methods(results)
    labels = [m.label for m in methods]
    if baseline is None:
        baseline = labels[0]
    if baseline not in labels:
        raise ValueError(f"unknown baseline {baseline!r}; the labels are {labels}")
    cells = median_cells(methods)
    # with a single method this only validates test and alpha (no comparison rows)
    cmp = compare_methods(methods, baseline, test, alpha, n_boot=0, require_overlap=False)
    cells = cells.merge(
        cmp[["method", "dataset", "n_way", "n_shot", "level", "run_test", "p_holm", "significant"]],
        on=["method", "dataset", "n_way", "n_shot"],
        how="left",
    )
    cells["significant"] = cells["significant"].fillna(False).astype(bool)
    cells["level"] = cells["level"].fillna("").astype(str)
    cells["run_test"] = cells["run_test"].fillna("").astype(str)

    default_order: list[str] = []
    if quoted is not None:
        q = read_quoted(quoted)
        clash = sorted(set(q["method"]) & set(labels))
        if clash:
            raise ValueError(f"quoted method {clash[0]!r} has the same name as a results label; rename one")
        q["p_holm"] = np.nan
        q["significant"] = False
        q["level"] = ""
        q["run_test"] = ""
        default_order += list(dict.fromkeys(q["method"]))
        cells = pd.concat([q, cells], ignore_index=True)
    default_order += labels
    method_rank = {m: i for i, m in enumerate(ordered_labels(order, default_order))}
    d_rank = dataset_rank(list(dict.fromkeys(cells["dataset"])))
    cells = cells.assign(_m=cells["method"].map(method_rank), _d=cells["dataset"].map(d_rank)).sort_values(
        ["_m", "_d", "n_way", "n_shot"], kind="mergesort"
    )
    cells = cells.drop(columns=["_m", "_d"]).reset_index(drop=True)

    shown = cells["mean"].map(_shown)  # exactly the value and precision displayed
    col_best = shown.groupby([cells["dataset"], cells["n_way"], cells["n_shot"]]).transform("max")
    cells["best"] = (shown == col_best).to_numpy()
    cells["baseline"] = baseline
    cells["test"] = test
    cells["alpha"] = float(alpha)
    for col in _INT_COLUMNS:
        cells[col] = cells[col].astype("Int64")
    cells["quoted"] = cells["quoted"].astype(bool)
    return cells.loc[:, list(TABLE_COLUMNS)]


# --------------------------------------------------------------------------- rendering

_Column = tuple[str, int, int]  # (dataset, n_way, n_shot)


def _values(series: pd.Series) -> str:
    vals = sorted({int(v) for v in series.dropna()})
    return "/".join(str(v) for v in vals) if vals else "?"


def _note(frame: pd.DataFrame) -> list[str]:
    """Footnote sentences (plain text) describing the protocol, the levels and the marks."""
    ours = frame[~frame["quoted"]]
    sentences = []
    shape = f"{_values(ours['n_way'])}-way, {_values(ours['n_query'])} queries per class"
    multi = ours[ours["n_train_runs"].fillna(1) >= 2]
    single = ours[ours["n_train_runs"].fillna(1) < 2]
    if len(multi):
        sentences.append(
            f"Accuracy (%): mean over {_values(multi['n_train_runs'])} training runs ± 95% CI over "
            f"the run means (t, k-1 dof); each run averaged over {_values(multi['n_episodes'])} "
            f"episodes × {_values(multi['n_seeds'])} episode seeds ({shape})."
        )
    if len(single):
        who = "" if not len(multi) else f" ({', '.join(dict.fromkeys(single['method']))})"
        sentences.append(
            f"Accuracy (%) of one training run{who}: the median of {_values(single['n_seeds'])} "
            f"episode seeds ± 95% CI over its {_values(single['n_episodes'])} episodes "
            f"({shape}); this interval is episode sampling noise only, not training variation."
        )
    sentences.append("Bold: best in column (at the precision shown).")
    tested = ours[ours["p_holm"].notna()]
    if len(tested):
        n_tests = len(tested)
        baseline = frame["baseline"].iloc[0]
        alpha = float(frame["alpha"].iloc[0])
        rank = frame["test"].iloc[0] != "t"
        run_rows = tested[tested["level"] == "run"]
        if len(run_rows):
            kinds = sorted(set(run_rows["run_test"]))
            names = {
                "paired": "Wilcoxon signed-rank test over paired run means" if rank else "paired t-test over run means",
                "welch": "Wilcoxon rank-sum test over run means" if rank else "Welch's t-test over run means",
            }
            sentences.append(
                f"{_DAGGER} significantly better than {baseline} across training runs (tests the "
                f"objective): {' / '.join(names[k] for k in kinds)} of "
                f"{_values(multi['n_train_runs'])} runs per method, Holm-corrected over {n_tests} "
                f"comparisons, alpha = {alpha:g}."
            )
        if (tested["level"] == "checkpoint").any():
            name = "Wilcoxon signed-rank test (zero_method zsplit)" if rank else "paired t-test"
            sentences.append(
                f"{_STAR} significantly better than {baseline} at the checkpoint level only: "
                f"{name} on the pooled episodes of one training run, Holm-corrected over "
                f"{n_tests} comparisons, alpha = {alpha:g}; two checkpoints differ on these "
                "episodes, which does not show that the objective is better."
            )
    if frame["quoted"].any():
        sentences.append(f"{_DDAGGER} quoted from the publication, not re-run (no significance test).")
    return sentences


def _layout(frame: pd.DataFrame) -> tuple[list[str], list[_Column]]:
    """Row labels in frame order; columns in table order."""
    rows = list(dict.fromkeys(frame["method"]))
    rank = dataset_rank(list(dict.fromkeys(frame["dataset"])))
    keys = zip(frame["dataset"], frame["n_way"], frame["n_shot"])
    cols = sorted({(str(d), int(w), int(s)) for d, w, s in keys}, key=lambda c: (rank[c[0]], c[1], c[2]))
    return rows, cols


class _Grid:
    """Plain-text cells and marks of a table frame, shared by the Markdown and LaTeX writers."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.rows, self.cols = _layout(frame)
        self.one_way = len({c[1] for c in self.cols}) <= 1
        self.quoted = set(frame.loc[frame["quoted"], "method"])
        self.cells = {(r.method, r.dataset, int(r.n_way), int(r.n_shot)): r for r in frame.itertuples(index=False)}

    def shot(self, col: _Column) -> str:
        return f"{col[2]}-shot" if self.one_way else f"{col[1]}-way {col[2]}-shot"

    def label(self, method: str) -> str:
        return method + (f" {_DDAGGER}" if method in self.quoted else "")

    def cell(self, method: str, col: _Column) -> tuple[str, bool, str] | None:
        """``(text, bold, mark)``, or None for a missing cell; ``mark`` is ``†``, ``*`` or ``""``."""
        rec = self.cells.get((method, *col))
        if rec is None or pd.isna(rec.mean):
            return None
        text = _percent(rec.mean) + (f"±{_percent(rec.half_width)}" if pd.notna(rec.half_width) else "")
        mark = ""
        if bool(rec.significant) and not bool(rec.quoted):
            mark = _DAGGER if rec.level == "run" else _STAR
        return text, bool(rec.best), mark


def _md_escape(text: str) -> str:
    for ch in "\\|*_":
        text = text.replace(ch, "\\" + ch)
    return text


def _render_md(grid: _Grid, sentences: list[str]) -> str:
    def cell(method: str, col: _Column) -> str:
        got = grid.cell(method, col)
        if got is None:
            return _MISSING
        text, bold, mark = got
        return (f"**{text}**" if bold else text) + _md_escape(mark)

    header = ["Method"] + [f"{dataset_display(c[0])} {grid.shot(c)}" for c in grid.cols]
    align = [":---"] + ["---:"] * len(grid.cols)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for m in grid.rows:
        row = [_md_escape(grid.label(m))] + [cell(m, c) for c in grid.cols]
        lines.append("| " + " | ".join(row) + " |")
    if sentences:
        lines += ["", _md_escape(" ".join(sentences)).replace("Bold:", "**Bold**:")]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    _DAGGER: r"\textsuperscript{\dag}",
    _DDAGGER: r"\textsuperscript{\ddag}",
    _STAR: r"\textsuperscript{*}",
    _MISSING: "--",
}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def _render_latex(grid: _Grid, sentences: list[str]) -> str:
    def cell(method: str, col: _Column) -> str:
        got = grid.cell(method, col)
        if got is None:
            return _latex_escape(_MISSING)
        text, bold, mark = got
        text = _latex_escape(text)
        text = f"\\textbf{{{text}}}" if bold else text
        return text + _latex_escape(mark)

    # consecutive columns of one dataset share a \multicolumn header and a \cmidrule
    groups: list[list] = []
    for c in grid.cols:
        if groups and groups[-1][0] == c[0]:
            groups[-1][1] += 1
        else:
            groups.append([c[0], 1])
    top, rules, start = ["Method"], [], 2
    for dataset, span in groups:
        top.append(f"\\multicolumn{{{span}}}{{c}}{{{_latex_escape(dataset_display(dataset))}}}")
        rules.append(f"\\cmidrule(lr){{{start}-{start + span - 1}}}")
        start += span

    lines = [f"% {s}" for s in sentences]
    lines += [
        "% Requires \\usepackage{booktabs}.",
        "\\begin{tabular}{l" + "c" * len(grid.cols) + "}",
        "\\toprule",
        " & ".join(top) + " \\\\",
        " ".join(rules),
        " & ".join([""] + [_latex_escape(grid.shot(c)) for c in grid.cols]) + " \\\\",
        "\\midrule",
    ]
    for m in grid.rows:
        row = [_latex_escape(grid.label(m))] + [cell(m, c) for c in grid.cols]
        lines.append(" & ".join(row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def render_table(frame: pd.DataFrame, fmt: str = "md", *, note: bool = True) -> str:
    """Format a :func:`table_frame` as text.

    Args:
        frame: the output of :func:`table_frame` (or the same columns read back from CSV).
        fmt: ``"md"`` (GitHub Markdown: ``**bold**``), ``"latex"`` (a booktabs ``tabular``
            fragment, ``\\textbf{bold}``; needs ``\\usepackage{booktabs}``) or ``"csv"``
            (the frame itself, raw numbers: accuracies as fractions).
        note: add the footnote (test, alpha, episodes, runs, queries, marks): a paragraph
            under the Markdown table; in LaTeX ``%`` comment lines above the ``tabular`` —
            caption material — so the fragment compiles wherever a ``tabular`` does.

    Returns:
        The table as a string ending in a newline; identical inputs give identical bytes.

    Raises:
        ValueError: unknown ``fmt`` or missing columns.
    """
    if fmt not in _FORMATS:
        raise ValueError(f"fmt must be one of {list(_FORMATS)}, got fmt={fmt!r}")
    missing = [c for c in TABLE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"table frame lacks columns {missing}")
    frame = frame.loc[:, list(TABLE_COLUMNS)].reset_index(drop=True)
    for col in ("quoted", "significant", "best"):
        frame[col] = frame[col].astype(bool)
    for col in ("level", "run_test"):
        frame[col] = frame[col].fillna("").astype(str)
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n")
    sentences = _note(frame) if note else []
    grid = _Grid(frame)
    return _render_md(grid, sentences) if fmt == "md" else _render_latex(grid, sentences)
