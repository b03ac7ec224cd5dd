"""Feature files written by other toolkits, read into ``(features, labels, class_names)``.

:func:`fewshot.features.load_features` dispatches here by file name
(:data:`FOREIGN_SUFFIXES`); ``.npz`` stays with it.

``*.parquet`` / ``*.parquet.gzip`` / ``*.pq``
    easyfsl's ``FeaturesDataset`` source: a DataFrame with an ``embedding`` column (one vector
    per row) and a ``class_name`` column, as ``easyfsl.utils.predict_embeddings`` returns and
    ``DataFrame.to_parquet`` writes. Labels are the classes in order of first appearance
    (``FeaturesDataset.from_dataframe``'s rule), so label *k* is ``class_names[k]``. Needs
    ``pyarrow`` (optional; the error says so when it is missing).
``*.pkl`` / ``*.pickle``
    Read only through the restricted unpickler (:func:`fewshot.data.load_pickle`: NumPy arrays
    and builtin containers). A pickled *DataFrame* (``DataFrame.to_pickle``) needs pandas and
    possibly torch classes, which can run code, so it is refused with that reason; a plain
    dict ``{class_name: (n, d) array}`` (``FeaturesDataset.from_dict``'s input) or
    ``{"features": array, "labels": array}`` is accepted.
``*.pt`` / ``*.pth``
    ``torch.save({"features": (N, d) tensor, "labels": (N,) tensor[, "class_names": [...]]})``,
    read with ``torch.load(weights_only=True)`` (tensors and containers only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fewshot.data import load_pickle

__all__ = ["FOREIGN_SUFFIXES", "is_foreign_features", "read_foreign_features"]

#: File name endings read here rather than as ``.npz``.
FOREIGN_SUFFIXES: tuple[str, ...] = (".parquet", ".parquet.gzip", ".pq", ".pkl", ".pickle", ".pt", ".pth")

Triple = tuple[np.ndarray, np.ndarray, list[str]]


def is_foreign_features(path: str | Path) -> bool:
    """Whether ``path``'s name ends in one of :data:`FOREIGN_SUFFIXES`."""
    return str(path).lower().endswith(FOREIGN_SUFFIXES)


def read_foreign_features(path: str | Path) -> Triple:
    """Read a foreign feature file (see the module docstring).

    Returns:
        ``features`` ``(N, d)`` (as stored: float32/float64), ``labels`` ``(N,)`` int64 and
        ``class_names`` (label order; empty when the file has none).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: an unknown ending, unreadable content, a refused pickle, missing
            columns/keys, ragged embeddings (the message names the file and the reason).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"features file not found: {path}")
    name = path.name.lower()
    if name.endswith((".parquet", ".parquet.gzip", ".pq")):
        return _from_dataframe(_read_parquet(path), path)
    if name.endswith((".pkl", ".pickle")):
        return _from_pickle(path)
    if name.endswith((".pt", ".pth")):
        return _from_torch(path)
    raise ValueError(f"{path}: unknown features format; expected .npz or one of {', '.join(FOREIGN_SUFFIXES)}")


def _read_parquet(path: Path) -> Any:
    import pandas as pd  # only this format needs pandas (and the optional pyarrow)

    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ValueError(
            f"{path}: reading parquet needs pyarrow, which is not installed (pip install pyarrow)"
        ) from None
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises its own error types for corrupt files
        raise ValueError(
            f"{path}: not a readable parquet file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None


def _from_dataframe(df: Any, path: Path) -> Triple:
    missing = [c for c in ("embedding", "class_name") if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path}: an easyfsl features table needs columns embedding and class_name; missing {missing}, found {list(df.columns)}"
        )
    if len(df) == 0:
        raise ValueError(f"{path}: the features table is empty")
    rows = [np.asarray(v) for v in df["embedding"]]
    dims = {r.shape for r in rows}
    if len(dims) != 1 or rows[0].ndim != 1:
        raise ValueError(f"{path}: every embedding must be a 1-D vector of one length, found shapes {sorted(dims)[:3]}")
    names = [str(c) for c in df["class_name"]]
    return np.stack(rows), *_codes(names)


def _codes(names: list[str]) -> tuple[np.ndarray, list[str]]:
    index: dict[str, int] = {}
    labels = np.array([index.setdefault(n, len(index)) for n in names], dtype=np.int64)
    return labels, list(index)


def _from_pickle(path: Path) -> Triple:
    try:
        obj = load_pickle(path)
    except ValueError as exc:
        if "refusing to unpickle global" in str(exc):
            raise ValueError(
                f"{exc}; a pickled DataFrame (easyfsl FeaturesDataset source) can run code when loaded "
                "and is not read: save it with DataFrame.to_parquet instead"
            ) from None
        raise
    if not isinstance(obj, dict) or not obj:
        raise ValueError(
            f"{path}: expected a dict ({{class_name: (n, d) array}} or features/labels), got {type(obj).__name__}"
        )
    if "features" in obj and "labels" in obj:
        names = [str(c) for c in obj.get("class_names", [])]
        return np.asarray(obj["features"]), np.asarray(obj["labels"]), names
    arrays = []
    for key, value in obj.items():
        if not isinstance(value, np.ndarray) or value.ndim != 2:
            raise ValueError(f"{path}: class {key!r} should map to an (n, d) array, got {type(value).__name__}")
        arrays.append(value)
    labels = np.concatenate([np.full(len(a), k, dtype=np.int64) for k, a in enumerate(arrays)])
    return np.concatenate(arrays), labels, [str(k) for k in obj]


def _from_torch(path: Path) -> Triple:
    import torch  # only this format needs torch: reading the others stays NumPy-only

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for refused globals, RuntimeError for bad zips
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{path}: not readable with torch.load(weights_only=True) ({first})") from None
    if not isinstance(obj, dict) or not {"features", "labels"} <= set(obj):
        found = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path}: expected a dict with 'features' and 'labels' tensors; found {found}")
    feats, labels = obj["features"], obj["labels"]
    for key, value in (("features", feats), ("labels", labels)):
        if not isinstance(value, (torch.Tensor, np.ndarray)):
            raise ValueError(f"{path}: {key!r} must be a tensor, got {type(value).__name__}")
    to_np = lambda t: t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t  # noqa: E731
    names = [str(c) for c in obj.get("class_names", [])]
    return to_np(feats), to_np(labels), names
