"""Accuracy plots: each method's table cell (mean ± 95% CI) and its training runs, one panel per dataset and shot."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

from fewshot._io import write_bytes
from fewshot.report._cells import dataset_display, dataset_rank, median_cells, ordered_labels
from fewshot.report.compare import load_methods, run_means
from fewshot.results import Results

__all__ = ["plot_results"]

_FORMATS = {".png": "png", ".pdf": "pdf"}


def plot_results(
    results: Sequence[Results | str | os.PathLike],
    out_path: str | os.PathLike,
    *,
    order: Sequence[str] | None = None,
    dpi: int = 150,
) -> Path:
    """Plot mean accuracy ± 95% CI per method, one panel per (dataset, shot).

    Each large point with its error bar is the table cell (:func:`fewshot.report.median_cells`,
    a fraction drawn in percent): for a method with several training runs, the mean over runs ±
    the 95% CI over run means, and beside it (small hollow dots, just below) each run's own mean accuracy;
    for a method with one run, its median episode seed ± that seed's 95% CI over episodes.
    Methods share the vertical axis across panels, listed top to bottom in ``order``
    (default: input order).

    Rendering is headless: the figure is drawn on matplotlib's Agg canvas
    (``matplotlib.figure.Figure``, no ``pyplot`` and no change of the global backend),
    saved to memory and written atomically.

    Args:
        results: results directories or :class:`~fewshot.results.Results` (directories that
            share a label are merged).
        out_path: ``.png`` or ``.pdf`` file to write.
        order: method labels from top to bottom; unnamed methods follow in input order.
        dpi: resolution of a PNG.

    Returns:
        ``out_path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: an extension other than ``.png``/``.pdf``, or an ``order`` that names an
            unknown label or a label twice (the same check as :func:`fewshot.report.tables.table_frame`).
        FileNotFoundError: a path is not a complete results directory.
    """
    out = Path(out_path)
    fmt = _FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ValueError(f"plot output must end in .png or .pdf, got {out.name!r}")
    if isinstance(results, (str, os.PathLike, Results)):
        results = [results]
    methods = load_methods(results)
    labels = ordered_labels(order, [m.label for m in methods])
    cells = median_cells(methods)
    per_run = run_means(methods)

    from matplotlib.figure import Figure  # imported lazily: matplotlib is slow to import

    rank = dataset_rank(list(dict.fromkeys(cells["dataset"])))
    datasets = sorted(dict.fromkeys(cells["dataset"]), key=rank.__getitem__)
    one_way = cells["n_way"].nunique() == 1
    shots = sorted({(int(w), int(s)) for w, s in zip(cells["n_way"], cells["n_shot"])})
    n_rows, n_cols = len(datasets), len(shots)
    height = 0.9 + 0.42 * len(labels)
    fig = Figure(figsize=(1.0 + 3.6 * n_cols, 0.5 + height * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharey=True)
    colors = [f"C{i % 10}" for i in range(len(labels))]
    ypos = {label: len(labels) - 1 - i for i, label in enumerate(labels)}
    for r, dataset in enumerate(datasets):
        for c, (n_way, n_shot) in enumerate(shots):
            ax = axes[r][c]
            here = (cells["dataset"] == dataset) & (cells["n_way"] == n_way)
            sel = cells[here & (cells["n_shot"] == n_shot)]
            shape = f"{n_shot}-shot" if one_way else f"{n_way}-way {n_shot}-shot"
            ax.set_title(f"{dataset_display(dataset)} · {shape}", fontsize=10)
            ax.grid(axis="x", color="0.9", linewidth=0.8)
            ax.set_axisbelow(True)
            for label in labels:
                if label not in set(sel["method"]):
                    ax.text(
                        0.5,
                        ypos[label],
                        "not evaluated",
                        transform=ax.get_yaxis_transform(),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="0.55",
                        style="italic",
                    )
            for _, rec in sel.iterrows():
                y = ypos[rec["method"]]
                color = colors[labels.index(rec["method"])]
                if int(rec["n_train_runs"]) >= 2:
                    runs = per_run[
                        (per_run["method"] == rec["method"])
                        & (per_run["dataset"] == dataset)
                        & (per_run["n_way"] == n_way)
                        & (per_run["n_shot"] == n_shot)
                    ]
                    ax.scatter(
                        100.0 * runs["mean"],
                        [y - 0.22] * len(runs),
                        s=14,
                        facecolors="none",
                        edgecolors=color,
                        linewidths=1.0,
                        zorder=3,
                    )
                mean, half_width = 100.0 * rec["mean"], 100.0 * rec["half_width"]  # percent on the axis
                ax.errorbar(
                    mean,
                    y,
                    xerr=half_width,
                    fmt="o",
                    color=color,
                    markersize=5,
                    capsize=4,
                    elinewidth=1.5,
                )
                ax.annotate(
                    f"{mean:.2f}±{half_width:.2f}",
                    (mean, y),
                    xytext=(0, 7),
                    textcoords="offset points",
                    ha="center",
                    fontsize=7,
                    color="0.25",
                )
            ax.set_yticks(range(len(labels)), labels[::-1], fontsize=9)
            ax.set_ylim(-0.7, len(labels) - 0.3)
            ax.margins(x=0.25)
            if r == n_rows - 1:
                ax.set_xlabel("accuracy (%)")
    fig.suptitle(
        "Mean accuracy ± 95% CI (several training runs: CI over run means, dots: each run; "
        "one run: median episode seed)",
        fontsize=9,
    )
    buf = io.BytesIO()
    metadata = {"CreationDate": None} if fmt == "pdf" else {}
    fig.savefig(buf, format=fmt, dpi=dpi, metadata=metadata)
    write_bytes(out, buf.getvalue())
    return out
