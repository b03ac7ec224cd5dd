"""Studies over fine-tuning settings (the papers' λ, τ and batch-size studies, Fig. 2 / Table 3).

``run_sweep(load_sweep("SWEEP.toml"))`` runs every cell of the grid (fine-tune -> extract ->
evaluate), skipping finished cells and resuming interrupted ones, then writes the summary
CSVs, the λ plot and the batch-size table; ``executor="slurm"`` submits one job per cell
through ``submitit`` (an optional dependency).
"""

from fewshot.sweep.cell import CELL_MANIFEST, CellOutcome, cell_finished, run_cell
from fewshot.sweep.report import SETTINGS_COLUMNS, SUMMARY_COLUMNS, settings_summary, sweep_summary, write_reports
from fewshot.sweep.run import EXECUTORS, run_sweep
from fewshot.sweep.spec import STUDY_AXES, Cell, SweepSpec, load_sweep, sweep_from_dict

__all__ = [
    "load_sweep",
    "sweep_from_dict",
    "SweepSpec",
    "Cell",
    "STUDY_AXES",
    "run_sweep",
    "EXECUTORS",
    "run_cell",
    "cell_finished",
    "CellOutcome",
    "CELL_MANIFEST",
    "sweep_summary",
    "settings_summary",
    "write_reports",
    "SUMMARY_COLUMNS",
    "SETTINGS_COLUMNS",
]
