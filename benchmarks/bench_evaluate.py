"""Benchmark: batched logistic regression vs scikit-learn's per-episode loop, quiet and loaded.

Synthetic class-clustered post-ReLU features (20 classes x 600, d = 640), 3,000 episodes,
5-way, 15 queries, 1- and 5-shot, measured side by side in one run:

- time of the batched solver (``logreg``) vs scikit-learn with default settings (the papers'
  protocol) -> speed-up (target >= 20x for both shots), on a quiet machine and while the
  benchmark itself loads every core with busy processes (``--load N``, default: one per core);
- mean accuracy difference vs scikit-learn default (target within 0.05 percentage points);
- per-episode accuracy agreement vs scikit-learn at tol=1e-10, the true optimum of the same
  objective (target >= 99% identical);
- the Table-1 protocol on frozen features (4 datasets x 2 shots x 3 seeds x 3,000 episodes)
  end to end, quiet and loaded (targets < 20 s and < 60 s), for fewshot's default OpenMP
  setting (``OMP_WAIT_POLICY=PASSIVE``, set when fewshot is imported) and for OpenMP's own
  default (``ACTIVE``: idle threads busy-wait), with torch's default thread count and with 1.

Each setting runs in a fresh interpreter, because OpenMP reads ``OMP_WAIT_POLICY`` once, when
torch loads it. The machine's own load average is printed: "quiet" means "no load added by
the benchmark", not "idle".

Then (issue 18) the second method's ``evaluate_to_directory`` (``fewshot evaluate``) on one
features file, 5-way 1/5-shot x seeds 0, 1, 2 x 3,000 episodes, with and without the episode
cache (the first method has filled it), side by side (target >= 1.5x faster with the cache).

Usage: python benchmarks/bench_evaluate.py [--episodes 3000] [--datasets 4] [--load N] [--no-tight] [--quick]
       python benchmarks/bench_evaluate.py episode-cache [--episodes 3000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def synthetic_features(n_classes=20, per_class=600, d=640, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, d))
    labels = np.repeat(np.arange(n_classes), per_class)
    feats = np.maximum(0.35 * centers[labels] + rng.normal(size=(labels.size, d)), 0)
    return feats.astype(np.float32), labels


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


# ---------------------------------------------------------------------------- load


def _spin(stop) -> None:  # one busy core, like another job's compute thread
    x = 1.0
    while not stop.is_set():
        for _ in range(10_000):
            x = x * 1.0000001 + 1e-9


class Load:
    """``n`` busy processes while inside the ``with`` block (0: no load)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.stop = mp.Event()
        self.procs: list[mp.Process] = []

    def __enter__(self) -> Load:
        for _ in range(self.n):
            p = mp.Process(target=_spin, args=(self.stop,), daemon=True)
            p.start()
            self.procs.append(p)
        time.sleep(0.5 if self.n else 0)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.terminate()


# ---------------------------------------------------------------------------- one setting, in a child


def worker(spec: dict) -> dict:
    """Time what ``spec`` asks for in this interpreter (whose environment fixes OpenMP)."""
    import numpy as np
    import torch

    import fewshot  # noqa: F401  (sets the OpenMP default when the parent did not)
    from fewshot.episodes import sample_episodes
    from fewshot.evaluation import evaluate, run_protocol

    warnings.simplefilter("ignore")
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    feats, labels = synthetic_features()
    E = spec["episodes"]
    out: dict = {"threads": torch.get_num_threads(), "policy": os.environ.get("OMP_WAIT_POLICY")}
    eps = {shot: sample_episodes(labels, 5, shot, 15, E, seed=0) for shot in (1, 5)}
    evaluate(feats, labels, eps[1][:50])  # warm-up
    with Load(spec["load"]):
        for shot in (1, 5):
            acc, t = timed(lambda: evaluate(feats, labels, eps[shot], "logreg"))
            out[f"batched_{shot}"] = t
            out[f"acc_{shot}"] = float(acc.mean())
            if spec.get("sklearn"):
                m = min(E, spec.get("sk_episodes") or E)  # a per-episode loop: time scales with episodes
                sk, t_sk = timed(lambda: evaluate(feats, labels, eps[shot][:m], "logreg-sklearn"))
                out[f"sklearn_{shot}"] = t_sk * E / m
                out[f"acc_sk_{shot}"] = float(sk.mean())
                out[f"acc_{shot}_sk_subset"] = float(acc[:m].mean())
                if spec.get("tight"):
                    tight = evaluate(feats, labels, eps[shot], "logreg-sklearn", tol=1e-10, max_iter=10_000)
                    out[f"agree_{shot}"] = float(np.mean(acc == tight))
                    out[f"agree_sk_{shot}"] = float(np.mean(sk == tight))
        if spec.get("datasets"):
            t0 = time.perf_counter()
            for _ in range(spec["datasets"]):
                run_protocol(feats, labels, shots=(1, 5), seeds=(0, 1, 2), n_episodes=E, progress=False)
            out["protocol"] = time.perf_counter() - t0
    return out


