"""The Isotropy Score of Mu & Viswanath (2018), as the SCHaNe papers report it (Table 5)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import logsumexp

from fewshot.analysis._validate import check_embeddings, l2_normalize

__all__ = ["isotropy_score", "log_partition"]


def log_partition(embeddings: np.ndarray, directions: np.ndarray, block: int = 8192) -> np.ndarray:
    """``log Z(c) = log Σ_v exp(cᵀv)`` for each column ``c`` of ``directions``.

    Args:
        embeddings: ``(n, d)`` float64.
        directions: ``(d, k)``, one direction per column.
        block: rows per step (memory ~ ``block × k`` float64).

    Returns:
        ``(k,)`` float64, computed with a log-sum-exp per block of rows, the blocks combined
        with ``logaddexp`` (no overflow for large ``cᵀv``).
    """
    total = np.full(directions.shape[1], -np.inf)
    for start in range(0, embeddings.shape[0], block):
        total = np.logaddexp(total, logsumexp(embeddings[start : start + block] @ directions, axis=0))
    return total


def isotropy_score(embeddings: Any, *, normalize: bool = False) -> float:
    """Isotropy ``I(V) = min_c Z(c) / max_c Z(c)`` with ``Z(c) = Σ_v exp(cᵀv)``.

    Mu & Viswanath, "All-but-the-Top" (ICLR 2018), as the SCHaNe papers cite it: ``c`` ranges
    over the eigenvectors of ``VᵀV`` **and their negatives** (an eigenvector's sign is
    arbitrary, so both are used). The papers print the ratio as max/min but report values in
    (0, 1]; this is min/max, 1 for a perfectly isotropic set and towards 0 for one concentrated
    along a direction (a common offset, or one dominant axis).

    The ratio is formed in log space, ``exp(min log Z - max log Z)``, so embeddings with large
    ``cᵀv`` (where ``exp`` overflows) give a finite answer; a ratio below float64's smallest
    number underflows to 0.0.

    Args:
        embeddings: ``(n, d)`` real array, used as given.
        normalize: L2-normalise each row first (default False).

    Returns:
        The score in [0, 1] as a Python float.

    Raises:
        ValueError: not a non-empty ``(n, d)`` real array; NaN/Inf; with ``normalize``, an
            all-zero row.
    """
    v = check_embeddings(embeddings)
    if normalize:
        v = l2_normalize(v)
    _, eigenvectors = np.linalg.eigh(v.T @ v)
    log_z = log_partition(v, np.concatenate([eigenvectors, -eigenvectors], axis=1))
    return float(np.exp(log_z.min() - log_z.max()))
