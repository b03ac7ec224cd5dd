"""Frozen features: run a backbone once over a split.

:func:`extract_features` returns ``(features, labels)`` for an :class:`~fewshot.data.ImageSplit`
(:mod:`fewshot.features.cache` keeps them on disk, :mod:`fewshot.features.file` is their file).

Pixels are decoded, resized and cropped by ``DataLoader`` workers (or a prefetching thread) as
``(H, W, C)`` uint8 tensors (timm's eval transform without its to-tensor step); conversion to
float and normalisation happen batched on the device, giving the same values as timm's
per-image ``ToTensor`` + ``Normalize``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Generator, Iterable, Iterator
from typing import Any

import numpy as np
import PIL.Image
import torch
from torch import nn
from tqdm.auto import tqdm

from fewshot._device import resolve_device
from fewshot._validate import check_bool, check_int
from fewshot.allocator import reuse_freed_memory_on
from fewshot.backbones.fold import fold_batchnorm
from fewshot.transforms import Preprocessing, frame_transform, resolve_preprocessing

__all__ = [
    "extract_features",
    "check_input_size",
    "default_num_workers",
    "default_channels_last",
    "resolve_channels_last",
    "CHANNELS_LAST_FAMILIES",
]

#: Backbone classes (``type(model).__name__``) that extraction feeds in channels-last memory
#: format unless told otherwise: the families whose extraction measured faster that way on the
#: CPU (``benchmarks/bench_features.py``: Conv-4, ResNet-12, timm's ResNet, EfficientNet).
CHANNELS_LAST_FAMILIES: frozenset[str] = frozenset({"Conv4", "ResNet12", "FewShotResNet12", "ResNet", "EfficientNet"})


class _PixelDataset(torch.utils.data.Dataset):
    """Items of a split as ``(H, W, C)`` uint8 tensors after timm's eval resize and crop.

    Pixels stay in the image's own interleaved layout: a batch ``(B, H, W, C)`` permuted to
    ``(B, C, H, W)`` is already channels-last in memory, so a channels-last model gets its
    input without the two transposes of ``PILToTensor`` + ``torch.stack`` + ``contiguous``.
    """

    def __init__(self, split: Any, preprocessing: Preprocessing) -> None:
        self.split = split
        self.frame = frame_transform(preprocessing)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.split.image(index)
        if not isinstance(image, PIL.Image.Image):  # a (C, H, W) tensor image: resized and cropped as one
            return self.frame(image).permute(1, 2, 0)
        pixels = np.array(self.frame(image), dtype=np.uint8)
        return torch.from_numpy(pixels[:, :, None] if pixels.ndim == 2 else pixels)


class _Normalizer:
    """``(B, H, W, C)`` uint8 pixels → the model's ``(B, C, H, W)`` float32 input in
    ``memory_format``: ``(x / 255 - mean) / std``, the operations of ``ToTensor`` +
    ``Normalize`` per image in the same order, so the values are bitwise theirs.

    For a channels-last model the pixels are normalised in their own interleaved layout
    (already channels-last once permuted) against mean and std tiled over one image's
    ``H·W·C`` values: every operation then runs over contiguous rows, about 6× faster on the
    CPU than broadcasting a ``(1, C, 1, 1)`` mean over channels-last memory, whose innermost
    dimension has only ``C`` elements. A contiguous model gets one uint8 transpose first.
    """

    def __init__(self, preprocessing: Preprocessing, device: torch.device, memory_format: torch.memory_format) -> None:
        self.mean = torch.tensor(preprocessing.mean, device=device, dtype=torch.float32)
        self.std = torch.tensor(preprocessing.std, device=device, dtype=torch.float32)
        self.channels_last = memory_format == torch.channels_last
        self._tiled: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        b, h, w, c = pixels.shape
        if not self.channels_last or c != len(self.mean):
            x = pixels.permute(0, 3, 1, 2).contiguous()
            return x.float().div_(255).sub_(self.mean.view(1, -1, 1, 1)).div_(self.std.view(1, -1, 1, 1))
        if (h, w) not in self._tiled:
            self._tiled[h, w] = (self.mean.repeat(h * w), self.std.repeat(h * w))
        mean, std = self._tiled[h, w]
        x = pixels.reshape(b, h * w * c).float().div_(255).sub_(mean).div_(std)
        return x.view(b, h, w, c).permute(0, 3, 1, 2)


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
    (an earlier ``benchmarks/bench_features.py``, with ``--workers 0 1``).
    """
    dev = resolve_device(device)
    if dev.type == "cpu":
        return 0
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def default_channels_last(model: nn.Module) -> bool:
    """Whether extraction runs ``model`` in channels-last memory format by default: for the
    families in :data:`CHANNELS_LAST_FAMILIES`, on any device (other models, e.g. ViTs, stay
    contiguous)."""
    return type(model).__name__ in CHANNELS_LAST_FAMILIES


