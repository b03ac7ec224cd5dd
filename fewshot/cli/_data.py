"""``fewshot data``: list the registered benchmarks, print class lists, check a data root.

Exit status of ``fewshot data check``: 0 when every split checked is complete or a consistent
subset (fewer images per class, the same number in every class); 1 when a split has missing or
extra classes, a wrong class count, or no files under the root; 2 when it cannot check
(unknown dataset or split, missing root, no recognisable layout, unreadable file).
"""

from __future__ import annotations

import argparse

__all__ = ["register", "run_list", "run_classes", "run_check", "run_overlap"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="list benchmarks, print class lists, check a dataset on disk",
        description="Inspect the registered few-shot benchmarks and check data on disk "
        "against their canonical class lists.",
    )
    actions = p.add_subparsers(dest="data_command", metavar="ACTION")
    p.set_defaults(func=lambda args: _usage(p))  # one-line usage error, exit 2

    q = actions.add_parser("list", help="datasets, their splits, class counts and layouts")
    q.set_defaults(func=run_list)

    q = actions.add_parser("classes", help="the class list of a split, one per line (label order)")
    q.add_argument("name", help="dataset name (see `fewshot data list`)")
    q.add_argument("split", help="train, val or test")
    q.set_defaults(func=run_classes)

    q = actions.add_parser(
        "check",
        help="verify class lists and per-class counts under a data root",
        description="Verify the class list and per-class image counts of every split (or one) "
        "and print what differs. Exit 0: complete or a consistent subset; 1: missing/extra "
        "classes, wrong counts or an absent split; 2: cannot check.",
    )
    q.add_argument("name", help="dataset name (see `fewshot data list`)")
    q.add_argument(
        "--data-root",
        "--root",
        dest="root",
        metavar="DIR",
        default=None,
        help="data root holding the dataset (not needed for digits)",
    )
    q.add_argument("--split", default=None, help="check only this split (default: all)")
    q.add_argument("--csv", default=None, metavar="FILE", help="also write the per-class table (tidy CSV) to FILE")
    q.set_defaults(func=run_check)

    from fewshot.overlap import LABEL_SETS

    q = actions.add_parser(
        "overlap",
        help="which classes of a split are in a pretraining label set (ImageNet-1k, -21k, ...)",
        description="List the classes of a split that the pretraining label set contains: by "
        "WordNet id for mini/tieredImageNet, by name or vetted synonym for the CIFAR-100 classes "
        "of CIFAR-FS and FC100. Prints the overlapping classes and the count; --out writes the "
        "table (class,in_pretraining,matched,how).",
    )
    q.add_argument("name", help="dataset name (see `fewshot data list`)")
    q.add_argument("--split", default="test", help="split (default: test)")
    q.add_argument(
        "--pretrained-on",
        required=True,
        choices=tuple(LABEL_SETS),
        metavar="LABEL_SET",
        help=f"pretraining label set: {', '.join(LABEL_SETS)}",
    )
    q.add_argument("--out", metavar="FILE.csv", help="write the per-class table to FILE.csv")
    q.set_defaults(func=run_overlap)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.error("choose an action: list, classes or check")


def run_list(args: argparse.Namespace) -> int:
    from fewshot.data import DATASETS, class_names, list_datasets

    print(f"{'dataset':<16} {'classes per split':<28} {'per class':<10} layouts")
    for name in list_datasets():
        spec = DATASETS[name]
        splits = ", ".join(f"{s} {len(class_names(name, s))}" for s in spec.splits)
        per_class = "varies" if spec.images_per_class is None else str(spec.images_per_class)
        layouts = ", ".join(layout.name for layout in spec.layouts)
        print(f"{name:<16} {splits:<28} {per_class:<10} {layouts}")
    return 0


def run_classes(args: argparse.Namespace) -> int:
    from fewshot.data import class_names

    print("\n".join(class_names(args.name, args.split)))
    return 0


def run_check(args: argparse.Namespace) -> int:
    from fewshot.data import check_split

    if args.csv:
        from fewshot._io import check_output_file

        check_output_file(args.csv, inputs=[args.root])
    report = check_split(args.name, args.root, split=args.split)
    print(report.to_text())
    if args.csv:
        from fewshot._io import write_csv

        write_csv(args.csv, report.classes)
    return report.exit_code


def run_overlap(args: argparse.Namespace) -> int:
    from fewshot.overlap import pretraining_overlap

    frame = pretraining_overlap(args.name, args.split, args.pretrained_on)
    seen = frame[frame["in_pretraining"]]
    for row in seen.itertuples():
        print(f"{row[1]:<24} {row.how:<8} {row.matched}")
    print(f"{len(seen)} of {len(frame)} {args.name}/{args.split} classes are in {args.pretrained_on}")
    if args.out:
        from fewshot._io import write_csv

        write_csv(args.out, frame)
        print(f"wrote {args.out}")
    return 0
