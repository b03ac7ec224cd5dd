"""Shape checks and small tensor helpers shared by the episode classifiers.

Every classifier takes a batch of episodes: ``support`` ``(E, n, d)`` (or ``(n, d)``), labels
``(E, n)`` (or ``(n,)``, shared by all episodes) in ``0..K-1``, and ``query`` ``(E', m, d)``
for the fitted episodes ``start .. start + E'``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "as_batch",
    "as_labels",
    "class_means",
    "episode_slice",
    "l2_normalize",
    "safe_norm",
]


def as_batch(x: Any, name: str, device: torch.device | str | None = None) -> torch.Tensor:
    """``x`` as a floating ``(E, n, d)`` tensor (an ``(n, d)`` input becomes one episode).

    Raises:
        ValueError: wrong number of dimensions.
        TypeError: not floating point.
    """
    t = torch.as_tensor(x, device=device)
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3:
        raise ValueError(f"{name} must have shape (E, n, d) or (n, d), got {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {t.dtype}")
    return t


def as_labels(y: Any, batch: int, n: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """Support labels as an int64 ``(E, n)`` tensor and the number of classes ``K``.

    Raises:
        TypeError: non-integer labels.
        ValueError: wrong shape or negative labels.
    """
    t = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y, device=device)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"support_labels must be integers, got {t.dtype}")
    t = t.long()
    if t.ndim == 1:
        t = t.unsqueeze(0).expand(batch, -1)
    if t.shape != (batch, n):
        raise ValueError(f"support_labels must have shape ({batch}, {n}) or ({n},), got {tuple(t.shape)}")
    if t.numel() and int(t.min()) < 0:
        raise ValueError("support_labels must be in 0..K-1, got a negative label")
    n_classes = int(t.max()) + 1 if t.numel() else 0
    return t, n_classes


def safe_norm(norms: torch.Tensor) -> torch.Tensor:
    """Norms clamped away from zero: an all-zero row (e.g. post-ReLU) stays zero, not NaN."""
    return norms.clamp_min(torch.finfo(norms.dtype).tiny ** 0.5)


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` divided by their L2 norm (all-zero rows stay zero)."""
    return x / safe_norm(x.norm(dim=-1, keepdim=True))


def class_means(x: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``(E, K, d)`` per-class means of ``x`` ``(E, n, d)`` with labels ``y`` ``(E, n)``
    (a class without items gets a zero mean)."""
    onehot = torch.nn.functional.one_hot(y, n_classes).to(x.dtype)  # (E, n, K)
    counts = onehot.sum(1).clamp_min(1).unsqueeze(-1)
    return (onehot.transpose(1, 2) @ x) / counts


def episode_slice(
    weights: torch.Tensor, bias: torch.Tensor | None, start: int, Q: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The fitted parameters of episodes ``start .. start + len(Q)``, checked against ``Q``.

    Raises:
        ValueError: ``Q`` ``(E', m, d)`` does not fit the fitted batch ``(E, ..., d)``.
    """
    E, d = weights.shape[0], weights.shape[-1]
    if not 0 <= start <= E - Q.shape[0] or Q.shape[2] != d:
        raise ValueError(
            f"query shape {tuple(Q.shape)} from episode {start} does not match the fitted batch (E={E}, d={d})"
        )
    end = start + Q.shape[0]
    return weights[start:end], None if bias is None else bias[start:end]
