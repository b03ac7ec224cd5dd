"""``fewshot table``: the paper's Table 1 as Markdown, LaTeX or CSV."""

from __future__ import annotations

import argparse
from pathlib import Path

_DESCRIPTION = """\
One row per method, columns dataset x shot (CIFAR-FS, FC100, miniImageNet, tieredImageNet,
then others). Results directories with one label and distinct runs are training replicates: the
cell is then the mean over runs ± the 95% CI over run means; a one-run cell is its median
episode seed ± its 95% half-width over episodes. Markdown and LaTeX show accuracies in
percent; the CSV holds the raw cell frame (accuracies as fractions). The best of each column is bold;
† marks a method significantly better than --baseline across training runs (run level),
* one significantly better at the checkpoint level only (one training run on a side: two
checkpoints differ, not necessarily the objectives); Holm-corrected at --alpha; ‡ marks quoted
rows.
"""

_EXTENSIONS = {".md": "md", ".markdown": "md", ".tex": "latex", ".latex": "latex", ".csv": "csv"}


def register(sub: argparse._SubParsersAction) -> None:
    from fewshot._names import TEST_NAMES

    p = sub.add_parser("table", help="render the results table (md, LaTeX, CSV)", description=_DESCRIPTION)
    p.add_argument(
        "results",
        nargs="+",
        metavar="RESULTS",
        help="results directories written by `fewshot evaluate --out`",
    )
    p.add_argument("--baseline", metavar="NAME", required=True, help="label of the baseline the † marks refer to")
    p.add_argument(
        "--format",
        choices=("md", "latex", "csv"),
        dest="fmt",
        help="output format (default: from the --out extension: .md, .tex, .csv)",
    )
    p.add_argument("--order", nargs="+", metavar="LABEL", help="row labels, top to bottom (others follow)")
    p.add_argument(
        "--quoted",
        metavar="FILE.csv",
        help="published results to add as quoted rows: a CSV with columns "
        "method,dataset,n_shot,mean,half_width (percent; n_way optional, default 5)",
    )
    p.add_argument("--alpha", type=float, default=0.01, help="significance level after Holm (default: 0.01)")
    p.add_argument("--test", choices=TEST_NAMES, default="t", help="paired test for the † marks (default: t)")
    p.add_argument(
        "--overlap-note",
        action="store_true",
        help="add a footnote naming results whose features were extracted on classes of the "
        "backbone's pretraining label set (recorded by `fewshot extract`; md and LaTeX only)",
    )
    p.add_argument("--out", metavar="FILE", required=True, help="file to write (.md, .tex or .csv)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fewshot._io import check_output_file, write_text
    from fewshot.report import render_with_notes, table_frame

    check_output_file(args.out, inputs=[*args.results, args.quoted])
    fmt = args.fmt or _EXTENSIONS.get(Path(args.out).suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot infer the format of {args.out!r}; use --format md|latex|csv or a .md/.tex/.csv name")
    frame = table_frame(
        args.results,
        baseline=args.baseline,
        order=args.order,
        alpha=args.alpha,
        test=args.test,
        quoted=args.quoted,
    )
    text = render_with_notes(frame, fmt, args.results, args.quoted)
    if args.overlap_note and fmt != "csv":
        from fewshot.overlap import overlap_footnote

        note = overlap_footnote(args.results)
        if note:
            text = text.rstrip("\n") + ("\n\n" if fmt == "md" else "\n\n% ") + note + "\n"
    write_text(args.out, text)
    print(text if fmt != "csv" else render_with_notes(frame, "md", args.results, args.quoted), end="")
    print(f"wrote {args.out}")
    return 0
