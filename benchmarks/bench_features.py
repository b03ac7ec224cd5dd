"""Feature extraction throughput: extract_features vs a bare model(x) loop; cache-hit time.

A timm ``resnet18`` (random init, nothing downloaded) at 84 px on the CPU embeds an in-memory
split of 84×84 uint8 images through :func:`fewshot.features.extract_features` (PIL decode,
resize, crop, batched normalisation, DataLoader), and, as the reference, the same images
already transformed into normalised float tensors through a bare ``model(x)`` loop under
``torch.inference_mode``. Target: extract_features within 10% of the bare loop.
Then :func:`fewshot.features.extract_cached` is timed on a hit (no forward pass).

    python benchmarks/bench_features.py [--n 512] [--batch-size 128] [--repeats 5] [--workers 0 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from fewshot.backbones import create_backbone
from fewshot.data._base import ImageSplit
from fewshot.features import extract_cached, extract_features
from fewshot.transforms import eval_transform, resolve_preprocessing


class MemorySplit(ImageSplit):
    """N random 84×84 RGB images held as one uint8 array."""

    def __init__(self, n: int, size: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.pixels = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        labels = np.arange(n) % 20
        super().__init__("bench", "test", labels, [f"c{i}" for i in range(20)], source="memory")

    def _load(self, index: int) -> Image.Image:
        return Image.fromarray(self.pixels[index])


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _best(fn, repeats: int) -> tuple[float, list[float]]:
    times = [_time(fn) for _ in range(repeats)]
    return min(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--n", type=int, default=512, help="images (default 512)")
    parser.add_argument("--img-size", type=int, default=84)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed rounds")
    parser.add_argument("--workers", type=int, nargs="*", default=[0, 1], help="loader workers to try")
    args = parser.parse_args()

    split = MemorySplit(args.n, args.img_size)
    model = create_backbone(args.model, seed=0).eval()
    pp = resolve_preprocessing(model, img_size=args.img_size)
    transform = eval_transform(pp)
    tensors = torch.stack([transform(split.image(i)) for i in range(len(split))])
    batches = list(torch.split(tensors, args.batch_size))

    def bare() -> None:
        with torch.inference_mode():
            for x in batches:
                model(x)

    def extract(workers: int) -> None:
        extract_features(model, split, preprocessing=pp, batch_size=args.batch_size,
                         num_workers=workers, device="cpu", progress=False)

    bare()  # warm-up (allocator, oneDNN primitives)
    for w in args.workers:
        extract(w)
    # interleave the paths so that drifting machine load affects them alike
    runs: dict[str, list[float]] = {"bare model(x) loop": []}
    runs.update({f"extract_features, workers={w}": [] for w in args.workers})
    for _ in range(args.repeats):
        runs["bare model(x) loop"].append(_time(bare))
        for w in args.workers:
            runs[f"extract_features, workers={w}"].append(_time(lambda w=w: extract(w)))
    rows = [(name, min(ts), ts) for name, ts in runs.items()]

    with tempfile.TemporaryDirectory() as cache:
        def cached(model_id=None):
            return extract_cached(model, split, cache, preprocessing=pp, batch_size=args.batch_size,
                                  device="cpu", progress=False, model_id=model_id)

        t_miss = _time(cached)
        t_hit, _ = _best(cached, args.repeats)
        cached("checkpoint-sha256")  # a miss: another key
        t_hit_id, _ = _best(lambda: cached("checkpoint-sha256"), args.repeats)
        assert cached()[1] and cached("checkpoint-sha256")[1]

    print(f"{args.model} at {args.img_size} px, {args.n} images, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}, {args.repeats} interleaved rounds")
    print(f"{'path':36s} {'best s':>7s} {'images/s':>9s} {'median s':>9s} {'vs bare':>8s}")
    bare_runs = runs["bare model(x) loop"]
    for name, t, all_t in rows:
        # per-round ratio to the bare loop timed just before it: robust to drifting load
        ratio = statistics.median(v / b for v, b in zip(all_t, bare_runs))
        print(f"{name:36s} {t:7.3f} {args.n / t:9.1f} {statistics.median(all_t):9.3f} {ratio - 1:+8.1%}")
    print(f"{'extract_cached, miss':36s} {t_miss:7.3f}")
    print(f"{'extract_cached, hit (hash weights)':36s} {t_hit:7.3f}")
    print(f"{'extract_cached, hit (model_id given)':36s} {t_hit_id:7.3f}")
    print("vs bare: median over rounds of (time / bare time of the same round) - 1; "
          "target: extract_features within +10%")


if __name__ == "__main__":
    main()
