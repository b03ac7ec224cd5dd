"""Device selection shared by every stage."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` means CUDA when available, else CPU; anything else must name a torch device.

    Raises:
        ValueError: ``device`` is not a valid torch device string.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"invalid device {device!r}; expected e.g. 'cpu', 'cuda' or 'cuda:1'") from None
