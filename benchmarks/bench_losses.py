"""Speed and memory of the contrastive losses: forward + backward at B=2048, d=768, float32, CPU.

Each loss is timed next to ``supcon_loss`` and next to the bare similarity matmul ``z @ z.T``
plus its backward (two more matmuls), which every loss has to pay for. Targets (issue 3):
``schane_loss`` <= 1.3x ``supcon_loss``, and no loss above 3x the bare matmul.

- time: median (and minimum) wall-clock of ``--repeats`` forward+backward passes after one
  warm-up, in this process, with ``torch.set_num_threads(--threads)``; the cases take turns
  round by round. Ratios are ratios of medians. On a shared machine the minimum is the better
  estimate of the uncontended cost.
- peak: how far the process's peak resident set size rises above its current size during one
  cold forward+backward, in a fresh subprocess per case, after the inputs exist and after a
  tiny warm-up call (Linux: VmHWM reset through /proc/self/clear_refs). It counts every page
  the process touches, allocator slack and library buffers included, so it is an upper bound
  on the tensors alive at the peak; the inputs (6 MiB of embeddings) are not counted.

Usage: ``python benchmarks/bench_losses.py [--batch 2048] [--dim 768] [--repeats 11]``
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from tqdm import tqdm

CASES: dict[str, str] = {
    "matmul": "bare z @ z.T + backward",
    "supcon": "supcon_loss",
    "simclr": "simclr_loss",
    "schane": "schane_loss",
    "schane_detach": "schane_loss(detach_weights=True)",
    "hscl": "hscl_loss(beta=1)",
    "hscl_b5": "hscl_loss(beta=5)",
}


def make_inputs(batch: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two views of ``batch // 2`` images from 64 classes: embeddings, labels, instance ids."""
    gen = torch.Generator().manual_seed(seed)
    images = batch // 2
    image_labels = torch.randint(0, 64, (images,), generator=gen)
    labels = image_labels.repeat(2)
    instance_ids = torch.arange(images).repeat(2)
    x = torch.randn(batch, dim, generator=gen).requires_grad_(True)
    return x, labels, instance_ids


def make_step(case: str, x: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor) -> Callable[[], None]:
    from fewshot.losses import hscl_loss, schane_loss, simclr_loss, supcon_loss

    tau = 0.5
    if case == "matmul":
        upstream = torch.randn(x.shape[0], x.shape[0], generator=torch.Generator().manual_seed(1))

        def step() -> None:
            (x @ x.t()).backward(upstream)

        return step
    fn: Callable[[], torch.Tensor] = {
        "supcon": lambda: supcon_loss(x, labels, tau),
        "simclr": lambda: simclr_loss(x, ids, tau),
        "schane": lambda: schane_loss(x, labels, tau),
        "schane_detach": lambda: schane_loss(x, labels, tau, detach_weights=True),
        "hscl": lambda: hscl_loss(x, labels, tau, beta=1.0),
        "hscl_b5": lambda: hscl_loss(x, labels, tau, beta=5.0),
    }[case]

    def step() -> None:
        fn().backward()

    return step


def time_cases(cases: list[str], batch: int, dim: int, repeats: int) -> dict[str, tuple[float, float]]:
    """(median, minimum) seconds of one forward+backward per case.

    The cases take turns (one pass of each per round), so a burst of load from other
    processes spreads over all of them instead of skewing one.
    """
    x, labels, ids = make_inputs(batch, dim)
    steps = {case: make_step(case, x, labels, ids) for case in cases}
    times: dict[str, list[float]] = {case: [] for case in cases}
    for step in steps.values():  # warm-up
        step()
    for _ in tqdm(range(repeats), desc="bench_losses", leave=False):
        for case, step in steps.items():
            x.grad = None
            start = time.perf_counter()
            step()
            times[case].append(time.perf_counter() - start)
    return {case: (statistics.median(values), min(values)) for case, values in times.items()}


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _peak_child(case: str, batch: int, dim: int, threads: int) -> None:
    """Subprocess body: print how far peak RSS rises (bytes) over one cold forward+backward.

    On Linux the peak (VmHWM) is reset to the current RSS just before the step by writing 5
    to /proc/self/clear_refs; elsewhere the rise of ru_maxrss is used (0 if an earlier peak,
    such as importing torch, was higher).
    """
    torch.set_num_threads(threads)
    small = make_inputs(64, 16)
    make_step(case, *small)()  # load kernels and thread pools at a negligible size
    x, labels, ids = make_inputs(batch, dim)
    step = make_step(case, x, labels, ids)
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        before = _rss_kib("VmRSS")
        step()
        peak = _rss_kib("VmHWM") - before
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        step()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({"peak_bytes": peak * 1024}))


def peak_case(case: str, batch: int, dim: int, threads: int) -> float:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            case,
            "--batch",
            str(batch),
            "--dim",
            str(dim),
            "--threads",
            str(threads),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=sorted(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _peak_child(args.child, args.batch, args.dim, args.threads)
        return 0

    torch.set_num_threads(args.threads)
    seconds = time_cases(list(CASES), args.batch, args.dim, args.repeats)
    peaks = {case: peak_case(case, args.batch, args.dim, args.threads) for case in CASES}

    t_matmul, t_supcon = seconds["matmul"][0], seconds["supcon"][0]
    print(
        f"forward+backward, B={args.batch}, d={args.dim}, float32, CPU, {args.threads} threads, "
        f"{args.repeats} repeats; torch {torch.__version__}"
    )
    header = f"{'case':<34} {'median ms':>9} {'min ms':>7} {'x supcon':>9} {'x matmul':>9} {'peak MiB':>9}"
    print(header)
    print("-" * len(header))
    for case, (median, fastest) in seconds.items():
        print(
            f"{CASES[case]:<34} {median * 1e3:9.1f} {fastest * 1e3:7.1f} "
            f"{median / t_supcon:9.2f} {median / t_matmul:9.2f} {peaks[case] / 2**20:9.1f}"
        )
    ratio = seconds["schane"][0] / t_supcon
    worst = max(m for case, (m, _) in seconds.items() if case != "matmul") / t_matmul
    print(
        f"\nratios of medians. target schane <= 1.3x supcon: {ratio:.2f}x "
        f"{'OK' if ratio <= 1.3 else 'MISSED'}; target every loss <= 3x matmul: worst "
        f"{worst:.2f}x {'OK' if worst <= 3 else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
