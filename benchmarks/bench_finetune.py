"""Cost of the contrastive term in a fine-tuning step: CE alone vs CE + SCHaNe, CPU.

One training step of :mod:`fewshot.training` — forward of both views, the objective,
backward, AdamW step and scheduler step — on timm ``resnet18`` (random init, nothing is
downloaded) at 32 px with a batch of 256 images (512 rows), from pre-made tensors, so data
loading and augmentation are not measured. The objectives differ in nothing else: same
model, same initial weights, same inputs. Target (issue 5): the contrastive term costs at most
5% of a step.

- time: median wall-clock of ``--repeats`` steps per objective after one warm-up step each,
  the objectives taking turns step by step (alternating who goes first) so that machine
  load hits them alike;
- overhead: ``median(objective) / median(ce) - 1``; on a busy machine this difference of two
  noisy timings can be off by a few percent either way, so
- loss share: the objective alone (forward + backward on the step's ``(512, 512)`` logits and
  embeddings, same rounds) as a share of the CE step — the direct measure of what the term adds.

Then one table of fine-tuning throughput, before/after in the same run, for these settings:
``demo`` (Conv-4 on the digits at 16 px, batch 64, the demo's AutoAugment without flip),
``bench-mini`` (Conv-4 at 32 px, batch 256: ``make bench-mini``'s training), ``miniimagenet``
(ResNet-12 at 84 px, batch 4, the setting of the first issue-18 runs) and ``miniimagenet-b64``
(the same at batch 64, the batch RFS trains its ResNet-12 with), all on synthetic 84 x 84 images
(no data needed), and ``lite0`` (timm ``tf_efficientnet_lite0``, random init, 84 px, batch 8):

- old: the code before issue 18 — contiguous model and inputs, float32 views made in the
  loader (``ToTensor`` + ``Normalize`` after AutoAugment), Conv-4's blocks in the published
  order (ReLU, then max-pool; today's blocks pool first, the same values and gradients),
  torch's foreach AdamW (today's is the fused one), glibc's allocator as it comes;
- new: the defaults of :mod:`fewshot.training` — channels-last where
  :func:`~fewshot.training.loop.use_channels_last` says so, uint8 views from the loader, converted
  and normalised where the model runs (:func:`~fewshot.training.loop.normalize_views`, timed
  inside the new step), fused AdamW, freed memory kept for reuse
  (:func:`fewshot.reuse_freed_memory`, as the trainer's steps run);
- the steps of old, new and bf16 each run in their own child process (spawned, so each starts
  with glibc's allocator as it comes), timed there, taking turns;
- ``step img/s``: images (two views each) per second of forward, SCHaNe, backward and AdamW
  step, from the same pixels; ``data img/s``: images per second of making their two views in
  this process (augmentation as in training, no model); ``serial``: both one after the other
  (``num_workers=0``), ``1 / (1 / step + 1 / data)``; ``x``: new / old; ``(cpu)``: the same
  ratio in CPU time of the process that ran it (less moved by other jobs on a shared machine).

Medians over ``--rounds`` rounds, old and new taking turns (alternating who goes first).
Target (issue 18): the CPU training step >= 1.5x faster on Conv-4 and ResNet-12.

Then the optimiser update alone (old: torch's foreach AdamW, new: :func:`make_optimizer`'s fused
one) and the roofline of each step: its convolution and matrix-product FLOPs (forward and
backward, counted by ``torch.utils.flop_counter``), the rate the old and new steps reach, and
the fastest float32 rate this machine reaches on a few large convolutions and a GEMM at the
same thread count (``peak``). A step whose old rate times 1.5 exceeds ``peak`` cannot be made
1.5x faster in float32 on this CPU by any memory format or data pipeline.

Usage: ``python benchmarks/bench_finetune.py [--batch 256] [--img-size 32] [--repeats 7]
[--threads N] [--objectives ce,schane,supcon] [--rounds 3] [--settings demo,bench-mini,...]
[--skip-objectives]``
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
from _timing import Child, local, median_rounds


def build(objective_name: str, backbone: str, img_size: int, n_classes: int):
    from fewshot.backbones import create_backbone
    from fewshot.heads import ClassificationHead
    from fewshot.losses import create_objective
    from fewshot.training.loop import FinetuneNet, make_optimizer, make_scheduler

    backbone_module = create_backbone(backbone, None, seed=0)
    net = FinetuneNet(backbone_module, ClassificationHead(backbone_module.num_features, n_classes, dropout=0.1, seed=1))
    optimizer = make_optimizer(net, lr=1e-4, weight_decay=0.05)
    scheduler = make_scheduler(optimizer, total_steps=1000, warmup_steps=0, kind="cosine")
    objective = create_objective(objective_name, lam=0.9, temperature=0.5)
    return net, objective, optimizer, scheduler


def make_step(net, objective, optimizer, scheduler, views, labels, ids):
    from fewshot.training.loop import compute_loss

    updates = [0]

    def run() -> float:
        t0 = time.perf_counter()
        out = compute_loss(net, objective, views, labels, ids)
        optimizer.zero_grad(set_to_none=True)
        out.total.backward()
        optimizer.step()
        updates[0] += 1
        scheduler.step_update(num_updates=updates[0])  # timm's per-step schedule
        return time.perf_counter() - t0

    return run


def make_loss_only(objective, n_classes: int, batch: int, dim: int, labels, ids):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2 * batch, n_classes, generator=g).requires_grad_(True)
    emb = torch.randn(2 * batch, dim, generator=g).requires_grad_(True)
    y, i = labels.repeat_interleave(2), ids.repeat_interleave(2)

    def run() -> float:
        t0 = time.perf_counter()
        objective(logits, emb, y, i).total.backward()
        return time.perf_counter() - t0

    return run


#: The throughput settings: backbone (timm name, options), input size, images per step, images
#: whose views the data column makes, the training augmentation.
THROUGHPUT_SETTINGS = {
    "demo": {
        "backbone": "conv4",
        "options": {},
        "img_size": 16,
        "batch": 64,
        "images": 128,
        "data": "digits",
        "policy": "imagenet",
        "hflip": 0.0,
    },
    "bench-mini": {
        "backbone": "conv4",
        "options": {},
        "img_size": 32,
        "batch": 256,
        "images": 256,
        "data": "synthetic",
        "policy": "imagenet",
        "hflip": 0.5,
    },
    "miniimagenet": {
        "backbone": "resnet12",
        "options": {},
        "img_size": 84,
        "batch": 4,
        "images": 32,
        "data": "synthetic",
        "policy": "imagenet",
        "hflip": 0.5,
    },
    "miniimagenet-b64": {
        "backbone": "resnet12",
        "options": {},
        "img_size": 84,
        "batch": 64,
        "images": 64,
        "data": "synthetic",
        "policy": "imagenet",
        "hflip": 0.5,
    },
    "lite0": {
        "backbone": "tf_efficientnet_lite0",
        "options": {},
        "img_size": 84,
        "batch": 8,
        "images": 32,
        "data": "synthetic",
        "policy": "imagenet",
        "hflip": 0.5,
    },
}


class _SyntheticSplit:
    """``n`` random 84 x 84 RGB images (a stand-in for miniImageNet's pre-resized images)."""

    def __init__(self, n: int, size: int = 84) -> None:
        import numpy as np

        rng = np.random.default_rng(0)
        self.arrays = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
        self.labels = np.arange(n) % 5

    def __len__(self) -> int:
        return len(self.arrays)

    def image(self, index: int):
        from PIL import Image

        return Image.fromarray(self.arrays[index])


def _setting_parts(name: str) -> dict:
    """Everything a throughput setting's steps are built from, from fixed seeds (so each
    process that builds it gets the same weights and pixels)."""
    import copy

    from fewshot.backbones import create_backbone
    from fewshot.heads import ClassificationHead
    from fewshot.losses import create_objective
    from fewshot.training.loop import FinetuneNet, normalize_views, use_channels_last
    from fewshot.transforms import resolve_preprocessing

    s = THROUGHPUT_SETTINGS[name]
    body = create_backbone(s["backbone"], None, seed=0, **s["options"])
    pp = resolve_preprocessing(body, img_size=s["img_size"])
    mean = torch.tensor(pp.mean).view(-1, 1, 1)
    std = torch.tensor(pp.std).view(-1, 1, 1)
    cl = use_channels_last(body, "cpu")
    g = torch.Generator().manual_seed(0)
    b, size = s["batch"], s["img_size"]
    pixels = torch.randint(0, 256, (b, 2, 3, size, size), generator=g, dtype=torch.uint8)
    net = FinetuneNet(body, ClassificationHead(body.num_features, 5, dropout=0.1, seed=1))
    new_net = copy.deepcopy(net)
    _published_block_order(net)
    return {
        "setting": s,
        "preprocessing": pp,
        "mean": mean,
        "std": std,
        "channels_last": cl,
        "pixels": pixels,
        "floats": normalize_views(pixels, mean, std),
        "labels": torch.randint(0, 5, (b,), generator=g),
        "ids": torch.arange(b),
        "objective": create_objective("schane", lam=0.9, temperature=0.5),
        "old_net": net,
        "new_net": new_net.to(memory_format=torch.channels_last) if cl else new_net,
    }


def _stepper(parts: dict, variant: str):
    """One training step of ``variant``: ``old`` (the code before issue 18: contiguous, float32
    views, foreach AdamW, Conv-4's published block order), ``new`` (today's defaults) or
    ``bf16`` (new + bf16 autocast), as a callable. It trains ``parts``' nets in place: each
    child process builds its own."""
    from timm.optim import create_optimizer_v2

    from fewshot.training.loop import compute_loss, make_optimizer, normalize_views

    if variant == "old":
        net, cl = parts["old_net"], False
        optimizer = create_optimizer_v2(net, opt="adamw", lr=1e-4, weight_decay=0.05, foreach=True)

        def views():
            return parts["floats"]
    else:
        net, cl = parts["new_net"], parts["channels_last"]
        optimizer = make_optimizer(net, lr=1e-4, weight_decay=0.05)

        def views():
            return normalize_views(parts["pixels"], parts["mean"], parts["std"])

    def run() -> None:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if variant == "bf16" else None
        out = compute_loss(
            net, parts["objective"], views(), parts["labels"], parts["ids"], channels_last=cl, autocast=autocast
        )
        optimizer.zero_grad(set_to_none=True)
        out.total.backward()
        optimizer.step()

    return run


_CHILD_CONTEXT = contextlib.ExitStack()


def _child_step(setting: str, variant: str):
    """``variant``'s step, built in a child process (:class:`_timing.Child`). The new variants
    run inside :func:`fewshot.reuse_freed_memory` for the child's life, as the trainer's steps
    do; the old one with glibc's allocator as it was before."""
    from fewshot.allocator import reuse_freed_memory

    if variant != "old":
        _CHILD_CONTEXT.enter_context(reuse_freed_memory())  # held for the child's life
    return _stepper(_setting_parts(setting), variant)


def throughput(settings: list[str], rounds: int) -> list[dict]:
    """One row per setting: old/new step and data img/s (see the module docstring)."""
    import numpy as np
    from timm.optim import create_optimizer_v2

    from fewshot.training.loop import make_optimizer
    from fewshot.training.sampling import TwoViews, collate_views
    from fewshot.transforms import train_transform

    rows = []
    for name in settings:
        s = THROUGHPUT_SETTINGS[name]
        parts = _setting_parts(name)
        b, size, cl = s["batch"], s["img_size"], parts["channels_last"]
        flops = step_flops(parts["new_net"], parts["objective"], parts["floats"], parts["labels"], parts["ids"])
        update = median_rounds(
            {
                "old": local(
                    optimizer_step(
                        parts["old_net"],
                        lambda m: create_optimizer_v2(m, opt="adamw", lr=1e-4, weight_decay=0.05, foreach=True),
                    )
                ),
                "new": local(optimizer_step(parts["new_net"], lambda m: make_optimizer(m, lr=1e-4, weight_decay=0.05))),
            },
            rounds,
        )
        children = {variant: Child(_child_step, name, variant) for variant in ("old", "new", "bf16")}
        try:
            step = median_rounds(children, rounds)
        finally:
            for child in children.values():
                child.close()

        if s["data"] == "digits":
            from fewshot.data import load_split

            split = load_split("digits", "train")
        else:
            split = _SyntheticSplit(s["images"])
        keys = [(i, 1000 + i) for i in range(s["images"])]
        made = {}
        for kind, normalize in (("old", True), ("new", False)):
            tf = train_transform(parts["preprocessing"], policy=s["policy"], hflip=s["hflip"], normalize=normalize)
            data = TwoViews(split, np.arange(s["images"]), tf)
            made[kind] = local(lambda data=data, keys=keys: collate_views([data[k] for k in keys]))
        data_t = median_rounds(made, rounds)
        row = {"setting": name, "backbone": s["backbone"], "img_size": size, "batch": b, "channels_last": cl}
        for kind in ("old", "new"):
            row[f"step_{kind}"] = b / step[kind][0]
            row[f"data_{kind}"] = s["images"] / data_t[kind][0]
            row[f"serial_{kind}"] = 1 / (1 / row[f"step_{kind}"] + 1 / row[f"data_{kind}"])
        row["step_bf16"] = b / step["bf16"][0]
        row["params_M"] = sum(p.numel() for p in parts["old_net"].parameters()) / 1e6
        row["gflop_step"] = flops / 1e9
        row["gflops_old"] = flops / 1e9 / step["old"][0]
        row["gflops_new"] = flops / 1e9 / step["new"][0]
        row["opt_old_ms"] = 1e3 * update["old"][0]
        row["opt_new_ms"] = 1e3 * update["new"][0]
        row["step_cpu_x"] = step["old"][1] / step["new"][1]
        row["data_cpu_x"] = data_t["old"][1] / data_t["new"][1]
        rows.append(row)
    return rows


def _published_block_order(net) -> None:
    """Give a Conv-4 net the block forward of the code before issue 18 (ReLU, then max-pool)."""
    from fewshot.backbones.conv4 import _ConvBlock

    for module in net.modules():
        if isinstance(module, _ConvBlock):
            module.forward = lambda x, m=module: m.pool(m.act(m.bn(m.conv(x))))


def optimizer_step(net, make):
    """One optimiser update of a copy of ``net`` (gradients drawn once), as a callable."""
    import copy

    probe = copy.deepcopy(net)
    g = torch.Generator().manual_seed(0)
    for p in probe.parameters():
        p.grad = torch.randn(p.shape, generator=g)
    return make(probe).step


def step_flops(net, objective, views, labels, ids) -> float:
    """Convolution and matrix-product FLOPs of one training step (forward + backward)."""
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    from fewshot.training.loop import compute_loss

    probe = copy.deepcopy(net)
    with FlopCounterMode(display=False) as counter:
        compute_loss(probe, objective, views, labels, ids).total.backward()
    return float(counter.get_total_flops())


def float32_peak(repeats: int = 5) -> float:
    """The fastest float32 GFLOP/s this process reaches on large kernels: a 2048^2 GEMM and
    the 3x3 convolutions of ResNet-12's stages at batch 8 (channels-last, forward)."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    kernels = []
    a, b = torch.randn(2048, 2048, generator=g), torch.randn(2048, 2048, generator=g)
    kernels.append((lambda a=a, b=b: a @ b, 2 * 2048**3))
    for chs, px in ((64, 84), (160, 42), (320, 21), (640, 10)):
        x = torch.randn(8, chs, px, px, generator=g).contiguous(memory_format=torch.channels_last)
        w = torch.randn(chs, chs, 3, 3, generator=g).contiguous(memory_format=torch.channels_last)
        kernels.append((lambda x=x, w=w: F.conv2d(x, w, padding=1), 2 * 8 * px * px * chs * chs * 9))
    best = 0.0
    with torch.inference_mode():
        for fn, flop in kernels:
            fn()
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            best = max(best, flop / min(times) / 1e9)
    return best


def print_throughput(rows: list[dict], rounds: int) -> None:
    print(
        f"\nfine-tuning throughput, CPU, {torch.get_num_threads()} threads, median of {rounds} rounds; "
        "old: contiguous + float32 views, new: channels-last (where on) + uint8 views normalised in the step, "
        "bf16: new + bf16 autocast (opt-in on the CPU)"
    )
    head = (
        f"{'setting':<16} {'backbone':<22} {'px':>3} {'batch':>5} {'c-last':>6} "
        f"{'step old':>9} {'step new':>9} {'x':>5} {'data old':>9} {'data new':>9} {'x':>5} "
        f"{'serial old':>10} {'serial new':>10} {'x':>5} {'step x':>6} {'data x':>6} {'bf16':>7} {'x':>5}"
    )
    print(head)
    print(
        f"{'':<16} {'':<22} {'':>3} {'':>5} {'':>6} {'img/s':>9} {'img/s':>9} {'':>5} {'img/s':>9} {'img/s':>9} "
        f"{'':>5} {'img/s':>10} {'img/s':>10} {'':>5} {'(cpu)':>6} {'(cpu)':>6} {'img/s':>7} {'':>5}"
    )
    for r in rows:
        print(
            f"{r['setting']:<16} {r['backbone']:<22} {r['img_size']:>3} {r['batch']:>5} {'on' if r['channels_last'] else 'off':>6} "
            f"{r['step_old']:>9.1f} {r['step_new']:>9.1f} {r['step_new'] / r['step_old']:>5.2f} "
            f"{r['data_old']:>9.1f} {r['data_new']:>9.1f} {r['data_new'] / r['data_old']:>5.2f} "
            f"{r['serial_old']:>10.1f} {r['serial_new']:>10.1f} {r['serial_new'] / r['serial_old']:>5.2f} "
            f"{r['step_cpu_x']:>6.2f} {r['data_cpu_x']:>6.2f} {r['step_bf16']:>7.1f} {r['step_bf16'] / r['step_old']:>5.2f}"
        )
    print(f"\noptimiser update alone (AdamW), median of {rounds} rounds: old torch foreach, new torch fused")
    print(f"{'setting':<16} {'params M':>8} {'old ms':>8} {'new ms':>8} {'new/old':>7}")
    for r in rows:
        print(
            f"{r['setting']:<16} {r['params_M']:>8.2f} {r['opt_old_ms']:>8.2f} {r['opt_new_ms']:>8.2f} "
            f"{r['opt_new_ms'] / r['opt_old_ms']:>7.2f}"
        )
    peak = float32_peak()
    print(f"\nroofline, float32: conv + matmul FLOPs per step (forward + backward); peak: {peak:.0f} GFLOP/s")
    print(
        f"{'setting':<16} {'GFLOP/step':>10} {'old GFLOP/s':>11} {'new GFLOP/s':>11} {'new/peak':>8} {'1.5x old/peak':>13}"
    )
    for r in rows:
        if r["backbone"] not in ("conv4", "resnet12"):
            continue  # torch's counter overcounts depthwise convolutions' backward
        print(
            f"{r['setting']:<16} {r['gflop_step']:>10.2f} {r['gflops_old']:>11.1f} {r['gflops_new']:>11.1f} "
            f"{r['gflops_new'] / peak:>8.0%} {1.5 * r['gflops_old'] / peak:>13.0%}"
        )
    for r in rows:
        if r["backbone"] in ("conv4", "resnet12"):
            ratio = r["step_new"] / r["step_old"]
            print(
                f"target: {r['backbone']} ({r['setting']}, batch {r['batch']}) CPU training step >= 1.5x faster -> {'met' if ratio >= 1.5 else 'NOT met'} "
                f"({ratio:.2f}x wall-clock, {r['step_cpu_x']:.2f}x in CPU time); opt-in bf16 autocast "
                f"(FinetuneConfig.bf16, --bf16): {r['step_bf16'] / r['step_old']:.2f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--batch", type=int, default=256, help="images per step (two views each)")
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--objectives", default="ce,schane", help="comma-separated; the first is the baseline")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the throughput table")
    parser.add_argument(
        "--settings", default=",".join(THROUGHPUT_SETTINGS), help="throughput settings, comma-separated"
    )
    parser.add_argument("--skip-objectives", action="store_true", help="only the throughput table")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = [name for name in args.settings.split(",") if name]
    unknown = [name for name in settings if name not in THROUGHPUT_SETTINGS]
    if unknown:
        parser.error(f"unknown settings {unknown}; expected some of {', '.join(THROUGHPUT_SETTINGS)}")
    if not args.skip_objectives:
        objective_cost(args)
    if settings:
        print_throughput(throughput(settings, args.rounds), args.rounds)


def objective_cost(args: argparse.Namespace) -> None:
    """The first table: CE vs the contrastive objectives in one step (see the module docstring)."""
    from tqdm import tqdm

    names = args.objectives.split(",")
    g = torch.Generator().manual_seed(0)
    views = torch.randn(args.batch, 2, 3, args.img_size, args.img_size, generator=g)
    labels = torch.randint(0, args.classes, (args.batch,), generator=g)
    ids = torch.arange(args.batch)
    steps, losses = {}, {}
    for name in names:
        net, objective, optimizer, scheduler = build(name, args.backbone, args.img_size, args.classes)
        steps[name] = make_step(net, objective, optimizer, scheduler, views, labels, ids)
        losses[name] = make_loss_only(objective, args.classes, args.batch, net.embed_dim, labels, ids)
    for name in names:  # warm-up
        steps[name]()
        losses[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    loss_times: dict[str, list[float]] = {name: [] for name in names}
    for r in tqdm(range(args.repeats), desc="rounds", leave=False):
        for name in names if r % 2 == 0 else names[::-1]:  # alternate who goes first
            times[name].append(steps[name]())
            loss_times[name].append(losses[name]())

    base = statistics.median(times[names[0]])
    print(
        f"fine-tuning step, {args.backbone} @ {args.img_size}px, batch {args.batch} images x 2 views, "
        f"CPU, {torch.get_num_threads()} threads, median of {args.repeats}"
    )
    print(f"{'objective':<10} {'steps/s':>8} {'ms/step':>9} {'overhead':>9} {'loss ms':>8} {'loss share':>10}")
    for name in names:
        t = statistics.median(times[name])
        lt = statistics.median(loss_times[name])
        overhead = "" if name == names[0] else f"{100 * (t / base - 1):+.1f}%"
        print(f"{name:<10} {1 / t:>8.3f} {1e3 * t:>9.1f} {overhead:>9} {1e3 * lt:>8.1f} {100 * lt / base:>9.2f}%")
    if len(names) > 1:
        ce_loss = statistics.median(loss_times[names[0]])
        worst = max((statistics.median(loss_times[n]) - ce_loss) / base for n in names[1:])
        print(
            f"target: contrastive term <= 5% of a step -> {'met' if worst <= 0.05 else 'NOT met'} "
            f"(largest: {100 * worst:.2f}% of the CE step)"
        )


if __name__ == "__main__":
    main()
