"""Seeded, reproducible few-shot episodes.

Episode *i* of a request depends only on ``(seed, i)``: its generator is
``numpy.random.default_rng([seed, i])`` (PCG64 seeded through ``SeedSequence``, stable across
platforms and NumPy versions). Hence the first 10 episodes of a 3,000-episode request equal a
10-episode request, and every method evaluated with the same seed sees the same tasks.

Within an episode, ``n_way`` classes are drawn uniformly without replacement, then
``n_shot + n_query`` distinct items of each class, uniformly without replacement; the first
``n_shot`` are the support, the rest the queries. Concretely, episode *i* draws one block of
uniforms ``u`` from its generator; the classes are ranked by the first ``n_classes`` values
(in sorted-label order) and the items of each chosen class by the next values (one row of
``max items per class`` values per chosen class), so the draw is a pure function of
``(seed, i)`` and of the label array. Index arrays are **class-major**: all items of
``classes[e, 0]`` first, then ``classes[e, 1]``, and so on, so the episode label of support
position ``j`` is ``j // n_shot`` and of query position ``j`` is ``j // n_query``.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from fewshot._io import save_npz, sha256_arrays
from fewshot._validate import check_int

__all__ = ["Episodes", "sample_episodes", "load_episodes", "labels_fingerprint", "check_sizes", "episodes_filename"]


@dataclass(frozen=True, eq=False)
class Episodes:
    """A batch of few-shot episodes as index arrays into a label array.

    Attributes:
        classes: ``(E, n_way)`` int64, the class labels of each episode, in episode-label order.
        support: ``(E, n_way * n_shot)`` int64 indices into ``labels``, class-major.
        query: ``(E, n_way * n_query)`` int64 indices into ``labels``, class-major.
        n_way, n_shot, n_query, seed: the request that produced them.
        start: index of the first episode (episode ``e`` of this batch is episode
            ``start + e`` of the seed's stream).
    """

    classes: np.ndarray
    support: np.ndarray
    query: np.ndarray
    n_way: int
    n_shot: int
    n_query: int
    seed: int
    start: int = 0
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        for name in ("classes", "support", "query"):
            arr = np.ascontiguousarray(getattr(self, name), dtype=np.int64)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        E = self.classes.shape[0]
        expected = {
            "classes": (E, self.n_way),
            "support": (E, self.n_way * self.n_shot),
            "query": (E, self.n_way * self.n_query),
        }
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected {shape}")
        object.__setattr__(self, "fingerprint", sha256_arrays(self.classes, self.support, self.query))

    def __len__(self) -> int:
        return int(self.classes.shape[0])

    @property
    def n_episodes(self) -> int:
        """Number of episodes ``E``."""
        return len(self)

    @property
    def support_labels(self) -> np.ndarray:
        """Episode labels of the support positions, ``(n_way * n_shot,)``: ``j // n_shot``."""
        return np.repeat(np.arange(self.n_way, dtype=np.int64), self.n_shot)

    @property
    def query_labels(self) -> np.ndarray:
        """Episode labels of the query positions, ``(n_way * n_query,)``: ``j // n_query``."""
        return np.repeat(np.arange(self.n_way, dtype=np.int64), self.n_query)

    def spec(self) -> dict[str, int]:
        """The request as a plain dict (for manifests)."""
        return {
            "n_way": self.n_way,
            "n_shot": self.n_shot,
            "n_query": self.n_query,
            "seed": self.seed,
            "start": self.start,
            "n_episodes": len(self),
        }

    def __getitem__(self, index: slice) -> Episodes:
        """A contiguous sub-range of episodes (a slice with step 1)."""
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("Episodes supports only contiguous slices, e.g. episodes[10:20]")
        lo, hi, _ = index.indices(len(self))
        hi = max(lo, hi)
        return Episodes(
            self.classes[lo:hi],
            self.support[lo:hi],
            self.query[lo:hi],
            self.n_way,
            self.n_shot,
            self.n_query,
            self.seed,
            self.start + lo,
        )

    def save(self, path: str | Path, *, labels_fingerprint: str | None = None) -> Path:
        """Write the episodes and their fingerprint to ``path`` (``.npz``, atomically).

        ``labels_fingerprint`` (:func:`labels_fingerprint` of the labels they were sampled
        from), when given, is recorded too, so a reader can check the episodes belong to its
        labels (see :func:`load_episodes`).
        """
        path = Path(path)
        extra = {} if labels_fingerprint is None else {"labels_fingerprint": np.array(str(labels_fingerprint))}
        save_npz(
            path,
            compressed=True,
            classes=self.classes,
            support=self.support,
            query=self.query,
            spec=np.array([self.n_way, self.n_shot, self.n_query, self.seed, self.start], dtype=np.int64),
            fingerprint=np.array(self.fingerprint),
            **extra,
        )
        return path


def labels_fingerprint(labels: np.ndarray) -> str:
    """SHA-256 of a label array as int64 (what :meth:`Episodes.save` records)."""
    return sha256_arrays(np.asarray(labels).astype(np.int64, copy=False))


def load_episodes(path: str | Path | BinaryIO, *, labels_fingerprint: str | None = None) -> Episodes:
    """Read episodes written by :meth:`Episodes.save` and verify their fingerprint.

    Args:
        path: the file, or an open binary file (e.g. ``io.BytesIO`` of its bytes).
        labels_fingerprint: when given, the file must record this labels fingerprint
            (:func:`labels_fingerprint` of the labels the episodes were sampled from).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not an episodes file, its content does not match the
            recorded fingerprint, or it records another (or no) labels fingerprint.
    """
    if isinstance(path, (str, os.PathLike)):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"episodes file not found: {path}")
    where = path if isinstance(path, Path) else "episodes data"
    try:
        with np.load(path, allow_pickle=False) as z:
            n_way, n_shot, n_query, seed, start = (int(v) for v in z["spec"])
            episodes = Episodes(z["classes"], z["support"], z["query"], n_way, n_shot, n_query, seed, start)
            recorded = str(z["fingerprint"])
            recorded_labels = str(z["labels_fingerprint"]) if "labels_fingerprint" in z.files else None
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"{where} is not a valid episodes file: {exc}") from None
    if recorded != episodes.fingerprint:
        raise ValueError(f"{where}: episode arrays do not match their recorded fingerprint (file corrupted?)")
    if labels_fingerprint is not None and recorded_labels != labels_fingerprint:
        raise ValueError(
            f"{where}: episodes of labels {(recorded_labels or 'unrecorded')[:16]}, expected labels {labels_fingerprint[:16]}"
        )
    return episodes


