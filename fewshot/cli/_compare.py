"""``fewshot compare``: test methods against a baseline, at the level of evidence the results hold."""

from __future__ import annotations

import argparse
import math
from typing import Any

_DESCRIPTION = """\
Test each method against the baseline on identical episodes. Results directories with the
same label are training runs (replicates) of one method. With at least two runs on both
sides the test is over training runs (level 'run': each run's mean accuracy over all its
episodes; paired t when the run names match, Welch's t otherwise), with a hierarchical
bootstrap CI, the probability of improvement and a power estimate: this tests the
objectives. With one run on either side the test is over the pooled episodes (level
'checkpoint'): it shows that two checkpoints differ on this test set, not that one objective
is better. Holm's correction runs over every comparison of the call. Refuses (exit 2)
results that were not evaluated on the same episodes or under the same protocol.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from fewshot._names import TEST_NAMES

    p = sub.add_parser(
        "compare",
        help="statistics of methods against a baseline (training runs or checkpoints)",
        description=_DESCRIPTION,
    )
    p.add_argument(
        "results",
        nargs="+",
        metavar="RESULTS",
        help="results directories written by `fewshot evaluate --out` (two or more labels; "
        "directories sharing a label are runs of one method)",
    )
    p.add_argument("--baseline", metavar="NAME", help="label of the baseline (default: the first RESULTS)")
    p.add_argument(
        "--test",
        choices=TEST_NAMES,
        default="t",
        help="test whose p-value is Holm-corrected: t or the rank test at the row's level (default: t)",
    )
    p.add_argument(
        "--run-test",
        choices=("auto", "paired", "welch"),
        default="auto",
        help="run-level test: paired t over runs with matching names, Welch's t over run means, "
        "or auto (paired when the run names match one to one; default)",
    )
    p.add_argument("--alpha", type=float, default=0.01, help="significance level after Holm (default: 0.01)")
    p.add_argument(
        "--effect",
        type=float,
        metavar="PP",
        help="difference in percentage points the power estimate targets (default: the observed one)",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=2000,
        metavar="N",
        help="hierarchical bootstrap resamples (default 2000; 0: none)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--out", metavar="FILE.csv", help="also write the comparison as CSV (raw numbers)")
    p.add_argument(
        "--per-class",
        action="store_true",
        help="compare class by class instead: each novel class's accuracy over the episodes "
        "containing it, with its CI and the paired difference (results from `evaluate --per-class`; "
        "--out then writes this table)",
    )
    p.set_defaults(func=run)


def _p(x: float) -> str:
    return "nan" if x != x else f"{x:.2e}" if x < 1e-3 else f"{x:.4f}"


def _pp(x: float) -> str:
    return "–" if x != x else f"{100 * x:+.2f}"


def _leading_columns(rows: Any) -> dict[str, Any]:
    """The columns both levels show first: what is compared, the accuracies, the difference."""
    return {
        "dataset": rows["dataset"],
        "shot": [f"{w}w{s}s" for w, s in zip(rows["n_way"], rows["n_shot"])],
        "method": rows["method"],
        "runs": [f"{a} vs {b}" for a, b in zip(rows["n_runs_method"], rows["n_runs_baseline"])],
        "acc": rows["mean_method"].map(lambda x: f"{100 * x:.2f}"),
        "baseline": rows["mean_baseline"].map(lambda x: f"{100 * x:.2f}"),
        "diff [95% CI]": [
            f"{_pp(d)} [{_pp(lo)}, {_pp(hi)}]"
            for d, lo, hi in zip(rows["mean_diff"], rows["ci95_low"], rows["ci95_high"])
        ],
    }


def format_comparison(df: Any) -> str:
    """The comparison as terminal text: one block per level, accuracies in percent."""
    import pandas as pd

    if df.empty:
        return "no comparisons"
    first = df.iloc[0]
    rank = first["test"] != "t"
    blocks = [
        f"baseline: {first['baseline']} | Holm over {len(df)} comparison(s) on the "
        f"{'rank-test' if rank else 't-test'} p | accuracy and differences in %"
    ]
    runs = df[df["level"] == "run"]
    if len(runs):
        view = pd.DataFrame(
            {
                **_leading_columns(runs),
                "boot 95% CI": [
                    f"[{_pp(lo)}, {_pp(hi)}]" for lo, hi in zip(runs["boot_ci95_low"], runs["boot_ci95_high"])
                ],
                "test": runs["run_test"],
                "T": runs["T"].map(lambda x: f"{x:.2f}"),
                "p": runs["p_val"].map(_p),
                "p_rank": runs["p_wilcoxon"].map(_p),
                "p_holm": runs["p_holm"].map(_p),
                "sig": runs["significant"].map({True: "yes", False: "no"}),
                "SD runs": [
                    f"{100 * a:.2f}/{100 * b:.2f}"
                    for a, b in zip(runs["between_run_sd_method"], runs["between_run_sd_baseline"])
                ],
                "P(improve) [95% CI]": [
                    "–" if p != p else f"{p:.2f} [{lo:.2f}, {hi:.2f}]"
                    for p, lo, hi in zip(
                        runs["prob_improvement"], runs["prob_improvement_ci95_low"], runs["prob_improvement_ci95_high"]
                    )
                ],
            }
        )
        blocks.append(
            "\nlevel run — training runs are the unit; this tests the objectives "
            "(SD runs: between-run SD, method/baseline)\n" + view.to_string(index=False)
        )
        lines = []
        for r in runs.itertuples(index=False):
            need = r.runs_for_power
            target = f"{100 * r.power_effect:.2f} pp" if r.power_effect == r.power_effect else "?"
            have = f"(have {r.n_runs_method} vs {r.n_runs_baseline})"
            if pd.isna(need):
                lines.append(
                    f"  {r.dataset} {r.n_way}w{r.n_shot}s {r.method}: a difference of {target} needs more than 1000 runs per method, or there is none to detect"
                )
            else:
                lines.append(
                    f"  {r.dataset} {r.n_way}w{r.n_shot}s {r.method}: {int(need)} runs per method detect {target} with 80% power {have}"
                )
        blocks.append("power (t test at the alpha given, from the observed between-run SD):\n" + "\n".join(lines))
    ckpt = df[df["level"] == "checkpoint"]
    if len(ckpt):
        view = pd.DataFrame(
            {
                **_leading_columns(ckpt),
                "T": ckpt["T"].map(lambda x: f"{x:.2f}"),
                "p_t": ckpt["p_val"].map(_p),
                "p_wilcoxon": ckpt["p_wilcoxon"].map(_p),
                "d_z": ckpt["effect_size"].map(lambda x: f"{x:.2f}"),
                "p_holm": ckpt["p_holm"].map(_p),
                "sig": ckpt["significant"].map({True: "yes", False: "no"}),
            }
        )
        blocks.append(
            "\nlevel checkpoint — one training run on a side: episodes are the unit; this tests whether "
            "two CHECKPOINTS differ on these episodes, NOT whether the objective is better "
            "(train several seeds: `fewshot finetune --seeds 0 1 2`)\n" + view.to_string(index=False)
        )
    return "\n".join(blocks)


def run(args: argparse.Namespace) -> int:
    from fewshot._io import check_output_file, write_csv
    from fewshot.report.compare import compare

    if args.out:
        check_output_file(args.out, inputs=args.results)
    if args.per_class:
        from fewshot.report.per_class import compare_per_class, format_per_class

        df = compare_per_class(args.results, baseline=args.baseline, alpha=args.alpha)
        print(format_per_class(df))
        if args.out:
            write_csv(args.out, df)
            print(f"wrote {args.out}")
        return 0

    if args.effect is not None and not (math.isfinite(args.effect) and 0 < args.effect <= 100):
        raise ValueError(f"--effect must be a difference in percentage points in (0, 100], got {args.effect}")
    df = compare(
        args.results,
        baseline=args.baseline,
        test=args.test,
        alpha=args.alpha,
        run_test=args.run_test,
        effect=None if args.effect is None else args.effect / 100.0,
        n_boot=args.bootstrap,
        seed=args.seed,
    )
    print(format_comparison(df))
    if args.out:
        write_csv(args.out, df)
        print(f"wrote {args.out}")
    return 0
