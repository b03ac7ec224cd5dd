"""Reporting on results directories: comparisons with a baseline, Table 1 and its notes, plots.

Accuracies, their CIs and differences are **fractions** in [0, 1] in every frame and CSV these
modules return or write; they become percent only in rendered text (Markdown, LaTeX, terminal
output) and on plot axes. Quoted (published) results are read in percent, as papers print
them, and converted by :func:`fewshot.report.tables.read_quoted`.

The function :func:`fewshot.report.compare.compare` is not re-exported here: the name would
hide the module ``fewshot.report.compare`` (``fewshot.compare`` is the function).
"""

from fewshot.report._cells import DATASET_DISPLAY, DATASET_ORDER, dataset_display, median_cells
from fewshot.report.compare import COMPARE_COLUMNS, Method, compare_methods, load_methods, run_means
from fewshot.report.per_class import compare_per_class, per_class_accuracy, plot_per_class
from fewshot.report.plots import plot_results
from fewshot.report.table_notes import render_with_notes
from fewshot.report.tables import QUOTED_COLUMNS, TABLE_COLUMNS, read_quoted, render_table, table_frame

__all__ = [
    "COMPARE_COLUMNS",
    "DATASET_DISPLAY",
    "DATASET_ORDER",
    "Method",
    "QUOTED_COLUMNS",
    "TABLE_COLUMNS",
    "compare_methods",
    "compare_per_class",
    "dataset_display",
    "load_methods",
    "median_cells",
    "per_class_accuracy",
    "plot_per_class",
    "plot_results",
    "read_quoted",
    "render_table",
    "render_with_notes",
    "run_means",
    "table_frame",
]
