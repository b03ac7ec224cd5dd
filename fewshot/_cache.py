"""Where fewshot's caches live by default (torch-free, so every stage can ask)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "default_cache_dir"]

#: Environment variable naming the cache root.
CACHE_ENV = "FEWSHOT_CACHE_DIR"


def default_cache_dir(kind: str) -> Path:
    """The default directory of one cache (``"features"``, ``"episodes"``).

    ``$FEWSHOT_CACHE_DIR/<kind>``, else ``$XDG_CACHE_HOME/fewshot/<kind>`` (``~/.cache/...``).
    The feature cache is ``$FEWSHOT_CACHE_DIR`` itself: that variable held it before there were
    other caches, and existing caches stay where their users put them.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env) if kind == "features" else Path(env) / kind
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fewshot" / kind
