"""The feature cache: a split's features computed once per backbone, split and preprocessing.

:func:`extract_cached` returns a feature file in a cache directory (default
:func:`default_cache_dir`) named by :func:`feature_cache_key`, which covers the backbone's
weights (:func:`model_identity`), the split's content (:func:`split_identity`,
:func:`content_fingerprint`), the preprocessing and the precision; a second call performs no
forward pass. :func:`write_features` extracts and writes such a keyed file to any path.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fewshot._cache import default_cache_dir as _default_cache_dir
from fewshot._device import resolve_device
from fewshot._io import sha256_arrays
from fewshot._validate import check_bool
from fewshot.backbones.weights import state_dict_sha256
from fewshot.features.extract import extract_features, resolve_channels_last
from fewshot.features.file import save_features
from fewshot.transforms import Preprocessing, resolve_preprocessing

__all__ = [
    "default_cache_dir",
    "extract_cached",
    "write_features",
    "feature_cache_key",
    "content_fingerprint",
    "split_identity",
    "model_identity",
]


def split_identity(split: Any) -> dict[str, Any]:
    """What identifies a split's content without decoding images: name, split, source,
    size, classes, the SHA-256 of its labels and a fingerprint of its pixels
    (:func:`content_fingerprint`)."""
    labels = np.asarray(split.labels, dtype=np.int64)
    return {
        "dataset": str(getattr(split, "name", "")),
        "split": str(getattr(split, "split", "")),
        "source": str(getattr(split, "source", "")),
        "n": int(labels.shape[0]),
        "class_names": list(getattr(split, "class_names", [])),
        "labels_sha256": sha256_arrays(labels),
        "content": content_fingerprint(split),
    }


def content_fingerprint(split: Any) -> str:
    """SHA-256 that changes when the images of ``split`` change on disk or in memory.

    Image files (:class:`~fewshot.data.FileSplit`): each file's path, size and modification
    time (``stat``, no decoding; rewriting an image changes its mtime). Arrays
    (:class:`~fewshot.data.ArraySplit`) and encoded blobs (``EncodedSplit``): their bytes (and
    the row map). Anything else: the ``stat`` of its ``source``.
    """
    h = hashlib.sha256()
    paths = getattr(split, "paths", None)
    if paths is not None:
        for p in paths:
            try:
                st = os.stat(p)
                h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{p}|missing\n".encode())
        return h.hexdigest()
    rows = getattr(split, "rows", None)
    if rows is not None:
        h.update(sha256_arrays(np.asarray(rows)).encode())
    images = getattr(split, "images", None)
    if isinstance(images, np.ndarray):
        h.update(sha256_arrays(images).encode())
        return h.hexdigest()
    blobs = getattr(split, "blobs", None)
    if blobs is not None:
        for blob in blobs:
            data = blob if isinstance(blob, (bytes, bytearray)) else np.asarray(blob).tobytes()
            h.update(hashlib.sha256(data).digest())
        return h.hexdigest()
    source = str(getattr(split, "source", ""))
    try:
        st = os.stat(source)
        h.update(f"{source}|{st.st_size}|{st.st_mtime_ns}".encode())
    except OSError:
        h.update(source.encode())
    return h.hexdigest()


def _class_path(cls: type) -> str:
    """``module.qualname`` of a model class; fewshot's own backbones are named by their public
    package (``fewshot.backbones.Conv4``), so moving a class between the package's modules does
    not invalidate the caches made before."""
    module = cls.__module__
    if module.startswith("fewshot.backbones."):
        module = "fewshot.backbones"
    return f"{module}.{cls.__qualname__}"


def model_identity(model: nn.Module) -> dict[str, Any]:
    """What identifies a backbone's function: class, timm architecture and kwargs, and the
    SHA-256 of its state dict (so random inits and fine-tuned weights never collide)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return {
        "class": _class_path(type(model)),
        "architecture": cfg.get("architecture") if isinstance(cfg, Mapping) else None,
        "model_args": json.loads(json.dumps(getattr(model, "_model_args", {}), sort_keys=True, default=str)),
        "weights_sha256": state_dict_sha256(model),
    }