def episodes_filename(n_way: int, n_shot: int, n_query: int, seed: int) -> str:
    """Name of a run's episodes file inside a results directory's ``episodes/``."""
    return f"{n_way}way-{n_shot}shot-{n_query}query-seed{seed}.npz"


def check_sizes(n_way: int, n_shot: int, n_query: int, n_episodes: int | None = None) -> None:
    """Raise ``ValueError`` unless every size is a positive integer."""
    sizes = {"n_way": n_way, "n_shot": n_shot, "n_query": n_query}
    if n_episodes is not None:
        sizes["n_episodes"] = n_episodes
    for name, value in sizes.items():
        check_int(name, value)


def _validate_labels(labels: np.ndarray) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be a 1-D array of integers, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("labels is empty")
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"labels must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def sample_episodes(
    labels: np.ndarray,
    n_way: int = 5,
    n_shot: int = 1,
    n_query: int = 15,
    n_episodes: int = 3000,
    seed: int = 0,
    start: int = 0,
) -> Episodes:
    """Sample ``n_episodes`` N-way K-shot episodes from ``labels``.

    Args:
        labels: ``(N,)`` integer class label of every item (e.g. of a features file).
        n_way: classes per episode (default 5).
        n_shot: support items per class (default 1).
        n_query: query items per class (default 15).
        n_episodes: number of episodes (default 3,000).
        seed: stream seed; episode ``i`` uses ``numpy.random.default_rng([seed, i])``.
        start: index of the first episode in the stream (default 0).

    Returns:
        :class:`Episodes` with class-major ``support`` and ``query`` index arrays.

    Raises:
        ValueError: labels not 1-D integers; a non-positive size; ``n_way`` larger than the
            number of classes; a class with fewer than ``n_shot + n_query`` items (every class
            present in ``labels`` must be able to fill an episode).
    """
    check_sizes(n_way, n_shot, n_query, n_episodes)
    check_int("seed", seed, low=0)
    check_int("start", start, low=0)
    labels = _validate_labels(labels)
    class_values, counts = np.unique(labels, return_counts=True)
    n_classes = class_values.size
    if n_way > n_classes:
        raise ValueError(f"n_way={n_way} exceeds the number of classes ({n_classes})")
    per_class = n_shot + n_query
    small = np.flatnonzero(counts < per_class)
    if small.size:
        c = small[0]
        raise ValueError(
            f"class {class_values[c]} has {counts[c]} items, fewer than n_shot + n_query = "
            f"{n_shot} + {n_query} = {per_class} ({small.size} class(es) too small)"
        )

    # members[c, j]: index of the j-th item (source order) of class c; padded with 0.
    order = np.argsort(labels, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    width = int(counts.max())
    cols = np.arange(width)
    valid = cols[None, :] < counts[:, None]
    members = np.zeros((n_classes, width), dtype=np.int64)
    members[valid] = order[(offsets[:, None] + cols[None, :])[valid]]
    pad = np.where(valid, 0.0, np.inf)  # padding sorts last

    # Episode e draws one block of uniforms from its own generator: n_classes keys that rank the
    # classes (the first n_way form the episode) and n_way x width keys that rank the items of
    # each chosen class (the first n_shot + n_query are taken). Everything after the draws is
    # vectorised over episodes.
    classes = np.empty((n_episodes, n_way), dtype=np.int64)
    picks = np.empty((n_episodes, n_way, per_class), dtype=np.int64)
    block = n_classes + n_way * width
    chunk = max(1, min(n_episodes, (1 << 22) // block))  # ~32 MB of keys at a time
    for lo in range(0, n_episodes, chunk):
        hi = min(n_episodes, lo + chunk)
        keys = np.empty((hi - lo, block))
        for e in range(lo, hi):
            np.random.default_rng([int(seed), int(start) + e]).random(out=keys[e - lo])
        chosen = np.argsort(keys[:, :n_classes], axis=1)[:, :n_way]
        item_keys = keys[:, n_classes:].reshape(hi - lo, n_way, width) + pad[chosen]
        # the per_class smallest keys, in increasing order (torch.topk: several times faster
        # than numpy's argpartition + argsort here; float64 keys make ties practically impossible)
        part = torch.topk(torch.from_numpy(item_keys), per_class, dim=2, largest=False, sorted=True).indices.numpy()
        classes[lo:hi] = chosen
        picks[lo:hi] = members[chosen[:, :, None], part]

    return Episodes(
        classes=class_values[classes],
        support=picks[:, :, :n_shot].reshape(n_episodes, n_way * n_shot),
        query=picks[:, :, n_shot:].reshape(n_episodes, n_way * n_query),
        n_way=int(n_way),
        n_shot=int(n_shot),
        n_query=int(n_query),
        seed=int(seed),
        start=int(start),
    )
