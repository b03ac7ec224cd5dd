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

Usage: ``python benchmarks/bench_finetune.py [--batch 256] [--img-size 32] [--repeats 7]
[--threads N] [--objectives ce,schane,supcon]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--batch", type=int, default=256, help="images per step (two views each)")
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--objectives", default="ce,schane", help="comma-separated; the first is the baseline")
    args = parser.parse_args()
    from tqdm import tqdm

    if args.threads:
        torch.set_num_threads(args.threads)
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
        print(f"target: contrastive term <= 5% of a step -> {'met' if worst <= 0.05 else 'NOT met'} "
              f"(largest: {100 * worst:.2f}% of the CE step)")


if __name__ == "__main__":
    main()
