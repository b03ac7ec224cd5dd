"""Score frozen features on few-shot episodes.

:func:`evaluate` returns one accuracy per episode; :func:`run_protocol` runs the standard
protocol (shots x seeds) and returns a tidy table, one row per episode, with the fingerprints
that let later comparisons check they pair identical tasks on identical features.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from fewshot._device import resolve_device
from fewshot._io import write_bytes
from fewshot._validate import check_int
from fewshot.classifiers import EpisodeClassifier, create_classifier
from fewshot.episode_cache import cached_episodes, store_episodes
from fewshot.episodes import Episodes, check_sizes, episodes_filename, labels_fingerprint, sample_episodes
from fewshot.features import FeatureSet, validate_features
from fewshot.results import EPISODE_COLUMNS
from fewshot.runs import check_run_name

logger = logging.getLogger(__name__)
__all__ = ["evaluate", "run_protocol"]


def _check_episodes_match(labels: np.ndarray, episodes: Episodes) -> None:
    n = labels.shape[0]
    for name in ("support", "query"):
        idx = getattr(episodes, name)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"episodes index item {int(idx.max())} but there are only {n} labels")
    expected = np.repeat(episodes.classes, episodes.n_shot, axis=1)
    if not np.array_equal(labels[episodes.support], expected):
        raise ValueError("episodes do not match these labels (were they sampled from another features file?)")


def evaluate(
    features: np.ndarray | torch.Tensor,
    labels: np.ndarray,
    episodes: Episodes,
    classifier: str | EpisodeClassifier = "logreg",
    device: str | torch.device | None = None,
    batch_size: int = 1000,
    progress: bool | None = False,
    return_per_class: bool = False,
    **classifier_kwargs: Any,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Per-episode accuracy of a classifier fitted on each episode's support set.

    Args:
        features: ``(N, d)`` frozen features.
        labels: ``(N,)`` integer labels (used to check that ``episodes`` belong to them).
        episodes: from :func:`fewshot.episodes.sample_episodes` on ``labels``.
        classifier: a registry name (:data:`fewshot.classifiers.CLASSIFIERS`: ``"logreg"``,
            ``"svm"``, ``"simpleshot"``, the transductive ``"tim"``, ...) or an
            object with ``fit(support (E, n, d), labels (n,))`` and
            ``predict(query (E', m, d), start)`` (see :mod:`fewshot.classifiers`).
        device: torch device; ``None`` = CUDA when available, else CPU.
        batch_size: episodes fitted together (default 1000; memory: about
            ``batch_size * n_way * n_shot * d`` support values, queries are gathered 250
            episodes at a time).
        progress: show a tqdm bar (``None``: only on a terminal).
        return_per_class: also return the correct predictions per class.
        **classifier_kwargs: passed to the registry's constructor (e.g. ``C=0.5``).

    Returns:
        ``(E,)`` float64 accuracies in ``[0, 1]``; with ``return_per_class`` also ``(E, n_way)``
        int64 counts of correctly classified queries of ``episodes.classes[e, k]`` (out of
        ``n_query``).

    Raises:
        ValueError: malformed features/labels, or episodes that do not index these labels.
    """
    X, y = validate_features(
        features.cpu().numpy() if isinstance(features, torch.Tensor) else features, labels, "features"
    )
    check_int("batch_size", batch_size)
    _check_episodes_match(y, episodes)
    dev = resolve_device(device)
    clf = create_classifier(classifier, **classifier_kwargs) if isinstance(classifier, str) else classifier
    if hasattr(clf, "device") and getattr(clf, "device", None) is None:
        clf.device = dev  # type: ignore[attr-defined]

    feats = torch.from_numpy(X).to(dev)
    support_idx = torch.from_numpy(episodes.support.copy()).to(dev)
    query_idx = torch.from_numpy(episodes.query.copy()).to(dev)
    support_labels = torch.from_numpy(episodes.support_labels).to(dev)
    query_labels = episodes.query_labels
    E, d = len(episodes), X.shape[1]
    ns, nq = support_idx.shape[1], query_idx.shape[1]
    # Fit batch_size episodes together (the solver's per-call overhead amortises), but gather
    # their queries in smaller pieces into one reused buffer (fresh multi-MB allocations and
    # their page faults cost more than the solve).
    qchunk = max(1, min(batch_size, 250))
    sbuf = torch.empty(min(batch_size, E) * ns, d, dtype=feats.dtype, device=dev)
    qbuf = torch.empty(min(qchunk, E) * nq, d, dtype=feats.dtype, device=dev)
    acc = np.empty(E, dtype=np.float64)
    correct = np.empty((E, episodes.n_way), dtype=np.int64) if return_per_class else None
    bar = tqdm(
        total=E, desc="episodes", unit="ep", disable=(not progress) if progress is not None else None, leave=False
    )
    with torch.no_grad():
        for lo in range(0, E, batch_size):
            hi = min(E, lo + batch_size)
            b = hi - lo
            s = torch.index_select(feats, 0, support_idx[lo:hi].reshape(-1), out=sbuf[: b * ns]).view(b, ns, d)
            clf.fit(s, support_labels)
            for qlo in range(lo, hi, qchunk):
                qhi = min(hi, qlo + qchunk)
                q = torch.index_select(feats, 0, query_idx[qlo:qhi].reshape(-1), out=qbuf[: (qhi - qlo) * nq])
                pred = np.asarray(clf.predict(q.view(qhi - qlo, nq, d), start=qlo - lo))
                hits = pred == query_labels
                acc[qlo:qhi] = hits.mean(axis=1)
                if correct is not None:  # queries are class-major: n_query per class
                    correct[qlo:qhi] = hits.reshape(qhi - qlo, episodes.n_way, -1).sum(-1)
            bar.update(b)
    bar.close()
    return (acc, correct) if correct is not None else acc


