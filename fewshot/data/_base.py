"""The dataset interface every loader returns."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

__all__ = ["ImageSplit"]


class ImageSplit:
    """One split of a benchmark: labels up front, images decoded lazily.

    Subclasses implement :meth:`_load` (decode item ``i`` as an RGB ``PIL.Image``).

    Attributes:
        name: registry name of the benchmark (``"cifar-fs"``, ``"mini-imagenet"``, ...).
        split: ``"train"``, ``"val"`` or ``"test"``.
        labels: ``(N,)`` int64, label *k* is the *k*-th class of the split's class list.
        class_names: the split's class list, in canonical order.
        source: the file or directory the items come from (for messages and manifests).

    ``split[i]`` returns ``(image, label)``; ``split.image(i)`` the image alone.
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

    def image(self, index: int) -> Image.Image:
        """Item ``index`` as an RGB ``PIL.Image``."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        img = self._load(int(index) % len(self))
        return img if img.mode == "RGB" else img.convert("RGB")

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
