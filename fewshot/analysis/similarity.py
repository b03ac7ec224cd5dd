"""Cosine similarities of positive (same-class) and negative (different-class) pairs.

The SCHaNe papers (Figs. 3-4) show how far apart the two distributions sit after
fine-tuning. Here every pair is counted, without sampling: similarities are computed block by
block and binned into a fixed histogram over [-1, 1] while exact means and standard
deviations are accumulated, so a 12,000-image split (72 M pairs) needs no pair matrix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from fewshot._validate import check_int
from fewshot.analysis._validate import check_embeddings, check_labels, l2_normalize

__all__ = ["PairHistogram", "SimilarityDistributions", "similarity_distributions"]


@dataclasses.dataclass
class PairHistogram:
    """Histogram and moments of one set of pair similarities.

    Attributes:
        counts: ``(bins,)`` int64 pair counts per bin of the edges of the owner.
        n: number of pairs.
        mean: mean similarity (NaN when ``n`` is 0).
        m2: sum of squared deviations from the mean (population variance is ``m2 / n``).
    """

    counts: np.ndarray
    n: int = 0
    mean: float = float("nan")
    m2: float = 0.0

    @classmethod
    def empty(cls, bins: int) -> PairHistogram:
        return cls(np.zeros(bins, dtype=np.int64))

    def add(self, values: np.ndarray, bins: int) -> None:
        """Add similarities ``values`` (1-D, in [-1, 1]) to the histogram and the moments."""
        k = values.size
        if k == 0:
            return
        idx = np.clip(np.floor((values + 1.0) * (bins / 2.0)).astype(np.int64), 0, bins - 1)
        self.counts += np.bincount(idx, minlength=bins)
        mean_b = float(values.mean())
        m2_b = float(((values - mean_b) ** 2).sum())
        if self.n == 0:
            self.n, self.mean, self.m2 = k, mean_b, m2_b
            return
        n = self.n + k
        delta = mean_b - self.mean
        self.mean += delta * k / n
        self.m2 += m2_b + delta * delta * self.n * k / n
        self.n = n

    @property
    def sd(self) -> float:
        """Population standard deviation of the similarities (NaN when empty)."""
        return float(np.sqrt(self.m2 / self.n)) if self.n else float("nan")

    def density(self, edges: np.ndarray) -> np.ndarray:
        """Counts divided by ``n`` and the bin width (integrates to 1); zeros when empty."""
        if self.n == 0:
            return np.zeros_like(self.counts, dtype=np.float64)
        return self.counts / (self.n * np.diff(edges))


@dataclasses.dataclass
class SimilarityDistributions:
    """Positive and negative pair similarities of one scope (all classes, or one class).

    ``scope`` is ``"all"`` or a class name. For a class, positives are pairs inside it and
    negatives are pairs with exactly one member in it.
    """

    scope: str
    edges: np.ndarray
    positive: PairHistogram
    negative: PairHistogram

    @property
    def overlap(self) -> float:
        """Overlapping coefficient ``Σ_bins min(p_b, q_b)`` of the two binned distributions
        (``p``, ``q``: fractions of positive / negative pairs per bin): 1 for identical
        histograms, 0 for disjoint ones, NaN when either set is empty."""
        if self.positive.n == 0 or self.negative.n == 0:
            return float("nan")
        p = self.positive.counts / self.positive.n
        q = self.negative.counts / self.negative.n
        return float(np.minimum(p, q).sum())

    def row(self) -> dict[str, Any]:
        """One flat record: scope, n/mean/sd of positives and negatives, their gap, overlap."""
        return {
            "scope": self.scope,
            "n_positive": self.positive.n,
            "mean_positive": self.positive.mean,
            "sd_positive": self.positive.sd,
            "n_negative": self.negative.n,
            "mean_negative": self.negative.mean,
            "sd_negative": self.negative.sd,
            "gap": self.positive.mean - self.negative.mean,
            "overlap": self.overlap,
        }


def _blocks(n: int, block: int) -> Iterator[slice]:
    for start in range(0, n, block):
        yield slice(start, min(start + block, n))


def _scan(
    rows: np.ndarray,
    cols: np.ndarray,
    same: np.ndarray,
    mask: np.ndarray | None,
    out: SimilarityDistributions,
    bins: int,
) -> None:
    sim = np.clip(rows @ cols.T, -1.0, 1.0)
    keep = np.ones_like(same) if mask is None else mask
    out.positive.add(sim[keep & same], bins)
    out.negative.add(sim[keep & ~same], bins)


def similarity_distributions(
    features: Any,
    labels: Any,
    *,
    classes: Any = None,
    class_names: Any = None,
    bins: int = 200,
    block: int = 1024,
    max_per_class: int | None = None,
    seed: int = 0,
) -> list[SimilarityDistributions]:
    """Cosine similarities of all positive and negative pairs, overall and per chosen class.

    Every unordered pair ``{i, j}``, ``i != j``, is counted once. Features are L2-normalised
    (cosine similarity); values are binned into ``bins`` equal bins over [-1, 1].

    Args:
        features: ``(n, d)`` real array.
        labels: ``(n,)`` integer class labels.
        classes: classes to report separately: names (looked up in ``class_names``) or integer
            labels; default none.
        class_names: names of labels ``0..C-1`` (default ``str(label)``).
        bins: number of histogram bins (>= 2, default 200).
        block: rows per similarity block, lowered so that a block holds at most 2²² pairs
            (memory ~ ``block × n`` float64).
        max_per_class: use at most this many items of each class, drawn without replacement
            by ``numpy.random.default_rng(seed)`` (default: all; tieredImageNet's test split
            has 21 billion pairs).
        seed: seeds the ``max_per_class`` subsample.

    Returns:
        ``[overall, class_1, ...]``, one :class:`SimilarityDistributions` per scope.

    Raises:
        ValueError: bad shapes, NaN/Inf, an all-zero row, bad ``bins``/``block``, an unknown
            or absent class.
    """
    x = l2_normalize(check_embeddings(features, "features"), "features")
    y = check_labels(labels, x.shape[0])
    check_int("bins", bins, low=2)
    check_int("block", block)
    names = [str(c) for c in class_names] if class_names is not None and len(class_names) else None
    if max_per_class is not None:
        check_int("max_per_class", max_per_class)
        rng = np.random.default_rng(seed)
        keep = []
        for label in np.unique(y):
            members = np.flatnonzero(y == label)
            if members.size > max_per_class:
                members = np.sort(rng.choice(members, max_per_class, replace=False))
            keep.append(members)
        index = np.sort(np.concatenate(keep))
        x, y = x[index], y[index]
    block = max(1, min(int(block), (1 << 22) // x.shape[0]))
    edges = np.linspace(-1.0, 1.0, bins + 1)

    def new(scope: str) -> SimilarityDistributions:
        return SimilarityDistributions(scope, edges, PairHistogram.empty(bins), PairHistogram.empty(bins))

    overall = new("all")
    index = np.arange(x.shape[0])
    for sl in _blocks(x.shape[0], block):
        upper = index[sl, None] < index[None, :]
        _scan(x[sl], x, y[sl, None] == y[None, :], upper, overall, bins)
    result = [overall]
    for cls in [] if classes is None else list(classes):
        label = _resolve_class(cls, names, y)
        scope = new(names[label] if names else str(label))
        inside, outside = x[y == label], x[y != label]
        k = np.arange(inside.shape[0])
        _scan(inside, inside, np.ones((k.size, k.size), bool), k[:, None] < k[None, :], scope, bins)
        for sl in _blocks(inside.shape[0], block):
            _scan(inside[sl], outside, np.zeros((sl.stop - sl.start, outside.shape[0]), bool), None, scope, bins)
        result.append(scope)
    return result


def _resolve_class(cls: Any, names: list[str] | None, labels: np.ndarray) -> int:
    if isinstance(cls, (int, np.integer)) and not isinstance(cls, bool):
        label = int(cls)
    elif names is not None and str(cls) in names:
        label = names.index(str(cls))
    elif names is None and str(cls).lstrip("-").isdigit():
        label = int(str(cls))
    else:
        known = ", ".join(names[:8]) + (", ..." if names and len(names) > 8 else "") if names else "integer labels"
        raise ValueError(f"unknown class {cls!r}; expected one of {known}")
    if not (labels == label).any():
        raise ValueError(f"class {cls!r} (label {label}) has no items")
    return label