def run_protocol(
    features: FeatureSet | np.ndarray,
    labels: np.ndarray | None = None,
    *,
    dataset: str | None = None,
    split: str | None = None,
    run: str | None = None,
    n_way: int = 5,
    shots: Sequence[int] = (1, 5),
    n_query: int = 15,
    n_episodes: int = 3000,
    seeds: Sequence[int] = (0, 1, 2),
    classifier: str = "logreg",
    classifier_kwargs: dict[str, Any] | None = None,
    device: str | torch.device | None = None,
    episodes_dir: str | Path | None = None,
    progress: bool | None = None,
    per_class: bool = False,
    episode_cache_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Evaluate every (shot, seed) of the protocol; one row per episode.

    Args:
        features: a :class:`FeatureSet` (then ``labels`` must be None) or an ``(N, d)`` array.
        labels: ``(N,)`` integer labels when ``features`` is an array.
        dataset, split: recorded in every row (default: from the FeatureSet, else
            ``"custom"``/``"test"``).
        run: the training run recorded in every row (default: the FeatureSet's, else ``""``).
        n_way, shots, n_query, n_episodes, seeds: the protocol (defaults: 5-way, 1 and 5 shots,
            15 queries, 3,000 episodes, seeds 0, 1, 2).
        classifier, classifier_kwargs: see :func:`evaluate`.
        episodes_dir: if given, every sampled :class:`Episodes` is saved there as
            ``{n_way}way-{shot}shot-{n_query}query-seed{seed}.npz`` (with the labels'
            fingerprint, see :meth:`Episodes.save`).
        per_class: also keep, per episode, ``class_k`` (the name of its ``k``-th class, or
            the label as text when the features have no class names) and ``correct_k`` (its
            correctly classified queries, out of ``n_query``), ``k = 0 .. n_way-1``.
        episode_cache_dir: an episode cache (:mod:`fewshot.episode_cache`): episodes of the
            same labels and request are read from it instead of sampled (and written there
            when missing). Default None: always sample. Results are identical either way.

    Returns:
        DataFrame with columns :data:`fewshot.results.EPISODE_COLUMNS` (then the per-class
        columns when asked).

    Raises:
        ValueError: bad sizes or features (see :func:`evaluate` and
            :func:`fewshot.episodes.sample_episodes`); all checks run before any work.
    """
    fs = _feature_set(features, labels)
    dataset = dataset or fs.dataset
    split = split or fs.split
    run = fs.run if run is None else check_run_name(run, "run")
    shots = _distinct_ints("shots", shots)
    seeds = _distinct_ints("seeds", seeds)
    for shot in shots:
        check_sizes(n_way, shot, n_query, n_episodes)
    clf_kwargs = dict(classifier_kwargs or {})
    create_classifier(classifier, **clf_kwargs)  # validate the name and arguments up front
    resolve_device(device)  # and the device
    labels_fp = labels_fingerprint(fs.labels)
    jobs = _episode_jobs(fs.labels, labels_fp, n_way, shots, n_query, n_episodes, seeds, episode_cache_dir)
    frames = []
    for shot, seed, episodes, data in tqdm(
        jobs, desc=f"{dataset} {n_way}-way", unit="run", disable=(not progress) if progress is not None else None
    ):
        if episodes_dir is not None:
            target = Path(episodes_dir) / episodes_filename(n_way, shot, n_query, seed)
            if data is not None:  # the cache entry's bytes: the same episodes file, not compressed again
                write_bytes(target, data)
            else:
                episodes.save(target, labels_fingerprint=labels_fp)
        out = evaluate(
            fs.features, fs.labels, episodes, classifier, device=device, return_per_class=per_class, **clf_kwargs
        )
        acc, correct = out if per_class else (out, None)
        frame = pd.DataFrame(
            {
                "dataset": dataset,
                "split": split,
                "run": run,
                "n_way": n_way,
                "n_shot": shot,
                "n_query": n_query,
                "seed": seed,
                "episode": np.arange(episodes.start, episodes.start + len(episodes), dtype=np.int64),
                "accuracy": acc,
                "classifier": classifier,
                "features_fingerprint": fs.fingerprint,
                "episodes_fingerprint": episodes.fingerprint,
                **(_per_class_columns(episodes, correct, fs.class_names) if correct is not None else {}),
            }
        )
        frames.append(frame)
    df = pd.concat(frames, ignore_index=True)
    extra = [c for c in df.columns if c not in EPISODE_COLUMNS]
    return df.loc[:, [*EPISODE_COLUMNS, *extra]]


def _feature_set(features: FeatureSet | np.ndarray, labels: np.ndarray | None) -> FeatureSet:
    """``features`` as a :class:`FeatureSet`: given one (then no ``labels``) or an array with labels."""
    if isinstance(features, FeatureSet):
        if labels is not None:
            raise ValueError("pass labels only with a features array, not with a FeatureSet")
        return features
    if labels is None:
        raise ValueError("labels are required when features is an array")
    return FeatureSet(np.asarray(features), np.asarray(labels))


def _distinct_ints(name: str, values: int | Sequence[int]) -> list[int]:
    """One int or a sequence of them, as a non-empty list without repeats."""
    out = [int(values)] if isinstance(values, (int, np.integer)) else [int(v) for v in values]
    if not out:
        raise ValueError("shots and seeds must each list at least one value")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not repeat a value (every row would be written twice), got {out}")
    return out


def _episode_jobs(
    labels: np.ndarray,
    labels_fp: str,
    n_way: int,
    shots: list[int],
    n_query: int,
    n_episodes: int,
    seeds: list[int],
    episode_cache_dir: str | Path | None,
) -> list[tuple[int, int, Episodes, bytes | None]]:
    """``(shot, seed, episodes, cache file bytes or None)`` for every (shot, seed), sampled or
    read from the episode cache. All are sampled (or read) before any is evaluated or written
    to the cache: a size problem surfaces before minutes of work, and leaves no cache entry."""
    jobs = []
    for shot in shots:
        for seed in seeds:
            if episode_cache_dir is None:
                jobs.append((shot, seed, sample_episodes(labels, n_way, shot, n_query, n_episodes, seed), None))
            else:
                entry = cached_episodes(
                    labels, n_way, shot, n_query, n_episodes, seed, episode_cache_dir, labels_fp=labels_fp, write=False
                )
                jobs.append((shot, seed, entry.episodes, entry))
    return [
        (shot, seed, ep, store_episodes(entry, labels_fp).data if entry is not None else None)
        for shot, seed, ep, entry in jobs
    ]


def _per_class_columns(episodes: Episodes, correct: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """``class_k`` / ``correct_k`` columns of one run (see :func:`run_protocol`)."""
    names = np.asarray(
        list(class_names) if class_names else [str(i) for i in range(int(episodes.classes.max()) + 1)], dtype=object
    )
    cols: dict[str, Any] = {}
    for k in range(episodes.n_way):
        cols[f"class_{k}"] = names[episodes.classes[:, k]]
    for k in range(episodes.n_way):
        cols[f"correct_{k}"] = correct[:, k]
    return cols
