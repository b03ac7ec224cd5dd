"""``fewshot compare``: paired tests of methods against a baseline on identical episodes."""

from __future__ import annotations

import argparse
from typing import Any

_DESCRIPTION = """\
Pair the per-episode accuracies of each method with the baseline's by (dataset, n_way,
n_shot, seed, episode) and test the differences on the pooled episodes of all seeds: mean
difference with its 95% CI, paired t, Wilcoxon signed-rank, Cohen's d_z, and the p-value of
--test Holm-corrected across every comparison. Refuses (exit 2) results that were not
evaluated on the same episodes or under the same protocol.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from fewshot._names import TEST_NAMES

    p = sub.add_parser(
        "compare", help="paired statistics of methods against a baseline", description=_DESCRIPTION
    )
    p.add_argument(
        "results", nargs="+", metavar="RESULTS",
        help="results directories written by `fewshot evaluate --out` (two or more methods)",
    )
    p.add_argument(
        "--baseline", metavar="NAME", help="label of the baseline (default: the first RESULTS)"
    )
    p.add_argument(
        "--test", choices=TEST_NAMES, default="t",
        help="test whose p-value is Holm-corrected (default: t)",
    )
    p.add_argument(
        "--alpha", type=float, default=0.01, help="significance level after Holm (default: 0.01)"
    )
    p.add_argument("--out", metavar="FILE.csv", help="also write the comparison as CSV (raw numbers)")
    p.set_defaults(func=run)


def _p(x: float) -> str:
    return "nan" if x != x else f"{x:.2e}" if x < 1e-3 else f"{x:.4f}"


def _range(lo: Any, hi: Any) -> list[str]:
    return [f"{100 * a:.2f}–{100 * b:.2f}" for a, b in zip(lo, hi)]


def format_comparison(df: Any) -> str:
    """The comparison as a terminal table: accuracies and differences in percent."""
    import pandas as pd

    if df.empty:
        return "no comparisons"
    view = pd.DataFrame(
        {
            "dataset": df["dataset"],
            "shot": [f"{w}w{s}s" for w, s in zip(df["n_way"], df["n_shot"])],
            "method": df["method"],
            "acc": df["mean_method"].map(lambda x: f"{100 * x:.2f}"),
            "baseline": df["mean_baseline"].map(lambda x: f"{100 * x:.2f}"),
            "diff [95% CI]": [
                f"{100 * d:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]"
                for d, lo, hi in zip(df["mean_diff"], df["ci95_low"], df["ci95_high"])
            ],
            "T": df["T"].map(lambda x: f"{x:.2f}"),
            "p_t": df["p_val"].map(_p),
            "p_wilcoxon": df["p_wilcoxon"].map(_p),
            "d_z": df["cohen_dz"].map(lambda x: f"{x:.2f}"),
            "p_holm": df["p_holm"].map(_p),
            "sig": df["significant"].map({True: "yes", False: "no"}),
            "runs (method)": _range(df["run_mean_min_method"], df["run_mean_max_method"]),
            "runs (baseline)": _range(df["run_mean_min_baseline"], df["run_mean_max_baseline"]),
        }
    )
    first = df.iloc[0]
    test = "paired t" if first["test"] == "t" else "Wilcoxon signed-rank (zsplit)"
    header = (
        f"baseline: {first['baseline']} | Holm over {len(df)} comparison(s) on the {test} p | "
        "accuracy in %; runs: range of per-seed means"
    )
    return header + "\n" + view.to_string(index=False)


def run(args: argparse.Namespace) -> int:
    from fewshot._io import check_output_file, write_csv
    from fewshot.comparison import compare

    if args.out:
        check_output_file(args.out, inputs=args.results)

    df = compare(args.results, baseline=args.baseline, test=args.test, alpha=args.alpha)
    print(format_comparison(df))
    if args.out:
        write_csv(args.out, df)
        print(f"wrote {args.out}")
    return 0
