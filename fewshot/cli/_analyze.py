"""``fewshot analyze``: isotropy, similarity distributions and t-SNE of feature files."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="isotropy, positive/negative similarity histograms and t-SNE of feature files",
        description="Analyse the geometry of one or more feature files side by side (e.g. CE vs "
        "SCHaNe of one backbone): the Isotropy Score (Mu & Viswanath 2018), cosine-similarity "
        "distributions of positive vs negative pairs (overall and per --classes), and a seeded "
        "t-SNE map. Writes analysis.csv, similarity.csv, similarity*.png, tsne.png, tsne.csv and "
        "manifest.json into --out (which is replaced).",
    )
    p.add_argument("features", nargs="+", metavar="FEATURES.npz", help="feature files from `fewshot extract`")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (replaced)")
    p.add_argument("--labels", nargs="+", metavar="LABEL", help="one display label per file (default: file names)")
    p.add_argument(
        "--classes",
        nargs="+",
        metavar="CLASS",
        default=(),
        help="class names to histogram separately (each must be in every file)",
    )
    p.add_argument("--bins", type=int, default=200, help="histogram bins over [-1, 1] (default 200)")
    p.add_argument(
        "--max-per-class",
        type=int,
        default=None,
        metavar="N",
        help="use at most N items per class for the similarity statistics (seeded; default all)",
    )
    p.add_argument("--tsne-classes", type=int, default=10, help="classes in the t-SNE map (default 10)")
    p.add_argument("--tsne-per-class", type=int, default=100, help="points per class in the t-SNE map (default 100)")
    p.add_argument("--no-tsne", action="store_true", help="skip the t-SNE map")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsamples and the t-SNE embedding (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fewshot.analysis import analyze_to_directory

    frame = analyze_to_directory(
        args.features,
        args.out,
        labels=args.labels,
        classes=args.classes,
        bins=args.bins,
        max_per_class=args.max_per_class,
        tsne_classes=args.tsne_classes,
        tsne_per_class=args.tsne_per_class,
        seed=args.seed,
        tsne=not args.no_tsne,
    )
    for row in frame.itertuples():
        print(
            f"{row.label}: isotropy {row.isotropy:.4g} (L2-normalised {row.isotropy_l2:.4g}); "
            f"cosine positive {row.mean_positive:.3f}±{row.sd_positive:.3f}, negative "
            f"{row.mean_negative:.3f}±{row.sd_negative:.3f}, overlap {row.overlap:.3f}"
        )
    print(f"wrote {args.out}")
    return 0
