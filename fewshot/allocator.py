"""Keep freed memory for reuse while fewshot's CPU loops run (glibc's ``malloc``).

PyTorch's CPU allocator asks ``malloc`` for every tensor and frees it when the tensor dies;
there is no cache. glibc serves requests above its mmap threshold (at most 32 MiB, lower for
sizes it has not seen freed) with fresh ``mmap`` pages and unmaps them on free, and it trims the
top of its heap back to the kernel. A forward pass over a batch of large activations then
page-faults through every new tensor — the kernel zeroing 4 KiB at a time — step after step:
on this project's 2-core machine half of Conv-4's extraction time at 84 px was system time.
Inside :func:`reuse_freed_memory` glibc is told to serve large requests from its heap and not
to trim it (``mallopt(M_MMAP_MAX, 0)``, ``mallopt(M_TRIM_THRESHOLD, 1 GiB)``), so each step
reuses the pages of the last; on leaving, the glibc defaults are set back and
``malloc_trim(0)`` returns the freed pages to the kernel. Values are untouched: only where
tensors live changes. (Intel's PyTorch CPU guide reaches the same by preloading jemalloc or
tcmalloc; this needs nothing installed.)

Extraction (:func:`fewshot.features.extract_features`) and training
(:meth:`fewshot.training.Trainer.train_epoch`, :meth:`~fewshot.training.Trainer.validate`) on
the CPU run inside it. Elsewhere than glibc (macOS, musl) it does nothing; set
``FEWSHOT_REUSE_MEMORY=0`` to turn it off (e.g. to compare, or with a preloaded allocator).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["reuse_freed_memory", "reuse_freed_memory_on", "reuses_freed_memory"]

# glibc's <malloc.h> parameter numbers and the defaults they are restored to
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_KEEP_TRIM_THRESHOLD = 1 << 30

_lock = threading.Lock()
_depth = 0


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """This process's glibc, or None elsewhere (looked up once: ``libc_ver`` reads the executable)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def _enabled() -> bool:
    return os.environ.get("FEWSHOT_REUSE_MEMORY", "1").strip().lower() not in {"0", "false", "no", "off"}


def reuses_freed_memory() -> bool:
    """Whether :func:`reuse_freed_memory` is in effect now (some thread is inside it)."""
    return _depth > 0


@contextlib.contextmanager
def reuse_freed_memory() -> Iterator[None]:
    """Within the block, glibc keeps freed memory for the next allocations (see the module).

    Re-entrant and thread-safe: the setting is the process's, made by the first block entered
    and undone (glibc's defaults, then ``malloc_trim(0)``) when the last one is left. A no-op
    without glibc or with ``FEWSHOT_REUSE_MEMORY=0``. Nothing is raised.
    """
    global _depth
    libc = _glibc() if _enabled() else None
    if libc is None:
        yield
        return
    with _lock:
        if _depth == 0:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_TRIM_THRESHOLD)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)


def reuse_freed_memory_on(device: Any) -> contextlib.AbstractContextManager[None]:
    """:func:`reuse_freed_memory` when ``device`` (a ``torch.device`` or its name) is the CPU,
    else a context that does nothing (CUDA tensors have torch's caching allocator)."""
    kind = getattr(device, "type", None) or str(device).split(":", 1)[0]
    return reuse_freed_memory() if kind == "cpu" else contextlib.nullcontext()
