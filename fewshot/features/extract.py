"""Frozen features: run a backbone once over a split, cache the result on disk.

:func:`extract_features` returns ``(features, labels)`` for an :class:`~fewshot.data.ImageSplit`;
:func:`extract_cached` does the same through a cache directory keyed by the backbone's
weights, the split and the preprocessing, so a second call performs no forward pass.

Feature files (``.npz``, written atomically, read by ``fewshot evaluate --features``)::

    features      (N, d) float32
    labels        (N,)   int64, label k is class_names[k]
    class_names   (C,)   str
    fingerprint   ()     str, fewshot._io.sha256_arrays(features, labels)
    dataset       ()     str, registry name of the benchmark
    split         ()     str
    cache_key     ()     str, SHA-256 of the extraction's identity (see feature_cache_key)
    manifest      ()     str, JSON: backbone, preprocessing, source, versions, time

Pixels are decoded and resized by ``DataLoader`` workers as uint8 tensors (timm's eval
transform without normalisation); conversion to float and normalisation happen batched on
the device, giving the same values as timm's per-image ``ToTensor`` + ``Normalize``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import threading
import time
import warnings
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fewshot._device import resolve_device
from fewshot._io import save_npz, sha256_arrays
from fewshot.models import Preprocessing, eval_transform, resolve_preprocessing, state_dict_sha256

__all__ = [
    "default_cache_dir",
    "extract_features",
    "extract_cached",
    "write_features",
    "feature_cache_key",
    "content_fingerprint",
    "check_input_size",
    "split_identity",
    "model_identity",
    "default_num_workers",
]

class _PixelDataset(torch.utils.data.Dataset):
    """Items of a split as ``(3, H, W)`` uint8 tensors after resize and crop."""

    def __init__(self, split: Any, preprocessing: Preprocessing) -> None:
        self.split = split
        self.transform = eval_transform(preprocessing, normalize=False)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.split.image(index))


def _prefetch(iterable: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """Iterate ``iterable`` in a background thread, up to ``depth`` items ahead.

    With ``num_workers=0`` this overlaps decoding and resizing (PIL releases the GIL) with
    the forward pass (so does torch) without the cost of worker processes on small machines.
    Exceptions of the producer are re-raised here; stopping early stops the thread.
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(entry: tuple[Any, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                items.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in iterable:
                if not put((item, None)):
                    return
        except BaseException as exc:  # handed to the consumer
            put((end, exc))
        else:
            put((end, None))

    thread = threading.Thread(target=produce, name="fewshot-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = items.get()
            if item is end:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        thread.join()


def default_num_workers(device: torch.device | str | None = None) -> int:
    """Loader workers used when none are given.

    On CUDA, up to 8 (leaving one core to the main process). On the CPU the model already
    uses every core through intra-op threads, so 0: images are loaded by a prefetching thread
    of the main process, which on 2 cores measured faster than worker processes
    (``benchmarks/bench_features.py``).
    """
    dev = resolve_device(device)
    if dev.type == "cpu":
        return 0
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def _embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if getattr(model, "num_classes", 0) and hasattr(model, "forward_head"):
        return model.forward_head(model.forward_features(x), pre_logits=True)
    return model(x)


def extract_features(
    model: nn.Module,
    split: Any,
    *,
    preprocessing: Preprocessing | None = None,
    batch_size: int = 256,
    num_workers: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed every item of ``split`` with a frozen backbone.

    The model runs in eval mode under ``torch.inference_mode``, with bf16 autocast on CUDA
    (float32 on the CPU); its training mode is restored afterwards. A model with a
    classifier (``num_classes > 0``) yields its pre-logits features.

    Args:
        model: a backbone, ``(B, 3, H, W)`` → ``(B, d)``.
        split: an :class:`~fewshot.data.ImageSplit` (``len``, ``image(i)``, ``labels``).
        preprocessing: how images become inputs; default ``resolve_preprocessing(model)``.
        batch_size: images per forward pass.
        num_workers: ``DataLoader`` worker processes; 0 loads in a prefetching thread of this
            process. Default :func:`default_num_workers`.
        device: where the model runs; default CUDA when available, else CPU. The model is
            moved there.
        progress: show a tqdm bar.

    Returns:
        ``(features, labels)``: ``(N, d)`` float32 and ``(N,)`` int64 (``split.labels``).

    Raises:
        ValueError: empty split, ``batch_size < 1``, ``num_workers < 0``, or a model whose
            output is not ``(B, d)``.
    """
    from tqdm.auto import tqdm

    n = len(split)
    if n == 0:
        raise ValueError(f"split {getattr(split, 'name', '?')}/{getattr(split, 'split', '?')} has no images")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dev = resolve_device(device)
    workers = default_num_workers(dev) if num_workers is None else int(num_workers)
    if workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    pp = preprocessing if preprocessing is not None else resolve_preprocessing(model)
    labels = np.asarray(split.labels, dtype=np.int64)
    if labels.shape != (n,):
        raise ValueError(f"split.labels has shape {labels.shape}, expected ({n},)")

    loader = torch.utils.data.DataLoader(
        _PixelDataset(split, pp),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=dev.type == "cuda",
        prefetch_factor=4 if workers > 0 else None,
    )
    mean = torch.tensor(pp.mean, device=dev, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(pp.std, device=dev, dtype=torch.float32).view(1, -1, 1, 1)
    was_training = model.training
    model.eval().to(dev)
    out: np.ndarray | None = None
    start = 0
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext()
    batches = loader if workers > 0 else _prefetch(loader)
    try:
        with torch.inference_mode(), tqdm(
            total=n, unit="img", desc="features", disable=not progress, leave=False
        ) as bar:
            for pixels in batches:
                # the same operations, in the same order, as ToTensor + Normalize per image
                x = pixels.to(dev, non_blocking=True).float().div_(255).sub_(mean).div_(std)
                with autocast:
                    f = _embed(model, x)
                if f.ndim != 2 or f.shape[0] != x.shape[0]:
                    raise ValueError(
                        f"backbone output has shape {tuple(f.shape)}, expected (batch, features); "
                        f"create it with num_classes=0 (fewshot.models.create_backbone)"
                    )
                f = f.float().cpu().numpy()
                if out is None:
                    out = np.empty((n, f.shape[1]), dtype=np.float32)
                out[start : start + len(f)] = f
                start += len(f)
                bar.update(len(f))
    finally:
        if isinstance(batches, Generator):
            batches.close()  # stops the prefetch thread
        model.train(was_training)
    if out is None or start != n:
        raise RuntimeError(f"the loader yielded {start} items for a split of {n}")
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        raise ValueError(
            f"the backbone produced NaN or Inf features for {int(bad.sum())} of {n} images "
            f"(first: item {int(np.argmax(bad))}); are its weights finite?"
        )
    return out, labels


def check_input_size(model: nn.Module, preprocessing: Preprocessing) -> None:
    """Run one blank image of ``preprocessing.input_size`` through ``model`` (on the CPU,
    before any output is written) to catch an input size the backbone cannot take.

    Raises:
        ValueError: the forward pass fails (e.g. ``img_size`` too small for the backbone's
            downsampling, or not a multiple of a ViT's patch size).
    """
    was_training = model.training
    x = torch.zeros(1, *preprocessing.input_size)
    try:
        with torch.inference_mode():
            model.eval()
            _embed(model, x)
    except (RuntimeError, ValueError, AssertionError, IndexError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        size = "×".join(map(str, preprocessing.input_size[1:]))
        raise ValueError(f"input size {size} does not fit this backbone ({first}); choose another --img-size") from None
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------- cache


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


def model_identity(model: nn.Module) -> dict[str, Any]:
    """What identifies a backbone's function: class, timm architecture and kwargs, and the
    SHA-256 of its state dict (so random inits and fine-tuned weights never collide)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
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
) -> str:
    """SHA-256 of the canonical JSON of everything that determines the feature file
    (the training ``run`` name is recorded in the file, so it is part of the key)."""
    payload = {
        "model": model_id,
        "split": dict(split_id),
        "preprocessing": preprocessing.to_dict(),
        "precision": precision,
        "run": run,
        "version": 2,
    }
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
) -> tuple[str, dict[str, Any]]:
    dev = resolve_device(device)
    pp = preprocessing if preprocessing is not None else resolve_preprocessing(model)
    info = {
        "model": model_identity(model) if model_id is None else model_id,
        "split": split_identity(split),
        "preprocessing": pp,
        "precision": "bf16" if dev.type == "cuda" else "fp32",
        "device": dev,
    }
    return feature_cache_key(info["model"], info["split"], pp, info["precision"], run), info


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
) -> str:
    """:func:`extract_features`, then :func:`save_features` to ``path`` with the cache key and a
    manifest (``manifest`` plus model, split, preprocessing, precision, time). Returns the
    fingerprint. Arguments and errors as :func:`extract_features` and :func:`extract_cached`.
    """
    key, info = _key(model, split, preprocessing, device, model_id, run)
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
    )
    sid = info["split"]
    record = {
        **dict(manifest or {}),
        "model": info["model"],
        "split": sid,
        "preprocessing": pp.to_dict(),
        "precision": info["precision"],
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
) -> tuple[Path, bool]:
    """Features of ``split`` as a feature file in ``cache_dir``, computed at most once.

    The file is ``cache_dir/<dataset>-<split>-<key[:16]>.npz`` where the key
    (:func:`feature_cache_key`) covers the model (``model_id``, default
    :func:`model_identity`, which hashes the weights), the split (:func:`split_identity`),
    the preprocessing and the precision (bf16 on CUDA, fp32 on the CPU). An existing, intact
    file with that key is a hit: no forward pass runs. A damaged one is recomputed.

    Args:
        model, split, preprocessing, batch_size, num_workers, device, progress: as
            :func:`extract_features`.
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
    key, info = _key(model, split, preprocessing, device, model_id, run)
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
    )
    return path, False


def default_cache_dir() -> Path:
    """``$FEWSHOT_CACHE_DIR``, else ``$XDG_CACHE_HOME/fewshot/features`` (``~/.cache/...``)."""
    env = os.environ.get("FEWSHOT_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fewshot" / "features"