def feature_cache_key(
    model_id: Mapping[str, Any] | str,
    split_id: Mapping[str, Any],
    preprocessing: Preprocessing,
    precision: str,
    run: str = "",
    memory_format: str = "contiguous",
    fold_batchnorm: bool = False,
) -> str:
    """SHA-256 of the canonical JSON of everything that determines the feature file
    (the training ``run`` name is recorded in the file, so it is part of the key). The memory
    format (``"contiguous"`` or ``"channels_last"``) and BatchNorm folding, whose features
    differ at float rounding, enter the key only when channels-last or folded, so the keys of
    contiguous, unfolded features are those of before."""
    payload = {
        "model": model_id,
        "split": dict(split_id),
        "preprocessing": preprocessing.to_dict(),
        "precision": precision,
        "run": run,
        "version": 2,
    }
    if memory_format != "contiguous":
        payload["memory_format"] = memory_format
    if fold_batchnorm:
        payload["batchnorm"] = "folded"
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _read_valid(path: Path, key: str) -> bool:
    """Whether ``path`` is an intact feature file for ``key``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["cache_key"]) != key:
                return False
            return str(data["fingerprint"]) == sha256_arrays(
                np.ascontiguousarray(data["features"]), np.ascontiguousarray(data["labels"])
            )
    except Exception:  # truncated zip, missing key, bad dtype: not a usable entry
        return False


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text) or "split"


def _key(
    model: nn.Module,
    split: Any,
    preprocessing: Preprocessing | None,
    device: torch.device | str | None,
    model_id: Mapping[str, Any] | str | None,
    run: str = "",
    channels_last: bool | None = None,
    fold_batchnorm: bool = True,
) -> tuple[str, dict[str, Any]]:
    dev = resolve_device(device)
    pp = preprocessing if preprocessing is not None else resolve_preprocessing(model)
    cl = resolve_channels_last(model, channels_last)
    fold_batchnorm = check_bool("fold_batchnorm", fold_batchnorm)
    info = {
        "model": model_identity(model) if model_id is None else model_id,
        "split": split_identity(split),
        "preprocessing": pp,
        "precision": "bf16" if dev.type == "cuda" else "fp32",
        "memory_format": "channels_last" if cl else "contiguous",
        "channels_last": cl,
        "fold_batchnorm": fold_batchnorm,
        "device": dev,
    }
    key = feature_cache_key(
        info["model"], info["split"], pp, info["precision"], run, info["memory_format"], fold_batchnorm
    )
    return key, info


def write_features(
    model: nn.Module,
    split: Any,
    path: str | os.PathLike,
    *,
    preprocessing: Preprocessing | None = None,
    model_id: Mapping[str, Any] | str | None = None,
    batch_size: int = 256,
    num_workers: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    manifest: Mapping[str, Any] | None = None,
    run: str = "",
    channels_last: bool | None = None,
    fold_batchnorm: bool = True,
) -> str:
    """:func:`extract_features`, then :func:`save_features` to ``path`` with the cache key and a
    manifest (``manifest`` plus model, split, preprocessing, precision, memory format,
    BatchNorm folding, time).
    Returns the fingerprint. Arguments and errors as :func:`extract_features` and
    :func:`extract_cached`.
    """
    key, info = _key(model, split, preprocessing, device, model_id, run, channels_last, fold_batchnorm)
    pp, dev = info["preprocessing"], info["device"]
    t0 = time.perf_counter()
    features, labels = extract_features(
        model,
        split,
        preprocessing=pp,
        batch_size=batch_size,
        num_workers=num_workers,
        device=dev,
        progress=progress,
        channels_last=info["channels_last"],
        fold_batchnorm=fold_batchnorm,
    )
    sid = info["split"]
    record = {
        **dict(manifest or {}),
        "model": info["model"],
        "split": sid,
        "preprocessing": pp.to_dict(),
        "precision": info["precision"],
        "memory_format": info["memory_format"],
        "batchnorm": "folded" if fold_batchnorm else "as trained",
        "device": str(dev),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return save_features(
        path,
        features,
        labels,
        class_names=sid["class_names"],
        dataset=sid["dataset"],
        split=sid["split"],
        run=run,
        cache_key=key,
        manifest=record,
    )


def extract_cached(
    model: nn.Module,
    split: Any,
    cache_dir: str | os.PathLike,
    *,
    preprocessing: Preprocessing | None = None,
    model_id: Mapping[str, Any] | str | None = None,
    batch_size: int = 256,
    num_workers: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    manifest: Mapping[str, Any] | None = None,
    run: str = "",
    channels_last: bool | None = None,
    fold_batchnorm: bool = True,
) -> tuple[Path, bool]:
    """Features of ``split`` as a feature file in ``cache_dir``, computed at most once.

    The file is ``cache_dir/<dataset>-<split>-<key[:16]>.npz`` where the key
    (:func:`feature_cache_key`) covers the model (``model_id``, default
    :func:`model_identity`, which hashes the weights), the split (:func:`split_identity`),
    the preprocessing, the precision (bf16 on CUDA, fp32 on the CPU), the memory format
    (channels-last or not, see :func:`~fewshot.features.extract.default_channels_last`) and
    whether BatchNorm is folded. An existing, intact
    file with that key is a hit: no forward pass runs. A damaged one is recomputed.

    Args:
        model, split, preprocessing, batch_size, num_workers, device, progress, channels_last,
        fold_batchnorm: as :func:`extract_features`.
        cache_dir: directory of feature files (created when missing).
        model_id: identity of the model for the key (e.g. a checkpoint's SHA-256), when
            hashing its state dict is not wanted.
        manifest: extra JSON stored in the file's ``manifest``.
        run: the training run's name stored in the file (part of the key).

    Returns:
        ``(path, hit)``: the feature file and whether it came from the cache.

    Raises:
        As :func:`extract_features`.
    """
    key, info = _key(model, split, preprocessing, device, model_id, run, channels_last, fold_batchnorm)
    sid = info["split"]
    path = Path(cache_dir) / f"{_safe(sid['dataset'])}-{_safe(sid['split'])}-{key[:16]}.npz"
    if path.is_file():
        if _read_valid(path, key):
            return path, True
        warnings.warn(f"damaged feature cache entry {path}; recomputing", RuntimeWarning, stacklevel=2)
    write_features(
        model,
        split,
        path,
        preprocessing=info["preprocessing"],
        model_id=info["model"],
        batch_size=batch_size,
        num_workers=num_workers,
        device=info["device"],
        progress=progress,
        manifest=manifest,
        run=run,
        channels_last=info["channels_last"],
        fold_batchnorm=fold_batchnorm,
    )
    return path, False


def default_cache_dir() -> Path:
    """``$FEWSHOT_CACHE_DIR``, else ``$XDG_CACHE_HOME/fewshot/features`` (``~/.cache/...``)."""
    return _default_cache_dir("features")
