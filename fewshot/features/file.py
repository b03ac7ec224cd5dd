"""The feature file: :func:`save_features` writes it, :func:`load_features` reads it into a
:class:`FeatureSet`.

Feature files (``.npz``, written atomically, read by ``fewshot evaluate --features``)::

    features      (N, d) float32
    labels        (N,)   int64, label k is class_names[k]
    class_names   (C,)   str
    fingerprint   ()     str, fewshot._io.sha256_arrays(features, labels)
    dataset       ()     str, registry name of the benchmark
    split         ()     str
    run           ()     str, the training run whose checkpoint made them ("" for none)
    cache_key     ()     str, SHA-256 of the extraction's identity (see feature_cache_key)
    manifest      ()     str, JSON: backbone, preprocessing, source, versions, time

Only ``features`` and ``labels`` are required when reading. Files of other toolkits are read
by :mod:`fewshot.features.foreign`, chosen by the file name.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fewshot._io import save_npz, sha256_arrays
from fewshot.features.foreign import is_foreign_features, read_foreign_features
from fewshot.runs import check_run_name

logger = logging.getLogger(__name__)
__all__ = ["FEATURE_KEYS", "FeatureSet", "features_image_size", "load_features", "save_features", "validate_features"]


#: Keys of a feature file written by :func:`save_features`.
FEATURE_KEYS: tuple[str, ...] = (
    "features",
    "labels",
    "class_names",
    "fingerprint",
    "dataset",
    "split",
    "run",
    "cache_key",
    "manifest",
)


@dataclass(frozen=True, eq=False)
class FeatureSet:
    """Frozen features of one split, as read from a features ``.npz`` file.

    Attributes:
        features: ``(N, d)`` float32 or float64.
        labels: ``(N,)`` int64.
        class_names: names of the classes (label order), or empty.
        dataset, split: what the features are of (``"custom"``/``"test"`` when unrecorded).
        run: the training run whose checkpoint made them (e.g. ``"seed-0"``; ``""`` when
            unrecorded), see :mod:`fewshot.runs`.
        fingerprint: SHA-256 of ``features`` and ``labels``.
        path: the file read, if any.
    """

    features: np.ndarray
    labels: np.ndarray
    class_names: list[str] = field(default_factory=list)
    dataset: str = "custom"
    split: str = "test"
    path: Path | None = None
    run: str = ""
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        if self.run:
            check_run_name(self.run, f"{self.path or 'features'}: run")
        features, labels = validate_features(self.features, self.labels, str(self.path or "features"))
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "fingerprint", sha256_arrays(features, labels))


def validate_features(features: Any, labels: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(features, labels)`` checked and made contiguous: ``(N, d)`` float32/float64 (other
    floats become float32; float64 when float32 would overflow ``X X^T``) and ``(N,)`` int64.

    Raises:
        ValueError: naming ``where``: wrong shapes or dtypes, empty, NaN/Inf, or magnitudes
            that even float64 cannot evaluate.
    """
    X = np.asarray(features)
    y = np.asarray(labels)
    if X.ndim != 2:
        raise ValueError(f"{where}: features must be a 2-D array (N, d), got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.floating):
        raise ValueError(f"{where}: features must be floating point, got dtype {X.dtype}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{where}: features are empty, shape {X.shape}")
    if y.ndim != 1:
        raise ValueError(f"{where}: labels must be a 1-D array, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{where}: labels must be integers, got dtype {y.dtype}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"{where}: {y.shape[0]} labels for {X.shape[0]} feature rows")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float32)
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{where}: features contain NaN or Inf in {int(bad.sum())} row(s), first at row {int(np.argmax(bad))}"
        )
    X = _representable(X, where)
    return np.ascontiguousarray(X), y.astype(np.int64)


def _representable(X: np.ndarray, where: str) -> np.ndarray:
    """``X``, promoted to float64 when its squared norms would overflow or underflow float32
    (the solvers form Gram matrices ``X X^T``); refused when even float64 cannot hold them."""
    peak = float(np.abs(X).max())
    if peak == 0.0:
        return X
    scale = peak * np.sqrt(X.shape[1])
    if X.dtype == np.float32 and not 1e-15 < scale < 1e18:
        logger.warning("%s: features reach %.3g; evaluating in float64 so X X^T stays finite", where, peak)
        X = X.astype(np.float64)
    if not 1e-140 < scale < 1e140:
        raise ValueError(
            f"{where}: features of magnitude {peak:.3g} cannot be evaluated (their squared norms "
            "overflow or underflow float64); rescale them"
        )
    return X


def load_features(path: str | Path) -> FeatureSet:
    """Read a features file: ``.npz`` with ``features`` ``(N, d)`` float and ``labels`` ``(N,)`` int.

    Optional keys: ``class_names`` (strings), ``dataset``, ``split``, ``run`` (the training
    run, written by ``fewshot extract --checkpoint``). Files of other toolkits (easyfsl
    parquet, ``.pt`` dicts, restricted pickles) are read by
    :func:`fewshot.features.foreign.read_foreign_features`, chosen by the file name.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unreadable file, missing keys, NaN/Inf, wrong shapes or dtypes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"features file not found: {path}")
    if is_foreign_features(path):  # easyfsl parquet, restricted pickles, .pt dicts
        features, labels, names = read_foreign_features(path)
        return FeatureSet(features, labels, names, path=path)
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            missing = [k for k in ("features", "labels") if k not in keys]
            if missing:
                raise ValueError(f"{path}: missing key(s) {missing}; found {sorted(keys)}")
            features, labels = z["features"], z["labels"]
            names = [str(c) for c in z["class_names"]] if "class_names" in keys else []
            dataset = str(z["dataset"]) if "dataset" in keys else "custom"
            split = str(z["split"]) if "split" in keys else "test"
            run = str(z["run"]) if "run" in keys else ""
    except ValueError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a readable .npz features file ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, MemoryError, KeyError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{path}: not a readable .npz features file ({first})") from None
    return FeatureSet(features, labels, names, dataset, split, path, run)


def save_features(
    path: str | os.PathLike,
    features: np.ndarray,
    labels: np.ndarray,
    *,
    class_names: Sequence[str] | None = None,
    dataset: str = "",
    split: str = "",
    run: str = "",
    cache_key: str = "",
    manifest: Mapping[str, Any] | None = None,
) -> str:
    """Write a feature file atomically (keys: :data:`FEATURE_KEYS`); returns its fingerprint.

    ``run`` names the training run whose checkpoint made the features (``""``: none), see
    :mod:`fewshot.runs`.

    Raises:
        ValueError: ``features`` not 2-D, labels not matching its rows, or a label outside
            ``class_names``.
    """
    features = np.ascontiguousarray(features, dtype=np.float32)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"need features (N, d) and labels (N,), got {features.shape} and {labels.shape}")
    names = list(class_names or [])
    if names and len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
        raise ValueError(f"labels span {labels.min()}..{labels.max()} but there are {len(names)} class names")
    fingerprint = sha256_arrays(features, labels)
    save_npz(
        path,
        features=features,
        labels=labels,
        class_names=np.array(names, dtype=str),
        fingerprint=np.array(fingerprint),
        dataset=np.array(dataset),
        split=np.array(split),
        run=np.array(run),
        cache_key=np.array(cache_key),
        manifest=np.array(json.dumps(dict(manifest or {}), sort_keys=True, default=str)),
    )
    return fingerprint


def features_image_size(path: str | Path) -> list[int] | None:
    """``[height, width]`` the features were extracted at, from a fewshot ``.npz``'s manifest
    (``preprocessing.input_size``); ``None`` when the file does not record it."""
    path = Path(path)
    if is_foreign_features(path) or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if "manifest" not in z.files:
                return None
            manifest = json.loads(str(z["manifest"]))
        size = manifest.get("preprocessing", {}).get("input_size")
        return [int(v) for v in size[1:]] if size and len(size) == 3 else None
    except (OSError, ValueError, TypeError, AttributeError):
        return None
