"""Training data: the held-out validation part of the base classes, two augmented views per
image, and a batch sampler whose every choice is a function of ``(seed, epoch, step)``.

Determinism is what makes a resumed run identical to an uninterrupted one. Nothing here
reads a global RNG state:

- the data order of epoch ``e`` is ``numpy.random.default_rng([seed, ORDER, e]).permutation``;
- every item of epoch ``e`` carries its own augmentation seed (from
  ``default_rng([seed, AUGMENT, e])``, one per training image), and :class:`TwoViews` seeds
  torch's CPU generator with it right before augmenting that image — so the views do not
  depend on which ``DataLoader`` worker, or which process, makes them;
- validation items carry seeds that do not change between epochs, so the validation loss
  of different epochs is measured on the same views.

A *global* batch of ``batch_size`` images is cut from the permutation; process ``r`` of ``N``
takes the ``r``-th contiguous ``batch_size / N`` images of it, so N processes with batch
``b`` see exactly the images of one process with batch ``N * b``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

__all__ = [
    "holdout_split",
    "TwoViews",
    "FeatureViews",
    "TrainBatchSampler",
    "ValBatchSampler",
    "step_seed",
    "collate_views",
]

# Streams of the seed sequences, so the uses of one seed never share random numbers.
_SPLIT, _ORDER, _AUGMENT, _VAL, _STEP = 1, 2, 3, 4, 5
_MAX_SEED = 2**63 - 1


def holdout_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, stratified split of a split's items into training and validation indices.

    Each class with ``n`` images gives ``max(1, round(fraction * n))`` of them to validation
    (none when ``fraction == 0``), chosen by ``numpy.random.default_rng([seed, 1, class])``,
    and keeps at least one for training.

    Args:
        labels: ``(N,)`` integer labels.
        fraction: share of each class held out, in [0, 1).
        seed: the run's seed.

    Returns:
        ``(train, val)``: sorted int64 index arrays that partition ``range(N)``.

    Raises:
        ValueError: ``fraction`` outside [0, 1), or a class with a single image when images
            are held out (it cannot be in both parts).
    """
    labels = np.asarray(labels, dtype=np.int64)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return np.arange(labels.size, dtype=np.int64), np.zeros(0, dtype=np.int64)
    val: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if idx.size < 2:
            raise ValueError(
                f"class {int(c)} has {idx.size} image(s); holding out validation images needs >= 2 per class "
                f"(or val_fraction = 0)"
            )
        k = min(idx.size - 1, max(1, int(round(fraction * idx.size))))
        rng = np.random.default_rng([seed, _SPLIT, int(c)])
        val.append(rng.choice(idx, size=k, replace=False))
    val_idx = np.sort(np.concatenate(val)).astype(np.int64)
    train_idx = np.setdiff1d(np.arange(labels.size, dtype=np.int64), val_idx)
    return train_idx, val_idx


def step_seed(seed: int, epoch: int, step: int, rank: int = 0) -> int:
    """The seed of torch's RNGs for training step ``step`` of ``epoch`` on process ``rank``
    (dropout and anything else the model draws)."""
    state = np.random.SeedSequence([seed, _STEP, epoch, step, rank]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & _MAX_SEED


class TwoViews(torch.utils.data.Dataset):
    """Items ``(views, label, instance_id)`` of a subset of a split.

    An item is asked for as ``(position, seed)`` (what the samplers yield): the image
    ``split.image(indices[position])`` is augmented ``views`` times with torch's CPU
    generator seeded by ``seed``.

    Returns per item:
        views: ``(views, 3, H, W)``, stacked outputs of ``transform``: uint8 pixels in
            fine-tuning (``train_transform(..., normalize=False)``; a quarter of float32's
            bytes through the worker queues and the host-to-device copy; the trainer
            normalises them on the device, :func:`fewshot.training.loop.normalize_views`),
            float32 with a normalising transform.
        label: int, the image's label.
        instance_id: int, the image's index in the split (unique per image, shared by its
            views; SimCLR's positives).
    """

    def __init__(
        self, split: Any, indices: np.ndarray, transform: Callable[[Any], torch.Tensor], views: int = 2
    ) -> None:
        self.split = split
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = np.asarray(split.labels, dtype=np.int64)[self.indices]
        self.transform = transform
        self.views = int(views)

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int, int]:
        position, seed = key
        index = int(self.indices[position])
        image = self.split.image(index)
        torch.default_generator.manual_seed(int(seed))
        views = torch.stack([self.transform(image) for _ in range(self.views)])
        return views, int(self.labels[position]), index