def resolve_channels_last(model: nn.Module, channels_last: bool | None) -> bool:
    """``channels_last``, or :func:`default_channels_last` when it is None.

    Raises:
        ValueError: ``channels_last`` neither a bool nor None.
    """
    if channels_last is None:
        return default_channels_last(model)
    if not isinstance(channels_last, bool):
        raise ValueError(f"channels_last must be True, False or None (auto), got {channels_last!r}")
    return channels_last


def _is_channels_last(model: nn.Module) -> bool:
    """Whether some 4-D parameter of ``model`` is stored channels-last (and not contiguous)."""
    return any(p.ndim == 4 and not p.is_contiguous() for p in model.parameters())


def _embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if getattr(model, "num_classes", 0) and hasattr(model, "forward_head"):
        return model.forward_head(model.forward_features(x), pre_logits=True)
    return model(x)


def _folded(model: nn.Module, pp: Preprocessing, dev: torch.device, memory_format: torch.memory_format) -> nn.Module:
    """:func:`~fewshot.backbones.fold.fold_batchnorm` of ``model``, probed and checked on one
    random input of its input size (a fixed seed): two forward passes of one image."""
    example = torch.randn(1, *pp.input_size, generator=torch.Generator().manual_seed(0))
    return fold_batchnorm(model, example.to(dev).contiguous(memory_format=memory_format), forward=_embed)


def _restore(model: nn.Module, was_training: bool, restore_layout: bool) -> None:
    if restore_layout:
        model.to(memory_format=torch.contiguous_format)
    model.train(was_training)


def extract_features(
    model: nn.Module,
    split: Any,
    *,
    preprocessing: Preprocessing | None = None,
    batch_size: int = 256,
    num_workers: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    channels_last: bool | None = None,
    fold_batchnorm: bool = True,
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
        channels_last: run the model and its inputs in channels-last memory format (same
            features up to float rounding); None (default): :func:`default_channels_last`.
            The model's parameters are converted for the extraction and restored afterwards.
        fold_batchnorm: run a copy of the model with each BatchNorm that follows a convolution
            folded into it (:func:`fewshot.backbones.fold_batchnorm`: the same features up to
            float rounding, checked on a random batch, without the BatchNorm passes); the
            model itself is not changed. Default True.

    Returns:
        ``(features, labels)``: ``(N, d)`` float32 and ``(N,)`` int64 (``split.labels``).

    Raises:
        ValueError: empty split, ``batch_size < 1``, ``num_workers < 0``, ``channels_last``
            not a bool or None, ``fold_batchnorm`` not a bool, or a model whose output is not
            ``(B, d)``.
    """
    n = len(split)
    if n == 0:
        raise ValueError(f"split {getattr(split, 'name', '?')}/{getattr(split, 'split', '?')} has no images")
    check_int("batch_size", batch_size)
    dev = resolve_device(device)
    workers = default_num_workers(dev) if num_workers is None else check_int("num_workers", num_workers, low=0)
    cl = resolve_channels_last(model, channels_last)
    fold_batchnorm = check_bool("fold_batchnorm", fold_batchnorm)
    memory_format = torch.channels_last if cl else torch.contiguous_format
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
    normalize = _Normalizer(pp, dev, memory_format)
    was_training = model.training
    model.eval().to(dev)
    restore_layout = cl and not _is_channels_last(model)
    if cl:
        model.to(memory_format=torch.channels_last)
    out: np.ndarray | None = None
    start = 0
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext()
    batches = loader if workers > 0 else _prefetch(loader)
    try:
        with (
            torch.inference_mode(),
            reuse_freed_memory_on(dev),
            tqdm(total=n, unit="img", desc="features", disable=not progress, leave=False) as bar,
        ):
            net = _folded(model, pp, dev, memory_format) if fold_batchnorm else model
            for pixels in batches:
                x = normalize(pixels.to(dev, non_blocking=True))
                with autocast:
                    f = _embed(net, x)
                if f.ndim != 2 or f.shape[0] != x.shape[0]:
                    raise ValueError(
                        f"backbone output has shape {tuple(f.shape)}, expected (batch, features); "
                        f"create it with num_classes=0 (fewshot.create_backbone)"
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
        _restore(model, was_training, restore_layout)
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
