"""``fewshot plot``: accuracy with 95% CI error bars, one panel per dataset and shot."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="plot accuracy ± 95%% CI per method",
        description="Plot each method's table cell (mean accuracy ± 95% CI: over training runs when "
        "a method has several, with each run's mean as a dot; else the median episode seed), one "
        "panel per dataset and shot. Headless; PNG or PDF.",
    )
    p.add_argument(
        "results",
        nargs="+",
        metavar="RESULTS",
        help="results directories written by `fewshot evaluate --out`",
    )
    p.add_argument("--order", nargs="+", metavar="LABEL", help="method labels, top to bottom (others follow)")
    p.add_argument("--out", metavar="FILE.png|pdf", required=True, help="figure to write (.png or .pdf)")
    p.add_argument(
        "--per-class",
        action="store_true",
        help="plot each novel class's accuracy ± 95%% CI instead (results from `evaluate --per-class`)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fewshot._io import check_output_file
    from fewshot.report.plots import plot_results

    check_output_file(args.out, inputs=args.results)
    if args.per_class:
        from fewshot.report.per_class import plot_per_class

        print(f"wrote {plot_per_class(args.results, args.out)}")
        return 0

    out = plot_results(args.results, args.out, order=args.order)
    print(f"wrote {out}")
    return 0
