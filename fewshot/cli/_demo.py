"""``fewshot demo``: the whole workflow offline on the embedded digits benchmark."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole workflow offline on the embedded digits benchmark",
        description="Fine-tune Conv-4 from scratch on digits 0-4 with CE, CE+SupCon and SCHaNe, "
        "extract features of digits 5-9, evaluate 5-way 1/5-shot episodes (seeds 0 1 2), compare "
        "with CE and write Table 1 (md, csv, tex) and a plot.",
    )
    p.add_argument("--quick", action="store_true", help="a smaller budget (under a minute), for tests")
    p.add_argument("--out", default="results/demo", help="output directory (default: results/demo)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fewshot.demo import run_demo

    run_demo(args.out, quick=args.quick, progress=not args.no_progress)
    return 0
