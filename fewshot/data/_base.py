"""The dataset interface every loader returns, and its three storage kinds.

:class:`ImageSplit` holds the labels up front and decodes an image only when item ``i`` is
asked for. Loaders build one of:

- :class:`ArraySplit` — images already in a uint8 array (CIFAR pickles, miniImageNet cache,
  tieredImageNet ``.npz``, digits); item ``i`` is a view of one row.
- :class:`FileSplit` — one image file per item (PNG/JPEG folders, CSV + image folder).
- :class:`EncodedSplit` — encoded image bytes held in memory (tieredImageNet PNG pickle).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["ImageSplit", "ArraySplit", "FileSplit", "EncodedSplit"]


class ImageSplit:
    """One split of a benchmark: labels up front, images decoded lazily.

    Subclasses implement :meth:`_load` (decode item ``i`` as a ``PIL.Image``).

    Attributes:
        name: registry name of the benchmark (``"cifar-fs"``, ``"mini-imagenet"``, ...).
        split: ``"train"``, ``"val"`` or ``"test"``.
        labels: ``(N,)`` int64, label *k* is the *k*-th class of the split's class list.
        class_names: the split's class list, in canonical order.
        source: the file or directory the items come from (for messages and manifests).

    ``split[i]`` returns ``(image, label)`` with an RGB ``PIL.Image``; ``split.image(i)`` the
    image alone; ``split.array(i)`` the image as an ``(H, W, 3)`` uint8 array.
    """

    def __init__(
        self,
        name: str,
        split: str,
        labels: np.ndarray,
        class_names: Sequence[str],
        source: str = "",
    ) -> None:
        self.name = name
        self.split = split
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = list(class_names)
        self.source = str(source)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def _load(self, index: int) -> Image.Image:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_index(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        return int(index) % len(self)

    def image(self, index: int) -> Image.Image:
        """Item ``index`` as an RGB ``PIL.Image``.

        Raises:
            IndexError: ``index`` out of range.
            ValueError: the stored image cannot be decoded (the message names its file).
        """
        img = self._load(self._check_index(index))
        return img if img.mode == "RGB" else img.convert("RGB")

    def array(self, index: int) -> np.ndarray:
        """Item ``index`` as an ``(H, W, 3)`` uint8 RGB array."""
        return np.asarray(self.image(index), dtype=np.uint8)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return self.image(index), int(self.labels[index])

    def counts(self) -> np.ndarray:
        """Images per class, ``(n_classes,)`` int64."""
        return np.bincount(self.labels, minlength=len(self.class_names)).astype(np.int64)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, "
            f"n={len(self)}, classes={len(self.class_names)})"
        )


class ArraySplit(ImageSplit):
    """Items are rows of a uint8 image array, selected by ``rows`` (no copy is made).

    Args:
        images: ``(M, H, W, 3)`` or ``(M, H, W)`` uint8 (channels last), or ``(M, 3, H, W)``
            with ``channels_first=True``. May be a ``numpy.memmap``.
        rows: ``(N,)`` row of ``images`` for each item; ``None`` means item ``i`` is row ``i``.
    """

    def __init__(
        self,
        name: str,
        split: str,
        labels: np.ndarray,
        class_names: Sequence[str],
        images: np.ndarray,
        rows: np.ndarray | None = None,
        *,
        channels_first: bool = False,
        source: str = "",
    ) -> None:
        super().__init__(name, split, labels, class_names, source)
        self.images = images
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.channels_first = channels_first
        n_rows = len(self) if self.rows is None else self.rows.shape[0]
        if n_rows != len(self):
            raise ValueError(f"{source}: {n_rows} rows for {len(self)} labels")

    def array(self, index: int) -> np.ndarray:
        index = self._check_index(index)
        row = index if self.rows is None else int(self.rows[index])
        arr = np.asarray(self.images[row])
        if self.channels_first:
            arr = arr.transpose(1, 2, 0)
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        return np.ascontiguousarray(arr, dtype=np.uint8)

    def _load(self, index: int) -> Image.Image:
        return Image.fromarray(self.array(index))


def _decode(data: bytes | np.ndarray | str | os.PathLike, what: str) -> Image.Image:
    try:
        src = data if isinstance(data, (str, os.PathLike)) else io.BytesIO(bytes(memoryview(data)))
        with Image.open(src) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image file is missing: {what}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"cannot decode image {what}: {detail}") from None


class FileSplit(ImageSplit):
    """Items are image files (PNG, JPEG, ...), opened and decoded on access."""

    def __init__(
        self,
        name: str,
        split: str,
        labels: np.ndarray,
        class_names: Sequence[str],
        paths: Sequence[str | os.PathLike],
        source: str = "",
    ) -> None:
        super().__init__(name, split, labels, class_names, source)
        self.paths = [str(p) for p in paths]
        if len(self.paths) != len(self):
            raise ValueError(f"{source}: {len(self.paths)} files for {len(self)} labels")

    def path(self, index: int) -> Path:
        """The file of item ``index``."""
        return Path(self.paths[self._check_index(index)])

    def _load(self, index: int) -> Image.Image:
        return _decode(self.paths[index], self.paths[index])


class EncodedSplit(ImageSplit):
    """Items are encoded images (e.g. PNG bytes) held in memory, decoded on access."""

    def __init__(
        self,
        name: str,
        split: str,
        labels: np.ndarray,
        class_names: Sequence[str],
        blobs: Sequence[bytes | np.ndarray],
        rows: np.ndarray | None = None,
        source: str = "",
    ) -> None:
        super().__init__(name, split, labels, class_names, source)
        self.blobs = blobs
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        n_rows = len(self) if self.rows is None else self.rows.shape[0]
        if n_rows != len(self):
            raise ValueError(f"{source}: {n_rows} rows for {len(self)} labels")

    def _load(self, index: int) -> Image.Image:
        row = index if self.rows is None else int(self.rows[index])
        return _decode(self.blobs[row], f"#{row} in {self.source}")
