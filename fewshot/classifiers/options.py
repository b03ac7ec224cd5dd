"""Classifier hyper-parameters from the command line and for manifests.

``--classifier-arg KEY=VALUE`` values are read as TOML scalars (``50``, ``0.5``, ``true``,
``"cosine"``), with a bare word taken as a string, so ``metric=cosine`` works unquoted.
"""

from __future__ import annotations

import inspect
import tomllib
from collections.abc import Sequence
from typing import Any

from fewshot.classifiers import classifier_class

__all__ = ["classifier_parameters", "parse_classifier_args"]


def parse_classifier_args(items: Sequence[str]) -> dict[str, Any]:
    """``["metric=cosine", "lam=50"]`` -> ``{"metric": "cosine", "lam": 50}``.

    Raises:
        ValueError: an item without ``=``, an empty key, or a key given twice.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--classifier-arg expects KEY=VALUE, got {item!r}")
        if key in out:
            raise ValueError(f"--classifier-arg {key} given twice")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        out[key] = value
    return out


def classifier_parameters(name: str) -> dict[str, Any]:
    """Hyper-parameters of a registered classifier and their defaults (``device`` excluded).

    Raises:
        ValueError: unknown ``name``.
    """
    sig = inspect.signature(classifier_class(name).__init__)
    return {p.name: p.default for p in sig.parameters.values() if p.name not in ("self", "device")}
