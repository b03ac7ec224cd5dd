"""Checks shared by the analysis functions."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_embeddings", "check_labels", "l2_normalize"]


def check_embeddings(embeddings: Any, name: str = "embeddings") -> np.ndarray:
    """``embeddings`` as a float64 ``(n, d)`` array with n >= 1, d >= 1 and finite values.

    Raises:
        ValueError: not two-dimensional, empty, or holding NaN/Inf.
    """
    x = np.asarray(embeddings)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must be a non-empty (n, d) array, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real numbers, got dtype {x.dtype}")
    x = x.astype(np.float64, copy=False)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} hold NaN or Inf")
    return x


def check_labels(labels: Any, n: int) -> np.ndarray:
    """``labels`` as an int64 ``(n,)`` array.

    Raises:
        ValueError: wrong shape or a non-integer dtype.
    """
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    return y.astype(np.int64, copy=False)


def l2_normalize(x: np.ndarray, name: str = "embeddings") -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm.

    Raises:
        ValueError: an all-zero row (it has no direction).
    """
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    zero = np.flatnonzero(norms[:, 0] == 0)
    if zero.size:
        raise ValueError(f"{name} row {int(zero[0])} is all zeros and cannot be L2-normalised")
    return x / norms
