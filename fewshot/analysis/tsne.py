"""A seeded two-dimensional t-SNE map of a few classes (the papers' Fig. 5)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fewshot._validate import check_int, check_real
from fewshot.analysis._validate import check_embeddings, check_labels, l2_normalize

__all__ = ["tsne_map"]


def tsne_map(
    features: Any,
    labels: Any,
    *,
    n_classes: int = 10,
    per_class: int = 100,
    class_names: Any = None,
    perplexity: float = 30.0,
    seed: int = 0,
) -> pd.DataFrame:
    """scikit-learn's ``TSNE`` of up to ``per_class`` items of the first ``n_classes`` classes.

    Classes are the smallest labels present; items are drawn without replacement by
    ``numpy.random.default_rng(seed)`` (all of a class when it has fewer). Rows are
    L2-normalised (so Euclidean distances order pairs as cosine similarity does) and embedded
    with ``TSNE(init="pca", random_state=seed)``; the perplexity is lowered to ``(m - 1) / 3``
    when only ``m`` points are drawn. The same inputs give the same map.

    Args:
        features: ``(n, d)`` real array.
        labels: ``(n,)`` integer labels.
        n_classes: classes to show (>= 1, default 10).
        per_class: items per class (>= 1, default 100).
        class_names: names of labels ``0..C-1`` (default ``str(label)``).
        perplexity: t-SNE perplexity (> 0, default 30).
        seed: seeds both the subsample and t-SNE.

    Returns:
        Tidy frame with columns ``index`` (row in ``features``), ``label``, ``class``, ``x``, ``y``.

    Raises:
        ValueError: bad shapes, NaN/Inf, an all-zero row, non-positive counts or perplexity,
            fewer than 2 points drawn.
    """
    from sklearn.manifold import TSNE

    x = check_embeddings(features, "features")
    y = check_labels(labels, x.shape[0])
    check_int("n_classes", n_classes)
    check_int("per_class", per_class)
    check_real("perplexity", perplexity, low=0, closed="neither")
    rng = np.random.default_rng(seed)
    chosen = np.unique(y)[:n_classes]
    picks = []
    for label in chosen:
        members = np.flatnonzero(y == label)
        if members.size > per_class:
            members = np.sort(rng.choice(members, per_class, replace=False))
        picks.append(members)
    index = np.concatenate(picks)
    if index.size < 2:
        raise ValueError(f"t-SNE needs at least 2 points, got {index.size}")
    points = l2_normalize(x[index], "features")
    tsne = TSNE(
        n_components=2,
        init="pca",
        random_state=seed,
        perplexity=min(float(perplexity), (index.size - 1) / 3.0),
    )
    xy = tsne.fit_transform(points)
    names = [str(c) for c in class_names] if class_names is not None and len(class_names) else None
    return pd.DataFrame(
        {
            "index": index,
            "label": y[index],
            "class": [names[k] if names else str(k) for k in y[index]],
            "x": xy[:, 0],
            "y": xy[:, 1],
        }
    )