class FeatureViews(torch.utils.data.Dataset):
    """Items ``(views, label, instance_id)`` of precomputed features, for a frozen backbone
    trained without augmentation: the ``views`` views of an image are its feature row,
    repeated (the key's seed is ignored: nothing random happens).

    Args:
        features: ``(N, D)`` float32 backbone features of the whole split.
        labels: ``(N,)`` labels of the split.
        indices: the split's items this dataset holds.
        views: views per item (2).

    Returns per item:
        views: ``(views, D)`` float32; label: int; instance_id: int (index in the split).
    """

    def __init__(self, features: torch.Tensor, labels: np.ndarray, indices: np.ndarray, views: int = 2) -> None:
        self.features = torch.as_tensor(features, dtype=torch.float32)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)[self.indices]
        self.views = int(views)

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int, int]:
        position, _ = key
        index = int(self.indices[position])
        return self.features[index].expand(self.views, -1), int(self.labels[position]), index


def collate_views(items: list[tuple[torch.Tensor, int, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Stack :class:`TwoViews` items into ``(views (b, V, 3, H, W), labels (b,), ids (b,))``
    (views in the items' dtype: uint8 pixels stay uint8);
    None for an empty batch (a process's share of a short validation batch)."""
    if not items:
        return None
    views = torch.stack([item[0] for item in items])
    labels = torch.tensor([item[1] for item in items], dtype=torch.int64)
    ids = torch.tensor([item[2] for item in items], dtype=torch.int64)
    return views, labels, ids


class TrainBatchSampler:
    """Batches of ``(position, seed)`` keys for :class:`TwoViews`, resumable at any step.

    Epoch ``e`` is ``n // batch_size`` global batches (the incomplete last one is dropped)
    cut from a permutation that depends only on ``(seed, e)``; this process yields its
    ``rank``-th slice of ``batch_size // world_size`` keys of each. :meth:`set_epoch` picks
    the epoch and the step to start from (for resuming mid-epoch).

    Raises:
        ValueError: ``batch_size`` not divisible by ``world_size``, or fewer than
            ``batch_size`` items.
    """

    def __init__(self, n: int, batch_size: int, seed: int, *, rank: int = 0, world_size: int = 1) -> None:
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} is not divisible by the {world_size} processes")
        if n < batch_size:
            raise ValueError(f"{n} training images make no batch of batch_size={batch_size}; lower batch_size")
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.local_batch = self.batch_size // self.world_size
        self.epoch, self.start_step = 0, 0

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch_size

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        if not 0 <= start_step <= self.steps_per_epoch:
            raise ValueError(f"start_step {start_step} outside [0, {self.steps_per_epoch}]")
        self.epoch, self.start_step = int(epoch), int(start_step)

    def order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """``(permutation, seeds)`` of epoch ``epoch``: positions in order, seed per position."""
        perm = np.random.default_rng([self.seed, _ORDER, epoch]).permutation(self.n)
        seeds = np.random.default_rng([self.seed, _AUGMENT, epoch]).integers(0, _MAX_SEED, size=self.n, dtype=np.int64)
        return perm, seeds

    def __len__(self) -> int:
        return self.steps_per_epoch - self.start_step

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        perm, seeds = self.order(self.epoch)
        lo = self.rank * self.local_batch
        for step in range(self.start_step, self.steps_per_epoch):
            chunk = perm[step * self.batch_size + lo : step * self.batch_size + lo + self.local_batch]
            yield [(int(p), int(seeds[p])) for p in chunk]


class ValBatchSampler:
    """Validation batches in a fixed order with fixed seeds (the same every epoch).

    Global batches of ``batch_size`` consecutive positions (the last may be smaller) are
    split into ``world_size`` near-equal contiguous chunks (``numpy.array_split``); this
    process yields its chunk, possibly empty, so every process takes part in every batch.
    """

    def __init__(self, n: int, batch_size: int, seed: int, *, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.batch_size = int(n), int(batch_size)
        self.rank, self.world_size = int(rank), int(world_size)
        self.seeds = np.random.default_rng([seed, _VAL]).integers(0, _MAX_SEED, size=self.n, dtype=np.int64)

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for start in range(0, self.n, self.batch_size):
            positions = np.arange(start, min(self.n, start + self.batch_size))
            chunk = np.array_split(positions, self.world_size)[self.rank]
            yield [(int(p), int(self.seeds[p])) for p in chunk]
