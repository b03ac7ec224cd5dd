"""``fewshot evaluate``: score a features file on the episodic protocol."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    from fewshot._names import CLASSIFIER_NAMES

    p = sub.add_parser(
        "evaluate",
        help="evaluate frozen features on few-shot episodes",
        description="Fit a classifier on every episode's support set and score its queries. "
        "Settings come from --protocol (a TOML file under episodes/) and can be overridden "
        "by flags; without either, the papers' protocol is used (5-way, 1/5-shot, 15 queries, "
        "3,000 episodes, seeds 0 1 2).",
    )
    p.add_argument("--features", required=True, help="features .npz (keys: features (N,d), labels (N,))")
    p.add_argument("--protocol", help="protocol TOML file, e.g. episodes/cifar-fs.toml")
    p.add_argument("--dataset", help="dataset name recorded in the results (default: from the file)")
    p.add_argument("--split", help="split name recorded in the results (default: from the file)")
    p.add_argument("--ways", type=int, help="classes per episode (default 5)")
    p.add_argument("--shots", type=int, nargs="+", help="support items per class (default 1 5)")
    p.add_argument("--queries", type=int, help="query items per class (default 15)")
    p.add_argument("--episodes", type=int, help="episodes per shot and seed (default 3000)")
    p.add_argument("--seeds", type=int, nargs="+", help="episode seeds (default 0 1 2)")
    p.add_argument("--classifier", default="logreg", choices=CLASSIFIER_NAMES, help="default: logreg")
    p.add_argument("--C", type=float, dest="C", help="inverse regularisation of the logistic regressions (default 1.0)")
    p.add_argument(
        "--classifier-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a classifier hyper-parameter, repeatable (e.g. --classifier-arg metric=euclidean "
        "--classifier-arg lam=50); see README 'Classifiers' for each classifier's names and defaults",
    )
    p.add_argument(
        "--base-features",
        metavar="FILE.npz",
        help="features of the base classes; simpleshot centres on their mean (CL2N)",
    )
    p.add_argument(
        "--per-class",
        action="store_true",
        help="keep per-class correct counts in the per-episode rows (for compare/plot --per-class)",
    )
    p.add_argument("--label", help="method label for tables (default: the output directory's name)")
    p.add_argument(
        "--run",
        metavar="NAME",
        help="training run of these features, written in every row (default: the features file's run, "
        "e.g. seed-0); results with one --label and distinct runs are replicates of that method",
    )
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument(
        "--episode-cache-dir",
        metavar="DIR",
        default=None,
        help="episode cache; a second method or run on the same labels and protocol reads its episodes "
        "from it instead of sampling (default: $FEWSHOT_CACHE_DIR/episodes, else ~/.cache/fewshot/episodes)",
    )
    p.add_argument("--no-episode-cache", action="store_true", help="neither read nor write the episode cache")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument(
        "--out",
        required=True,
        help="results directory to write (replaced only when it holds an earlier `fewshot evaluate` result)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fewshot.classifiers.options import parse_classifier_args
    from fewshot.pipeline import evaluate_to_directory
    from fewshot.protocol import load_protocol
    from fewshot.stats import summarize

    protocol = load_protocol(
        args.protocol,
        dataset=args.dataset,
        split=args.split,
        ways=args.ways,
        shots=args.shots,
        queries=args.queries,
        episodes=args.episodes,
        seeds=args.seeds,
    )
    clf_kwargs = {"C": args.C} if args.C is not None else {}
    clf_kwargs.update(parse_classifier_args(args.classifier_arg))
    if args.classifier == "simpleshot" and not args.base_features:
        raise ValueError("simpleshot needs --base-features FILE.npz (features of the base classes, for CL2N centring)")
    results = evaluate_to_directory(
        args.features,
        args.out,
        protocol,
        classifier=args.classifier,
        classifier_kwargs=clf_kwargs,
        label=args.label,
        run=args.run,
        device=args.device,
        base_features=args.base_features,
        per_class=args.per_class,
        episode_cache_dir=args.episode_cache_dir,
        use_episode_cache=not args.no_episode_cache,
        progress=False if args.no_progress else None,
    )
    summary = summarize(results.episodes, ci=protocol.ci)
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"wrote {results.path}")
    return 0
