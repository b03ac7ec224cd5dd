"""Atomic writes and content fingerprints.

Every file the toolkit writes goes through :func:`atomic_write`: the content is written to a
temporary file in the destination directory and renamed over the target, so an interrupted
run never leaves a half-written result that a later command would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "replace_dir",
    "atomic_dir",
    "atomic_write",
    "write_bytes",
    "write_text",
    "write_json",
    "write_csv",
    "save_npz",
    "sha256_file",
    "sha256_arrays",
]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write UTF-8 ``text`` to ``path``."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented, key-sorted JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_csv(path: str | os.PathLike, df: "Any", **kwargs: Any) -> None:
    """Atomically write a pandas DataFrame as CSV (no index unless asked)."""
    kwargs.setdefault("index", False)
    kwargs.setdefault("lineterminator", "\n")
    write_text(path, df.to_csv(**kwargs))


def save_npz(path: str | os.PathLike, compressed: bool = False, **arrays: Any) -> None:
    """Atomically write arrays to a ``.npz`` file (zip-deflated if ``compressed``)."""
    with atomic_write(path, "wb") as fh:
        (np.savez_compressed if compressed else np.savez)(fh, **arrays)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_arrays(*arrays: np.ndarray) -> str:
    """SHA-256 of arrays' dtype, shape and C-ordered bytes, in order."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def replace_dir(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Rename directory ``new`` onto ``target``.

    An existing ``target`` is moved aside first and deleted only after ``new`` is in place (and
    put back if the rename fails), so at every moment ``target`` is either the old complete
    directory or the new one.
    """
    import shutil

    new, target = Path(new), Path(target)
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.rmdir(old)
        os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    with contextlib.suppress(OSError):
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory under a temporary name; on success it replaces ``path`` (see
    :func:`replace_dir`). On error the temporary directory is removed and ``path`` is left
    untouched.
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
