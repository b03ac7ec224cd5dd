"""``fewshot extract``: frozen features of one split, for ``fewshot evaluate --features``."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    from fewshot._names import DATASET_NAMES

    p = sub.add_parser(
        "extract",
        help="extract frozen backbone features of a dataset split into an .npz",
        description="Embed every image of a split with a timm backbone (or a fine-tuned "
        "checkpoint) and write features.npz (features, labels, class_names, fingerprint) for "
        "`fewshot evaluate --features`. Preprocessing comes from the backbone (or is the one "
        "the checkpoint recorded). Nothing is downloaded unless --pretrained hub is given.",
    )
    src = p.add_argument_group("backbone")
    src.add_argument("--backbone", metavar="NAME", help="timm model name (e.g. resnet18, conv4, resnet12)")
    src.add_argument(
        "--pretrained",
        metavar="PATH|hub",
        help="weights: a .safetensors/.pth state dict, or 'hub' for timm's weights (needs internet); "
        "default: random initialisation",
    )
    src.add_argument(
        "--checkpoint",
        metavar="DIR",
        help="a checkpoint directory from `fewshot finetune` (backbone name and preprocessing are read from it)",
    )
    src.add_argument(
        "--pretrained-on",
        metavar="LABEL_SET",
        default=None,
        help="label set the weights were pretrained on (imagenet-1k, imagenet-21k, ...) for "
        "the overlap warning; default: from timm's pretrained tag with --pretrained hub",
    )
    src.add_argument("--seed", type=int, default=0, help="seed of a random initialisation (default 0)")
    src.add_argument(
        "--run",
        metavar="NAME",
        default=None,
        help="training run recorded in the features file (default: the checkpoint's, e.g. seed-0)",
    )
    data = p.add_argument_group("data")
    data.add_argument(
        "--dataset", required=True, choices=DATASET_NAMES, help="benchmark name (see `fewshot data list`)"
    )
    data.add_argument("--split", default="test", help="split to embed (default: test)")
    data.add_argument(
        "--data-root", "--root", dest="data_root", metavar="DIR", help="directory holding the dataset files"
    )
    pre = p.add_argument_group("preprocessing")
    pre.add_argument(
        "--img-size",
        type=int,
        metavar="N",
        help="input size N×N instead of the backbone's; images are resized to it "
        "(e.g. --img-size 32 --crop-pct 1 runs CIFAR at native size)",
    )
    pre.add_argument(
        "--crop-pct", type=float, metavar="F", help="centre-crop fraction instead of the backbone's (1.0: no crop)"
    )
    run_ = p.add_argument_group("run")
    run_.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    run_.add_argument(
        "--workers",
        type=int,
        default=None,
        help="DataLoader worker processes (default: 0 on CPU, where a prefetch thread loads images; up to 8 on CUDA)",
    )
    run_.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    run_.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=None,
        help="feature cache; a repeated extraction is read from it "
        "(default: $FEWSHOT_CACHE_DIR, else ~/.cache/fewshot/features)",
    )
    run_.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels-last memory format for the forward passes (default: on for "
        "conv4, resnet12 and timm ResNets/EfficientNets, off otherwise)",
    )
    run_.add_argument(
        "--fold-batchnorm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fold each BatchNorm into the convolution before it for the forward passes: the same "
        "features up to float rounding, faster (default: on)",
    )
    run_.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")
    run_.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="feature file to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fewshot.pipeline import extract_to_file

    res = extract_to_file(
        args.out,
        dataset=args.dataset,
        split=args.split,
        data_root=args.data_root,
        backbone=args.backbone,
        pretrained=args.pretrained,
        checkpoint=args.checkpoint,
        seed=args.seed,
        img_size=args.img_size,
        crop_pct=args.crop_pct,
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=args.device,
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
        progress=not args.no_progress,
        run=args.run,
        pretrained_on=args.pretrained_on,
        channels_last=args.channels_last,
        fold_batchnorm=args.fold_batchnorm,
    )
    how = "from cache" if res.cache_hit else f"in {res.seconds:.1f}s"
    print(
        f"wrote {res.path}: {res.n} × {res.dim} features of {args.dataset}/{args.split} "
        f"({res.backbone}, {res.input_size[1]}×{res.input_size[2]} px) {how}; fingerprint {res.fingerprint[:12]}"
    )
    return 0
