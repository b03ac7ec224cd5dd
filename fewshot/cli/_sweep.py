"""``fewshot sweep``: a grid over fine-tuning settings, each cell fine-tune -> extract -> evaluate."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]

_EXECUTORS = ("local", "slurm", "submitit-local")  # = fewshot.sweep.EXECUTORS (kept torch-free here)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a grid of fine-tuning settings (λ, τ, batch size, objective, seed, dataset)",
        description="Run every cell of SWEEP.toml's [grid] (fine-tune -> extract -> evaluate with the "
        "[evaluate] protocol) into OUT/cells/<cell>/, skipping finished cells (verified by their "
        "cell.json) and resuming interrupted ones; then write OUT/summary.csv, settings.csv, "
        "compare.csv, lambda.png (a lam axis) and batch_size.md (a batch_size axis).",
    )
    p.add_argument("sweep", metavar="SWEEP.toml", help="the sweep file")
    p.add_argument("--out", metavar="DIR", help="sweep directory (default: the file's `out`)")
    p.add_argument(
        "--executor",
        choices=_EXECUTORS,
        default="local",
        help="local: cells one after another here (default); slurm: one submitit job per "
        "cell ([slurm] table: submitit parameters); submitit-local: the same jobs as local "
        "subprocesses",
    )
    p.add_argument("--no-reports", action="store_true", help="run the cells only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fewshot.sweep import load_sweep, run_sweep

    spec = load_sweep(args.sweep, out=args.out)
    n = len(spec.cells())
    print(f"sweep {spec.out}: {n} cell(s) over {', '.join(spec.grid)}", flush=True)

    def show(outcome) -> None:
        stages = f" ({', '.join(outcome.stages)})" if outcome.stages else ""
        print(f"  {outcome.status:<8} {outcome.cell}{stages}", flush=True)

    run_sweep(spec, executor=args.executor, reports=not args.no_reports, on_cell=show)
    if not args.no_reports:
        print(f"wrote {spec.out / 'summary.csv'}")
    return 0