def run_child(spec: dict, policy: str | None) -> dict:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    res = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], env=env, capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        raise SystemExit(f"worker failed ({spec}, {policy}):\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=3000)
    parser.add_argument("--datasets", type=int, default=4, help="datasets in the Table-1 protocol (default 4)")
    parser.add_argument("--load", type=int, default=os.cpu_count() or 1, help="busy processes of the loaded runs")
    parser.add_argument(
        "--sk-episodes",
        type=int,
        default=None,
        help="time scikit-learn's loop on the first N episodes and scale to all (default: all)",
    )
    parser.add_argument("--no-tight", action="store_true", help="skip the tol=1e-10 reference (slow under load)")
    parser.add_argument("--quick", action="store_true", help="--no-tight, and only the fewshot-default and ACTIVE rows")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    E, L = args.episodes, args.load
    sk = f"; scikit-learn timed on {args.sk_episodes} episodes, scaled" if args.sk_episodes else ""
    print(
        f"features (12000, 640); {E} episodes, 5-way, 15 queries{sk}; {os.cpu_count()} cores; "
        f"loaded = {L} busy processes added; load average before: {os.getloadavg()[0]:.1f}\n"
    )

    # batched vs scikit-learn, quiet and loaded, in fewshot's default setting
    rows = {}
    for name, load in (("quiet", 0), ("loaded", L)):
        rows[name] = run_child(
            {
                "episodes": E,
                "load": load,
                "sklearn": True,
                "sk_episodes": args.sk_episodes,
                "tight": name == "quiet" and not (args.quick or args.no_tight),
            },
            None,
        )
    q, l_ = rows["quiet"], rows["loaded"]
    head = (
        f"{'shot':>4} | {'batched s':>9} {'sklearn s':>9} {'speed-up':>8} | {'batched s':>9} {'sklearn s':>9} "
        f"{'speed-up':>8} | {'acc ours %':>10} {'acc sk %':>9} {'diff pp':>8}"
    )
    print(f"{'':>4} | {'quiet':^28} | {'loaded':^28} | accuracy (quiet, episodes sklearn ran)")
    print(head)
    print("-" * len(head))
    for shot in (1, 5):
        print(
            f"{shot:>4} | {q[f'batched_{shot}']:>9.3f} {q[f'sklearn_{shot}']:>9.2f} "
            f"{q[f'sklearn_{shot}'] / q[f'batched_{shot}']:>7.1f}x | {l_[f'batched_{shot}']:>9.3f} "
            f"{l_[f'sklearn_{shot}']:>9.2f} {l_[f'sklearn_{shot}'] / l_[f'batched_{shot}']:>7.1f}x | "
            f"{100 * q[f'acc_{shot}_sk_subset']:>10.3f} {100 * q[f'acc_sk_{shot}']:>9.3f} "
            f"{100 * (q[f'acc_{shot}_sk_subset'] - q[f'acc_sk_{shot}']):>+8.4f}"
        )
    if "agree_1" in q:
        print(
            "\nper-episode agreement with scikit-learn at tol=1e-10: "
            + ", ".join(
                f"{s}-shot ours {100 * q[f'agree_{s}']:.2f}% / sklearn default {100 * q[f'agree_sk_{s}']:.2f}%"
                for s in (1, 5)
            )
        )

    # the Table-1 protocol, quiet and loaded, per OpenMP setting
    if args.datasets:
        settings = [("PASSIVE (fewshot default)", None, None), ("ACTIVE (OpenMP default)", "ACTIVE", None)]
        if not args.quick:
            settings += [("PASSIVE, 1 thread", None, 1), ("ACTIVE, 1 thread", "ACTIVE", 1)]
        print(
            f"\nTable-1 protocol on frozen features: {args.datasets} datasets x 2 shots x 3 seeds x {E} episodes "
            "(targets: < 20 s quiet, < 60 s loaded)"
        )
        print(f"{'setting':<28} {'threads':>7} {'quiet s':>8} {'loaded s':>9} {'5-shot quiet/loaded s':>22}")
        for label, policy, threads in settings:
            res = {
                n: run_child({"episodes": E, "load": load, "datasets": args.datasets, "threads": threads}, policy)
                for n, load in (("quiet", 0), ("loaded", L))
            }
            print(
                f"{label:<28} {res['quiet']['threads']:>7} {res['quiet']['protocol']:>8.1f} {res['loaded']['protocol']:>9.1f} "
                f"{res['quiet']['batched_5']:>10.2f} / {res['loaded']['batched_5']:<9.2f}"
            )
    print()
    main_episode_cache(["--episodes", str(E)])
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


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
    import torch

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
    import numpy as np

    ys = ep.support_labels
    return np.array([(run(feats[s], ys, feats[q]) == ep.query_labels).mean() for s, q in zip(ep.support, ep.query)])


def bench_classifiers(n_episodes: int = 300) -> list[tuple]:
    """Time every new classifier against its reference loop; returns the table rows."""
    import numpy as np

    from fewshot.episodes import sample_episodes
    from fewshot.evaluation import evaluate

    try:
        import easyfsl  # noqa: F401

        have_easyfsl = True
    except ImportError:
        have_easyfsl = False
    feats, labels = synthetic_features()
    base_feats, _ = synthetic_features(seed=1)
    base_mean = base_feats.mean(0)
    unit = feats.astype(np.float64) / np.linalg.norm(feats.astype(np.float64), axis=1, keepdims=True)
    cases = [
        ("simpleshot", "easyfsl"),
        ("nn", "scikit-learn"),
        ("svm", "scikit-learn"),
        ("ridge", "scikit-learn"),
        ("bd-cspn", "easyfsl"),
        ("laplacianshot", "easyfsl"),
        ("tim", "easyfsl"),
        ("pt-map", "easyfsl"),
    ]
    rows = []
    for shot in (1, 5):
        ep = sample_episodes(labels, 5, shot, 15, n_episodes, seed=0)
        for name, ref_name in cases:
            if ref_name == "easyfsl" and not have_easyfsl:
                continue
            X = unit if name == "pt-map" else feats
            kwargs = {"base_mean": base_mean, "metric": "cosine"} if name == "simpleshot" else {}
            evaluate(X, labels, ep[:20], name, **kwargs)  # warm-up
            ours, t_ours = timed(lambda X=X, ep=ep, name=name, kwargs=kwargs: evaluate(X, labels, ep, name, **kwargs))
            run = _easyfsl_loop(name, base_mean) if ref_name == "easyfsl" else _sklearn_loop(name)
            ref, t_ref = timed(lambda run=run, X=X, ep=ep: _reference_accuracy(run, X, ep))
            rows.append(
                (
                    name,
                    ref_name,
                    shot,
                    t_ours,
                    t_ref,
                    t_ref / t_ours,
                    100 * ours.mean(),
                    100 * ref.mean(),
                    100 * np.mean(ours == ref),
                )
            )
    return rows


def main_classifiers(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="new classifiers vs their reference loops")
    parser.add_argument("--episodes", type=int, default=300)
    args = parser.parse_args(argv)
    import torch

    warnings.simplefilter("ignore")
    print(
        f"torch threads: {torch.get_num_threads()}; features (12000, 640); {args.episodes} identical episodes per shot, 5-way, 15 queries\n"
    )
    head = f"{'classifier':<14} {'reference':<12} {'shot':>4} {'ours s':>8} {'ref s':>8} {'speed-up':>8} {'acc ours %':>10} {'acc ref %':>9} {'same acc %':>10}"
    print(head)
    print("-" * len(head))
    for r in bench_classifiers(args.episodes):
        print(
            f"{r[0]:<14} {r[1]:<12} {r[2]:>4} {r[3]:>8.3f} {r[4]:>8.2f} {r[5]:>7.1f}x {r[6]:>10.3f} {r[7]:>9.3f} {r[8]:>10.2f}"
        )


# --------------------------------------------------------------------------- the episode cache (issue 18)
#
# python benchmarks/bench_evaluate.py episode-cache [--episodes 3000] [--repeats 3]


def bench_episode_cache(n_episodes: int = 3000, repeats: int = 3, classifiers=("logreg", "prototype")) -> list[tuple]:
    """Seconds of a second method's ``evaluate_to_directory`` without / with the episode cache.

    The first method (logreg) fills the cache; then, per classifier, the two settings alternate
    ``repeats`` times (so load drifts hit both alike). Returns rows
    ``(classifier, [seconds without], [seconds with], sampling seconds of one protocol)``.
    """
    import tempfile

    import numpy as np

    from fewshot.episodes import sample_episodes
    from fewshot.pipeline import evaluate_to_directory
    from fewshot.protocol import EvalProtocol

    feats, labels = synthetic_features()
    protocol = EvalProtocol(ways=5, shots=(1, 5), queries=15, episodes=n_episodes, seeds=(0, 1, 2))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "features.npz", features=feats, labels=labels, dataset="synthetic", split="test")
        cache = tmp / "episode-cache"
        evaluate_to_directory(tmp / "features.npz", tmp / "first", protocol, episode_cache_dir=cache, progress=False)
        _, t_sample = timed(
            lambda: [sample_episodes(labels, 5, s, 15, n_episodes, seed) for s in (1, 5) for seed in (0, 1, 2)]
        )
        rows = []
        for name in classifiers:
            without, with_ = [], []
            for _ in range(repeats):
                for use, times in ((False, without), (True, with_)):
                    _, t = timed(
                        lambda: evaluate_to_directory(
                            tmp / "features.npz",
                            tmp / f"{name}-{use}",
                            protocol,
                            classifier=name,
                            episode_cache_dir=cache,
                            use_episode_cache=use,
                            progress=False,
                        )
                    )
                    times.append(t)
            rows.append((name, without, with_, t_sample))
    return rows


