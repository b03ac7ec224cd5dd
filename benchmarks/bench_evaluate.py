"""Benchmark: batched logistic regression vs scikit-learn's per-episode loop.

Synthetic class-clustered post-ReLU features (20 classes x 600, d = 640), 3,000 episodes,
5-way, 15 queries, 1- and 5-shot, measured side by side in one run:

- time of the batched solver (``logreg``) vs scikit-learn with default settings (the papers'
  protocol) -> speed-up (target >= 20x for both shots);
- mean accuracy difference vs scikit-learn default (target within 0.05 percentage points);
- per-episode accuracy agreement vs scikit-learn at tol=1e-10, the true optimum of the same
  objective (target >= 99% identical);
- the full protocol on one dataset (2 shots x 3 seeds x 3,000 episodes) end to end
  (target < 5 s).

Usage: python benchmarks/bench_evaluate.py [--episodes 3000]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from fewshot.episodes import sample_episodes
from fewshot.evaluation import evaluate, run_protocol


def synthetic_features(n_classes=20, per_class=600, d=640, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, d))
    labels = np.repeat(np.arange(n_classes), per_class)
    feats = np.maximum(0.35 * centers[labels] + rng.normal(size=(labels.size, d)), 0)
    return feats.astype(np.float32), labels


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=3000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    feats, labels = synthetic_features()
    E = args.episodes
    print(f"torch threads: {torch.get_num_threads()}; features {feats.shape}; {E} episodes, 5-way, 15 queries\n")
    rows = []
    for shot in (1, 5):
        ep = sample_episodes(labels, 5, shot, 15, E, seed=0)
        evaluate(feats, labels, ep[:50])  # warm-up
        ours, t_ours = timed(lambda: evaluate(feats, labels, ep, "logreg"))
        sk, t_sk = timed(lambda: evaluate(feats, labels, ep, "logreg-sklearn"))
        tight, t_tight = timed(lambda: evaluate(feats, labels, ep, "logreg-sklearn", tol=1e-10, max_iter=10_000))
        rows.append(
            (
                shot, t_ours, t_sk, t_sk / t_ours, 100 * ours.mean(), 100 * sk.mean(),
                100 * (ours.mean() - sk.mean()), 100 * np.mean(ours == tight), 100 * np.mean(sk == tight), t_tight,
            )
        )
    head = (
        f"{'shot':>4} {'batched s':>9} {'sklearn s':>9} {'speed-up':>8} {'acc ours %':>10} {'acc sk %':>9} "
        f"{'diff pp':>8} {'= tight % (ours)':>16} {'= tight % (sk default)':>22} {'tight s':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r[0]:>4} {r[1]:>9.3f} {r[2]:>9.2f} {r[3]:>7.1f}x {r[4]:>10.3f} {r[5]:>9.3f} {r[6]:>+8.4f} "
            f"{r[7]:>16.2f} {r[8]:>22.2f} {r[9]:>8.1f}"
        )
    _, t_sample = timed(lambda: sample_episodes(labels, 5, 5, 15, E, seed=1))
    print(f"\nsample_episodes: {E} episodes (5-way 5-shot 15 queries) from 20 x 600 labels: {t_sample:.3f} s")
    _, t_full = timed(lambda: run_protocol(feats, labels, shots=(1, 5), seeds=(0, 1, 2), n_episodes=E, progress=False))
    print(f"full protocol (2 shots x 3 seeds x {E} episodes, sampling included): {t_full:.2f} s (target < 5 s)")


if __name__ == "__main__":
    main()
