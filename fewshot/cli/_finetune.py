"""``fewshot finetune``: fine-tune a backbone on base classes with SCHaNe or a baseline."""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["register", "run"]

_S = argparse.SUPPRESS  # flags that are not given do not override the config file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a timm backbone on the base classes (CE, SCHaNe, SupCon, SimCLR, H-SCL)",
        description="Fine-tune a timm backbone on the base classes of a benchmark with "
        "(1 - lam) CE + lam * contrastive, two AutoAugment views per image, timm's optimiser (AdamW by default) and a cosine "
        "schedule; hold out a seeded part of the base images for early stopping; write "
        "OUT/best and OUT/last checkpoints (for `fewshot extract --checkpoint OUT/best`), "
        "OUT/log.jsonl and OUT/manifest.json. Settings come from --config (TOML; YAML only if "
        "PyYAML is installed, it is not a dependency) and flags override it. Several "
        "processes: `torchrun --nproc_per_node=N -m fewshot finetune ...` (DDP; NCCL on GPUs, "
        "gloo on CPU); --batch-size is the global batch and the contrastive term sees all of "
        "it. There is no gradient accumulation: it would not add negatives to the contrastive "
        "term.",
    )
    p.add_argument("--config", metavar="FILE", default=None,
                   help="TOML file of settings (keys as the long flags, '-' or '_'); flags override it")
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from RUN_DIR/last (model, optimiser, schedule, data "
                   "position, RNG); settings given must match the run's")

    model = p.add_argument_group("model and data")
    model.add_argument("--backbone", metavar="NAME", default=_S, help="timm model name (e.g. resnet18, vit_small_patch16_224, conv4, resnet12)")
    model.add_argument("--pretrained", metavar="PATH|hub", default=_S,
                       help="initial weights: a .safetensors/.pth state dict, or 'hub' (needs internet); default: random init")
    model.add_argument("--dataset", metavar="NAME", default=_S, help="benchmark (see `fewshot data`), e.g. cifar-fs, mini-imagenet, digits")
    model.add_argument("--data-root", metavar="DIR", default=_S, help="directory holding the dataset files")
    model.add_argument("--split", default=_S, help="split with the base classes (default: train)")
    model.add_argument("--img-size", type=int, metavar="N", default=_S, help="input size N×N instead of the backbone's")
    model.add_argument("--freeze-backbone", action="store_true", default=_S,
                       help="keep the backbone frozen (eval mode, no gradients) and train the neck and heads (needs "
                       "--neck-dims); with --augment none --hflip 0 its features come from the feature cache")
    model.add_argument("--neck-dims", type=int, nargs="+", metavar="D", default=_S,
                       help="MLP neck on the backbone features (e.g. 1024 512); its output is the embedding, "
                       "saved in the checkpoint and applied by `fewshot extract --checkpoint`")

    obj = p.add_argument_group("objective")
    obj.add_argument("--objective", metavar="NAME", default=_S,
                     help="ce, schane (default), supcon, supcon-in, simclr or hscl")
    obj.add_argument("--lam", type=float, default=_S, help="weight of the contrastive term in [0, 1] (default 0.9)")
    obj.add_argument("--temperature", type=float, default=_S, help="temperature tau > 0 (default 0.5)")
    obj.add_argument("--projection-dim", type=int, metavar="D", default=_S,
                     help="contrastive term on a 2-layer MLP projection of D dims; default 0: on the backbone embedding (as the papers)")

    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=_S, help="maximum epochs (default 100)")
    opt.add_argument("--batch-size", type=int, default=_S,
                     help="global images per step over all processes (default 1024; two views each)")
    opt.add_argument("--optimizer", metavar="NAME", default=_S,
                     help="timm optimiser: adamw (default), adam, sgd (Nesterov, momentum 0.9) or lamb")
    opt.add_argument("--lr", type=float, default=_S, help="peak learning rate (default 1e-4)")
    opt.add_argument("--weight-decay", type=float, default=_S,
                     help="weight decay, not on 1-D params nor the model's no_weight_decay() set (default 0.05)")
    opt.add_argument("--layer-decay", type=float, metavar="F", default=_S,
                     help="layer-wise lr decay in (0, 1] over timm's layer groups (BEiT-3: 0.65); default off")
    opt.add_argument("--dropout", type=float, default=_S, help="dropout before the classifier (default 0.1)")
    opt.add_argument("--drop-path", type=float, metavar="P", default=_S,
                     help="stochastic depth rate of the backbone (timm drop_path_rate; default 0)")
    opt.add_argument("--scheduler", default=_S, help="cosine (default, per step to --min-lr) or constant (timm)")
    opt.add_argument("--warmup-epochs", type=int, default=_S, help="linear warm-up epochs from --warmup-lr (default 0)")
    opt.add_argument("--warmup-lr", type=float, default=_S, help="lr at the start of the warm-up (default 1e-6)")
    opt.add_argument("--min-lr", type=float, default=_S, help="lr at the end of the cosine schedule (default 0)")
    opt.add_argument("--ema-decay", type=float, metavar="D", default=_S,
                     help="model EMA decay (timm ModelEmaV3, e.g. 0.9999): validation and best/ use the EMA; default 0: off")
    opt.add_argument("--patience", type=int, default=_S,
                     help="stop after this many epochs without a lower validation loss (default 10; 0: never)")
    opt.add_argument("--val-fraction", type=float, default=_S,
                     help="share of each base class held out for validation (default 0.1; 0: none)")
    opt.add_argument("--seed", type=int, default=_S, help="seed of split, init, data order, augmentation, dropout (default 0)")
    opt.add_argument("--seeds", type=int, nargs="+", metavar="S", default=None,
                     help="train one run per training seed into OUT/seed-S/ (the replicates of this objective; "
                     "an existing run there is resumed, a finished one kept); conflicts with --seed and --resume")
    opt.add_argument("--run", metavar="NAME", default=_S,
                     help="name of this training run, recorded in its checkpoints, features and results (default: seed-SEED)")

    aug = p.add_argument_group("augmentation")
    aug.add_argument("--augment", metavar="POLICY", default=_S, help="AutoAugment policy: imagenet (default), cifar10, svhn, or none")
    aug.add_argument("--hflip", type=float, default=_S, help="horizontal flip probability (default 0.5)")
    aug.add_argument("--crop-pct", type=float, metavar="F", default=_S,
                     help="centre-crop fraction of training and extraction framing (default: the backbone's; recorded in the checkpoint)")
    aug.add_argument("--mixup", type=float, metavar="ALPHA", default=_S,
                     help="Mixup alpha on the CE term; the contrastive term sees the un-mixed views (default 0: off)")
    aug.add_argument("--cutmix", type=float, metavar="ALPHA", default=_S, help="CutMix alpha on the CE term (default 0: off)")
    aug.add_argument("--mixup-prob", type=float, default=_S, help="probability of mixing a batch (default 1)")
    aug.add_argument("--mixup-switch-prob", type=float, default=_S,
                     help="probability of CutMix instead of Mixup when both are on (default 0.5)")
    aug.add_argument("--smoothing", type=float, default=_S, help="label smoothing of the mixed targets (default 0)")

    ex = p.add_argument_group("execution")
    ex.add_argument("--save-every-steps", type=int, metavar="K", default=_S,
                    help="also checkpoint last/ every K steps inside an epoch (default 0: per epoch)")
    ex.add_argument("--workers", dest="num_workers", type=int, metavar="N", default=_S,
                    help="DataLoader workers per process (default: 0 on CPU, up to 8 on CUDA)")
    ex.add_argument("--device", default=_S, help="cpu, cuda, cuda:1 (default: cuda if available; torchrun: cuda:LOCAL_RANK)")
    ex.add_argument("--threads", type=int, default=_S, help="CPU threads per process (default: torch's)")
    ex.add_argument("--compile", action="store_true", default=_S, help="torch.compile the model")
    ex.add_argument("--no-progress", dest="progress", action="store_false", default=_S, help="hide progress bars")

    p.add_argument("--out", metavar="RUN_DIR", default=_S, help="run directory to create")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fewshot.training import finetune, finetune_seeds, load_config, resume_config
    from fewshot.training.config import read_config_file

    given = {k: v for k, v in vars(args).items() if k not in ("config", "resume", "command", "func", "seeds")}
    if args.seeds is not None:
        if args.resume is not None or "seed" in given:
            raise ValueError("--seeds conflicts with --resume and --seed (each seed's run in OUT/seed-S/ is resumed when it exists)")
        config = load_config(args.config, **given)
        try:
            results = finetune_seeds(config, args.seeds)
        except FloatingPointError as exc:
            print(f"fewshot finetune: {exc}", file=sys.stderr)
            return 1
        if int(os.environ.get("RANK", "0") or 0) == 0:
            for result in results:
                print(f"{result.run_dir.name}: {result.summary()}")
        return 0
    if args.resume is not None:
        overrides = dict(read_config_file(args.config)) if args.config else {}
        overrides.update(given)
        if "out" in overrides and str(overrides["out"]) != str(args.resume):
            raise ValueError(f"--out {overrides['out']} conflicts with --resume {args.resume}")
        config = resume_config(args.resume, **overrides)
    else:
        config = load_config(args.config, **given)
    try:
        result = finetune(config, resume=args.resume is not None)
    except FloatingPointError as exc:  # diverged: a failed run, not bad input
        print(f"fewshot finetune: {exc}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", "0") or 0) == 0:
        print(result.summary())
    return 0
