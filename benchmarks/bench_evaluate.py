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



# --------------------------------------------------------------------------- classifiers vs their references (issue 17)
#
# python benchmarks/bench_evaluate.py classifiers [--episodes 300]
#
# Every classifier added for LibFewShot / easyfsl / RFS users, batched (fewshot.evaluate) vs the
# reference's per-episode loop on the *same* episodes: scikit-learn for nn, svm, ridge; easyfsl
# 1.5.0 (default hyper-parameters) for simpleshot and the transductive methods (skipped when
# easyfsl is absent). PT-MAP runs on L2-normalised float64 features on both sides: in float32
# (and on raw features) easyfsl's exp(-10 * cost) underflows to 0/0 = NaN.


def _sklearn_loop(name):
    from sklearn.linear_model import RidgeClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler, normalize
    from sklearn.svm import SVC

    def run(S, ys, Q):
        if name == "nn":
            return KNeighborsClassifier(n_neighbors=1, metric="cosine", algorithm="brute").fit(S, ys).predict(Q)
        if name == "ridge":
            return RidgeClassifier(alpha=50.0, fit_intercept=False).fit(S, ys).predict(Q)
        clf = make_pipeline(StandardScaler(), SVC(kernel="linear", C=1.0)).fit(normalize(S), ys)
        return clf.predict(normalize(Q))

    return run


def _easyfsl_loop(name, base_mean):
    import easyfsl.methods as m

    model = {
        "simpleshot": lambda: m.SimpleShot(feature_centering=torch.from_numpy(base_mean), feature_normalization=2),
        "bd-cspn": m.BDCSPN,
        "laplacianshot": m.LaplacianShot,
        "tim": m.TIM,
        "pt-map": m.PTMAP,
    }[name]()

    def run(S, ys, Q):
        model.process_support_set(torch.from_numpy(S), torch.from_numpy(ys))
        return model(torch.from_numpy(Q)).detach().argmax(-1).numpy()

    return run


def _reference_accuracy(run, feats, ep):
    ys = ep.support_labels
    return np.array([(run(feats[s], ys, feats[q]) == ep.query_labels).mean() for s, q in zip(ep.support, ep.query)])


def bench_classifiers(n_episodes: int = 300) -> list[tuple]:
    """Time every new classifier against its reference loop; returns the table rows."""
    try:
        import easyfsl  # noqa: F401

        have_easyfsl = True
    except ImportError:
        have_easyfsl = False
    feats, labels = synthetic_features()
    base_feats, _ = synthetic_features(seed=1)
    base_mean = base_feats.mean(0)
    unit = feats.astype(np.float64) / np.linalg.norm(feats.astype(np.float64), axis=1, keepdims=True)
    cases = [("simpleshot", "easyfsl"), ("nn", "scikit-learn"), ("svm", "scikit-learn"), ("ridge", "scikit-learn"),
             ("bd-cspn", "easyfsl"), ("laplacianshot", "easyfsl"), ("tim", "easyfsl"), ("pt-map", "easyfsl")]
    rows = []
    for shot in (1, 5):
        ep = sample_episodes(labels, 5, shot, 15, n_episodes, seed=0)
        for name, ref_name in cases:
            if ref_name == "easyfsl" and not have_easyfsl:
                continue
            X = unit if name == "pt-map" else feats
            kwargs = {"base_mean": base_mean, "metric": "cosine"} if name == "simpleshot" else {}
            evaluate(X, labels, ep[:20], name, **kwargs)  # warm-up
            ours, t_ours = timed(lambda: evaluate(X, labels, ep, name, **kwargs))
            run = _easyfsl_loop(name, base_mean) if ref_name == "easyfsl" else _sklearn_loop(name)
            ref, t_ref = timed(lambda: _reference_accuracy(run, X, ep))
            rows.append((name, ref_name, shot, t_ours, t_ref, t_ref / t_ours, 100 * ours.mean(), 100 * ref.mean(), 100 * np.mean(ours == ref)))
    return rows


def main_classifiers(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="new classifiers vs their reference loops")
    parser.add_argument("--episodes", type=int, default=300)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    print(f"torch threads: {torch.get_num_threads()}; features (12000, 640); {args.episodes} identical episodes per shot, 5-way, 15 queries\n")
    head = f"{'classifier':<14} {'reference':<12} {'shot':>4} {'ours s':>8} {'ref s':>8} {'speed-up':>8} {'acc ours %':>10} {'acc ref %':>9} {'same acc %':>10}"
    print(head)
    print("-" * len(head))
    for r in bench_classifiers(args.episodes):
        print(f"{r[0]:<14} {r[1]:<12} {r[2]:>4} {r[3]:>8.3f} {r[4]:>8.2f} {r[5]:>7.1f}x {r[6]:>10.3f} {r[7]:>9.3f} {r[8]:>10.2f}")


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["classifiers"]:
        main_classifiers(sys.argv[2:])
    else:
        main()
