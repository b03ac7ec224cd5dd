"""``fewshot extract``: frozen features of one split, for ``fewshot evaluate --features``."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
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
    src.add_argument("--checkpoint", metavar="DIR", help="a checkpoint directory from `fewshot finetune` "
                     "(backbone name and preprocessing are read from it)")
    src.add_argument("--seed", type=int, default=0, help="seed of a random initialisation (default 0)")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", required=True, metavar="NAME", help="benchmark name (see `fewshot data`)")
    data.add_argument("--split", default="test", help="split to embed (default: test)")
    data.add_argument("--data-root", metavar="DIR", help="directory holding the dataset files")
    pre = p.add_argument_group("preprocessing")
    pre.add_argument("--img-size", type=int, metavar="N",
                     help="input size N×N instead of the backbone's; images are resized to it "
                     "(e.g. --img-size 32 --crop-pct 1 runs CIFAR at native size)")
    pre.add_argument("--crop-pct", type=float, metavar="F",
                     help="centre-crop fraction instead of the backbone's (1.0: no crop)")
    run_ = p.add_argument_group("run")
    run_.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    run_.add_argument("--workers", type=int, default=None,
                      help="DataLoader worker processes (default: 0 on CPU, where a prefetch thread "
                      "loads images; up to 8 on CUDA)")
    run_.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    run_.add_argument("--cache-dir", metavar="DIR", default=os.environ.get("FEWSHOT_CACHE_DIR"),
                      help="feature cache; a repeated extraction is read from it "
                      "(default: $FEWSHOT_CACHE_DIR, else no cache)")
    run_.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="feature file to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fewshot.features import extract_cached, write_features
    from fewshot.models import create_backbone, resolve_preprocessing

    if args.checkpoint is None and args.backbone is None:
        raise ValueError("give --backbone NAME or --checkpoint DIR")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    out = Path(args.out)
    if out.suffix != ".npz":
        raise ValueError(f"--out must end in .npz, got {out}")

    source: dict[str, object]
    if args.checkpoint is not None:
        from fewshot.checkpoint import load_checkpoint

        if args.pretrained is not None:
            raise ValueError("--pretrained conflicts with --checkpoint (the checkpoint holds the weights)")
        model, pp, meta = load_checkpoint(args.checkpoint)
        name = meta["backbone"]["name"]
        if args.backbone is not None and args.backbone != name:
            raise ValueError(f"--backbone {args.backbone} differs from the checkpoint's backbone {name}")
        if args.img_size is not None or args.crop_pct is not None:
            import dataclasses

            size = pp.input_size if args.img_size is None else (pp.input_size[0], args.img_size, args.img_size)
            pp = dataclasses.replace(pp, input_size=size, crop_pct=args.crop_pct or pp.crop_pct)
        source = {"checkpoint": str(Path(args.checkpoint).resolve()), "sha256": meta["backbone"]["sha256"]}
    else:
        name = args.backbone
        model = create_backbone(name, args.pretrained, seed=args.seed)
        pp = resolve_preprocessing(model, img_size=args.img_size, crop_pct=args.crop_pct)
        pretrained = args.pretrained if args.pretrained in (None, "hub") else str(Path(args.pretrained).resolve())
        source = {"pretrained": pretrained, "seed": args.seed if args.pretrained is None else None}

    from fewshot.data import load_split

    split = load_split(args.dataset, args.split, args.data_root)
    manifest = {"kind": "extract", "backbone": name, "source": source}
    t0 = time.perf_counter()
    options = dict(
        preprocessing=pp,
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=args.device,
        progress=not args.no_progress,
        manifest=_manifest(manifest),
    )
    hit = False
    if args.cache_dir:
        path, hit = extract_cached(model, split, args.cache_dir, **options)
        _copy_atomic(path, out)
    else:
        write_features(model, split, out, **options)
    import numpy as np

    with np.load(out, allow_pickle=False) as data:
        shape, fingerprint = data["features"].shape, str(data["fingerprint"])
    how = "from cache" if hit else f"in {time.perf_counter() - t0:.1f}s"
    print(
        f"wrote {out}: {shape[0]} × {shape[1]} features of {args.dataset}/{args.split} "
        f"({name}, {pp.input_size[1]}×{pp.input_size[2]} px) {how}; fingerprint {fingerprint[:12]}"
    )
    return 0


def _manifest(extra: dict) -> dict:
    from fewshot._manifest import environment_info

    return {**extra, "environment": environment_info()}


def _copy_atomic(src: Path, dst: Path) -> None:
    from fewshot._io import write_bytes

    if src.resolve() != dst.resolve():
        write_bytes(dst, src.read_bytes())
