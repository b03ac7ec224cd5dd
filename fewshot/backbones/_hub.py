"""Pretrained weights from the Hugging Face Hub (``create_backbone(name, "hub")``), failing fast offline.

Before timm downloads anything, :func:`create_from_hub` checks ``HF_HUB_OFFLINE`` /
``TIMM_OFFLINE`` and opens a TCP connection to the weights' host (3 s), so that an offline
machine gets one clear ``ConnectionError`` at once instead of timm's retries.
"""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlparse

import timm
from torch import nn

__all__ = ["create_from_hub"]


_OFFLINE_VALUES = {"1", "true", "yes", "on"}


def _hub_offline() -> bool:
    return any(os.environ.get(var, "").strip().lower() in _OFFLINE_VALUES for var in ("HF_HUB_OFFLINE", "TIMM_OFFLINE"))


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` seconds."""
    parsed = urlparse(url)
    host = parsed.hostname
    if not host:
        return False
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _hub_url(name: str) -> str:
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is not None and cfg.hf_hub_id:
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if cfg is not None and cfg.url:
        return cfg.url
    return ""


def _offline_error(name: str, reason: str) -> ConnectionError:
    return ConnectionError(
        f"cannot fetch pretrained weights for {name!r} from the hub ({reason}); "
        f"pass a local weights file instead (pretrained=PATH / --pretrained FILE.safetensors|.pth)"
    )


def create_from_hub(name: str, kwargs: dict[str, Any]) -> nn.Module:
    """``timm.create_model(name, pretrained=True, num_classes=0, **kwargs)``, failing fast offline.

    Raises:
        ValueError: ``name`` has no pretrained weights on the hub.
        ConnectionError: ``HF_HUB_OFFLINE``/``TIMM_OFFLINE`` set, the hub unreachable, or the
            download failing (one line naming the cause, suggesting a local weights file).
        TypeError: ``kwargs`` the model does not take.
    """
    if not timm.models.is_model_pretrained(name):
        raise ValueError(
            f"backbone {name!r} has no pretrained weights on the hub; "
            f"pass a weights file or pretrained=None to train from scratch"
        )
    if _hub_offline():
        raise _offline_error(name, "HF_HUB_OFFLINE is set")
    url = _hub_url(name)
    if not _reachable(url):
        raise _offline_error(name, f"{urlparse(url).hostname or url!r} is unreachable; offline?")
    try:
        return timm.create_model(name, pretrained=True, num_classes=0, **kwargs)
    except TypeError:
        raise
    except Exception as exc:  # network and hub errors come in many types
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise _offline_error(name, f"download failed: {type(exc).__name__}: {first}") from exc