def main_episode_cache(argv: list[str] | None = None) -> None:
    import numpy as np
    import torch

    import fewshot  # noqa: F401  (before torch: sets fewshot's OpenMP default)

    parser = argparse.ArgumentParser(description="second method's evaluate with and without the episode cache")
    parser.add_argument("--episodes", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    print(
        f"second method's evaluate_to_directory: features (12000, 640), 5-way 1/5-shot x seeds 0 1 2 x "
        f"{args.episodes} episodes, 15 queries; torch threads {torch.get_num_threads()}; median (min) of "
        f"{args.repeats} alternating runs (target: >= 1.5x faster with the cache)"
    )
    head = f"{'classifier':<10} {'no cache s':>14} {'cache s':>14} {'speed-up':>8} {'sampling alone s':>16}"
    print(head)
    print("-" * len(head))
    for name, without, with_, t_sample in bench_episode_cache(args.episodes, args.repeats):
        a, b = float(np.median(without)), float(np.median(with_))
        print(
            f"{name:<10} {a:>7.2f} ({min(without):>5.2f}) {b:>7.2f} ({min(with_):>5.2f}) {a / b:>7.2f}x {t_sample:>16.2f}"
        )


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["classifiers"]:
        main_classifiers(sys.argv[2:])
    elif sys.argv[1:2] == ["episode-cache"]:
        main_episode_cache(sys.argv[2:])
    else:
        main()
