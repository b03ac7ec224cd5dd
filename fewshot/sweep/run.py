"""Running a sweep's cells: one after another here, or one ``submitit`` job per cell."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fewshot.sweep.cell import CellOutcome, run_cell
from fewshot.sweep.spec import SweepSpec

__all__ = ["EXECUTORS", "run_sweep"]

logger = logging.getLogger(__name__)

#: ``local``: cells run in this process, in grid order; ``slurm``: one job per cell through
#: ``submitit.AutoExecutor(cluster="slurm")`` with the sweep file's ``[slurm]`` parameters;
#: ``submitit-local``: the same jobs through ``submitit.LocalExecutor`` (subprocesses here),
#: which runs the same job function and is how the slurm path is tested.
EXECUTORS: tuple[str, ...] = ("local", "slurm", "submitit-local")


def _submitit_executor(kind: str, spec: SweepSpec) -> Any:
    try:
        import submitit
    except ImportError:
        raise ValueError(
            f"--executor {kind} needs submitit, an optional dependency: pip install 'fewshot[slurm]'"
        ) from None
    folder = spec.out / "submitit" / "%j"
    if kind == "slurm":
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    else:
        executor = submitit.LocalExecutor(folder=folder)
    params = dict(spec.slurm)
    params.setdefault("timeout_min", 24 * 60)
    if kind == "slurm":
        executor.update_parameters(name="fewshot-sweep", **params)
    else:
        executor.update_parameters(timeout_min=params["timeout_min"])
    return executor


def run_sweep(
    spec: SweepSpec,
    *,
    executor: str = "local",
    reports: bool = True,
    on_cell: Callable[[CellOutcome], None] | None = None,
) -> list[CellOutcome]:
    """Bring every cell of ``spec`` to finished, then write the reports.

    Finished cells (manifest verified, :func:`~fewshot.sweep.cell_finished`) are skipped, so
    an interrupted sweep continues where it stopped; with ``slurm``, only unfinished cells are
    submitted and this call waits for their jobs.

    Args:
        spec: from :func:`~fewshot.sweep.load_sweep`.
        executor: one of :data:`EXECUTORS`.
        reports: write ``summary.csv`` etc. (:func:`~fewshot.sweep.write_reports`) at the end.
        on_cell: called with each cell's outcome as it completes (e.g. to print progress).

    Returns:
        One :class:`~fewshot.sweep.CellOutcome` per cell, in grid order.

    Raises:
        ValueError: an unknown executor; submitit missing; a cell run with other settings;
            errors of a cell's stages (with ``slurm``: re-raised from the failed job).
    """
    from fewshot.sweep.cell import cell_finished

    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; expected one of {', '.join(EXECUTORS)}")
    spec.out.mkdir(parents=True, exist_ok=True)
    cells = spec.cells()
    outcomes: dict[str, CellOutcome] = {}
    if executor == "local":
        for cell in cells:
            outcome = run_cell(spec, cell)
            outcomes[cell.id] = outcome
            if on_cell:
                on_cell(outcome)
    else:
        pending = []
        for cell in cells:
            if cell_finished(spec, cell):
                outcomes[cell.id] = CellOutcome(cell.id, "skipped", (), spec.cell_dir(cell))
                if on_cell:
                    on_cell(outcomes[cell.id])
            else:
                pending.append(cell)
        if pending:
            submitter = _submitit_executor(executor, spec)
            jobs = [(cell, submitter.submit(run_cell, spec, cell)) for cell in pending]
            logger.info("submitted %d job(s): %s", len(jobs), ", ".join(str(job.job_id) for _, job in jobs))
            for cell, job in jobs:
                outcome = job.result()
                outcomes[cell.id] = outcome
                if on_cell:
                    on_cell(outcome)
    if reports:
        from fewshot.sweep.report import write_reports

        write_reports(spec)
    return [outcomes[c.id] for c in cells]
