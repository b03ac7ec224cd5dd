"""A disk cache of sampled episodes, shared by every method scored on the same labels.

Episodes depend only on the labels and the request (``n_way``, ``n_shot``, ``n_query``,
``n_episodes``, ``seed``; see :mod:`fewshot.episodes`), so a second method evaluated on
features with the same labels, or a second run, reads them instead of sampling them again.
An entry is an episodes file (:meth:`fewshot.episodes.Episodes.save`, which records the
labels fingerprint) named by the request and the labels fingerprint::

    <cache>/5way-1shot-15query-3000ep-seed0-<labels fingerprint[:24]>.npz

On reading, the episodes' fingerprint, the labels fingerprint and the request are checked;
a damaged or mismatched entry is sampled again and replaced (with a logged warning). Entries
are written atomically (a temporary file renamed into place), so concurrent evaluations that
miss the same entry at once both write complete, identical files and the last rename wins.

The default cache directory is ``$FEWSHOT_CACHE_DIR/episodes`` when ``FEWSHOT_CACHE_DIR`` is
set (the feature cache's directory, :func:`fewshot.features.default_cache_dir`), else
``$XDG_CACHE_HOME/fewshot/episodes`` (``~/.cache/fewshot/episodes``) beside the default
feature cache ``~/.cache/fewshot/features``.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fewshot._cache import default_cache_dir
from fewshot.episodes import Episodes, labels_fingerprint, load_episodes, sample_episodes

logger = logging.getLogger(__name__)
__all__ = ["CachedEpisodes", "cached_episodes", "store_episodes", "default_episode_cache_dir", "episode_cache_path"]


def default_episode_cache_dir() -> Path:
    """``$FEWSHOT_CACHE_DIR/episodes``, else ``$XDG_CACHE_HOME/fewshot/episodes`` (``~/.cache/...``),
    beside the feature cache (:func:`fewshot.features.default_cache_dir`)."""
    return default_cache_dir("episodes")


def episode_cache_path(
    cache_dir: str | os.PathLike, labels_fp: str, n_way: int, n_shot: int, n_query: int, n_episodes: int, seed: int
) -> Path:
    """The entry of one request in ``cache_dir`` (``labels_fp``: :func:`fewshot.episodes.labels_fingerprint`)."""
    return Path(cache_dir) / f"{n_way}way-{n_shot}shot-{n_query}query-{n_episodes}ep-seed{seed}-{labels_fp[:24]}.npz"


class CachedEpisodes(NamedTuple):
    """What :func:`cached_episodes` returns."""

    episodes: Episodes
    data: bytes | None  # the entry's file content (an episodes file), to copy without re-compressing;
    # None when the entry could not be written
    hit: bool  # read from the cache (no sampling)
    path: Path


def cached_episodes(
    labels: np.ndarray,
    n_way: int,
    n_shot: int,
    n_query: int,
    n_episodes: int,
    seed: int,
    cache_dir: str | os.PathLike,
    *,
    labels_fp: str | None = None,
    write: bool = True,
) -> CachedEpisodes:
    """``sample_episodes(labels, n_way, n_shot, n_query, n_episodes, seed)``, read from
    ``cache_dir`` when an intact entry exists, else sampled and written there.

    Args:
        labels: ``(N,)`` integer labels.
        n_way, n_shot, n_query, n_episodes, seed: as :func:`fewshot.episodes.sample_episodes`
            (episodes ``0 .. n_episodes - 1`` of the seed's stream).
        cache_dir: the cache directory (created when missing).
        labels_fp: :func:`fewshot.episodes.labels_fingerprint` of ``labels``, when known.
        write: False: on a miss, sample but do not write the entry yet (``data`` is None; pass
            the result to :func:`store_episodes` once every request is known to be valid).

    Returns:
        :class:`CachedEpisodes`: the episodes (identical to sampling them), the entry's bytes,
        whether it was a hit, and the entry's path. An entry that cannot be written (read-only
        or full disk) is logged as a warning and skipped.

    Raises:
        ValueError: as :func:`fewshot.episodes.sample_episodes` (bad labels or sizes).
    """
    labels_fp = labels_fp or labels_fingerprint(labels)
    path = episode_cache_path(cache_dir, labels_fp, n_way, n_shot, n_query, n_episodes, seed)
    request = (int(n_way), int(n_shot), int(n_query), int(seed), 0, int(n_episodes))
    try:
        data = path.read_bytes()
    except OSError:  # missing (or unreadable: the write below says why)
        data = None
    if data is not None:
        try:
            episodes = load_episodes(io.BytesIO(data), labels_fingerprint=labels_fp)
            found = (episodes.n_way, episodes.n_shot, episodes.n_query, episodes.seed, episodes.start, len(episodes))
            if found != request:
                raise ValueError(
                    f"holds episodes of another request (n_way, n_shot, n_query, seed, start, n_episodes) {found}"
                )
        except ValueError as exc:
            logger.warning("episode cache entry %s is unusable (%s); sampling again and replacing it", path, exc)
        else:
            logger.info("episodes %s read from the episode cache", path.name)
            return CachedEpisodes(episodes, data, True, path)
    episodes = sample_episodes(labels, n_way, n_shot, n_query, n_episodes, seed)
    entry = CachedEpisodes(episodes, None, False, path)
    return store_episodes(entry, labels_fp) if write else entry


def store_episodes(entry: CachedEpisodes, labels_fp: str) -> CachedEpisodes:
    """Write a missed entry (from ``cached_episodes(..., write=False)``); returns it with ``data``.

    The write is atomic (a temporary file renamed into place): concurrent writers of one entry
    each rename a complete file of the same episodes, and readers never see a partial one. An
    entry that cannot be written (read-only or full disk) is logged and skipped (``data`` None).
    """
    if entry.hit or entry.data is not None:
        return entry
    try:
        entry.episodes.save(entry.path, labels_fingerprint=labels_fp)
        data = entry.path.read_bytes()
    except OSError as exc:  # a read-only or full cache must not stop an evaluation
        logger.warning("cannot write the episode cache entry %s (%s); continuing without it", entry.path, exc)
        data = None
    return entry._replace(data=data)
