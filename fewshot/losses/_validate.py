"""Checks at the public boundary of the loss functions.

Every check raises a one-line ``ValueError`` (bad value) or ``TypeError`` (bad type) that names
the argument and what was expected. None of them uses ``assert``.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "check_embeddings",
    "check_labels",
    "check_temperature",
    "check_lam",
    "check_beta",
]


def check_embeddings(embeddings: Any) -> Tensor:
    """Return ``embeddings`` if it is a finite floating-point ``(B, d)`` tensor with no zero row."""
    if not isinstance(embeddings, Tensor):
        kind = type(embeddings).__name__
        raise TypeError(f"embeddings must be a torch.Tensor of shape (B, d), got {kind}")
    if not embeddings.is_floating_point():
        raise TypeError(f"embeddings must have a floating-point dtype, got {embeddings.dtype}")
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be 2-D (B, d), got shape {tuple(embeddings.shape)}")
    if embeddings.shape[0] and embeddings.shape[1] == 0:
        shape = tuple(embeddings.shape)
        raise ValueError(f"embeddings must have at least one column, got shape {shape}")
    with torch.no_grad():
        finite = torch.isfinite(embeddings).all(dim=1)
        if not bool(finite.all()):
            row = int((~finite).nonzero()[0, 0])
            raise ValueError(f"embeddings contain NaN or Inf (first in row {row})")
        zero = (embeddings == 0).all(dim=1)
        if bool(zero.any()):
            row = int(zero.nonzero()[0, 0])
            raise ValueError(f"embeddings row {row} is all zeros and cannot be L2-normalised")
    return embeddings


def check_labels(labels: Any, embeddings: Tensor, name: str = "labels") -> Tensor:
    """Return ``labels`` as a 1-D integer tensor on the device of ``embeddings``, one per row."""
    if labels is None:
        raise ValueError(f"{name} is required, got None")
    if not isinstance(labels, Tensor):
        try:
            labels = torch.as_tensor(labels)
        except (TypeError, ValueError, RuntimeError) as exc:
            kind = type(labels).__name__
            raise TypeError(f"{name} must be a 1-D integer tensor, got {kind}") from exc
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{name} must have an integer dtype, got {labels.dtype}")
    if labels.dim() != 1:
        raise ValueError(f"{name} must be 1-D (B,), got shape {tuple(labels.shape)}")
    if labels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"embeddings has {embeddings.shape[0]} rows but {name} has {labels.shape[0]} entries")
    return labels.to(device=embeddings.device)


def _real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def check_temperature(temperature: Any) -> float:
    """Return ``temperature`` as a float; it must be finite and > 0."""
    value = _real(temperature, "temperature")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return value


def check_lam(lam: Any) -> float:
    """Return the CE/contrastive balance ``lam`` as a float; it must lie in [0, 1]."""
    value = _real(lam, "lam")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam!r}")
    return value


def check_beta(beta: Any) -> float:
    """Return the H-SCL hardness ``beta`` as a float; it must be finite and >= 0."""
    value = _real(beta, "beta")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    return value
