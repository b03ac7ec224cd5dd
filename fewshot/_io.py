"""Atomic writes, output-replacement rules and content fingerprints.

Every file the toolkit writes goes through :func:`atomic_write`: the content is written to a
temporary file in the destination directory and renamed over the target, so an interrupted
run never leaves a half-written result that a later command would trust. Output directories
are built under a temporary name by :func:`atomic_dir` and swapped in by :func:`replace_dir`.

Permissions follow the process umask, as ``open()`` and ``mkdir()`` do: files are created
``0666 & ~umask`` and directories ``0777 & ~umask`` (``mkstemp``/``mkdtemp`` alone would give
``0600``/``0700``, unreadable to colleagues on shared storage).

Temporary names are ``.<name>.<host>.<pid>.<random>.tmp`` (and ``.old`` for a directory moved
aside), so debris left by a killed process is recognised and removed by the next writer of
the same target (:func:`clean_debris`) without touching a live process's work.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import sys
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
    "clean_debris",
    "recover_dir",
    "check_output_dir",
    "check_output_file",
    "umask",
]


def umask() -> int:
    """The process umask (read without changing it where ``/proc`` allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _chmod_default(path: str | os.PathLike, directory: bool) -> None:
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())


def _tmp_prefix(name: str) -> str:
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname()) or "host"
    return f".{name}.{host}.{os.getpid()}."


_DEBRIS = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>\d+)\.[^.]+\.(?:tmp|old)$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _debris(target: Path) -> list[tuple[Path, str]]:
    """Temporary entries of dead processes of this host for ``target``: (path, "tmp"|"old")."""
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname()) or "host"
    found = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return []
    for entry in entries:
        m = _DEBRIS.match(entry.name)
        if m is None or m["name"] != target.name or m["host"] != host:
            continue
        if int(m["pid"]) == os.getpid() or _pid_alive(int(m["pid"])):
            continue
        found.append((entry, entry.name.rsplit(".", 1)[1]))
    return found


def recover_dir(target: str | os.PathLike) -> bool:
    """Put back a directory a killed :func:`replace_dir` had moved aside.

    When ``target`` is missing and a dead process of this host left ``.<name>...old`` (the
    complete old directory), it is renamed back. Returns whether something was recovered.
    """
    target = Path(target)
    if target.exists():
        return False
    olds = [p for p, kind in _debris(target) if kind == "old" and p.is_dir()]
    if not olds:
        return False
    newest = max(olds, key=lambda p: p.stat().st_mtime)
    try:
        os.replace(newest, target)
    except OSError:
        return False
    return True


def clean_debris(target: str | os.PathLike) -> int:
    """Recover ``target`` (see :func:`recover_dir`), then delete the temporary files and
    directories that dead processes of this host left for it. Returns how many were removed."""
    import shutil

    target = Path(target)
    recover_dir(target)
    removed = 0
    for entry, _ in _debris(target):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        removed += 1
    return removed


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _inside(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
    except ValueError:
        return False
    return True


def check_output_file(out: str | os.PathLike, inputs: Any = ()) -> Path:
    """Check, before any work, that a file output may be written at ``out``.

    Raises:
        ValueError: ``out`` is an existing directory, is one of ``inputs``, is an existing file
            inside an input directory, or its parent exists but is not a writable directory.
    """
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"output {out} is an existing directory; expected a file name")
    for item in inputs:
        if item is None:
            continue
        item = Path(item)
        if _same(out, item) or (item.is_dir() and out.exists() and _inside(out, item)):
            raise ValueError(f"output {out} would replace an input of this command ({item})")
    _check_parent(out)
    return out


def check_output_dir(out: str | os.PathLike, kind: str, inputs: Any = ()) -> Path:
    """Check, before any work, that the output directory ``out`` may be (re)placed.

    ``out`` may be missing, an empty directory, or a directory holding fewshot's own output
    of this ``kind`` (its ``manifest.json`` says ``"kind": kind``); anything else is refused
    and left untouched. No input may be ``out`` or lie inside it.

    Raises:
        ValueError: ``out`` is a file, a directory of other content, contains an input, or
            its parent is not a writable directory.
    """
    out = Path(out)
    for item in inputs:
        if item is None:
            continue
        item = Path(item)
        if _same(out, item) or _inside(item, out):
            raise ValueError(f"output {out} would replace an input of this command ({item})")
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise ValueError(f"output {out} exists and is not a directory; refusing to replace it")
        if any(out.iterdir()) and manifest_kind(out) != kind:
            raise ValueError(
                f"refusing to replace {out}: it is not empty and holds no fewshot {kind} output "
                f"(no manifest.json of kind {kind!r}); choose another --out"
            )
    _check_parent(out)
    return out


def manifest_kind(directory: str | os.PathLike) -> str | None:
    """``kind`` recorded in ``directory/manifest.json``, or None when absent or unreadable."""
    try:
        data = json.loads((Path(directory) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    kind = data.get("kind") if isinstance(data, dict) else None
    return kind if isinstance(kind, str) else None


def _check_parent(out: Path) -> None:
    parent = out.parent
    while not parent.exists():
        if parent.is_symlink() or parent == parent.parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"cannot write {out}: {parent} is not a directory")
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {out}: directory {parent} is not writable")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_debris(path)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path.name), suffix=".tmp", dir=path.parent)
    try:
        _chmod_default(tmp, directory=False)
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


def write_csv(path: str | os.PathLike, df: Any, **kwargs: Any) -> None:
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


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2(RENAME_EXCHANGE)``); False if
    the platform or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    rc = renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    return rc == 0


def replace_dir(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Rename directory ``new`` onto ``target``.

    Where the platform can (Linux), an existing ``target`` and ``new`` are swapped in one
    atomic step and the old content is then deleted. Elsewhere ``target`` is moved aside
    first (to ``.<name>.<host>.<pid>.<random>.old``) and deleted only after ``new`` is in
    place; a kill between the two renames leaves that ``.old`` copy, which
    :func:`recover_dir` (called by every later writer and reader of ``target``) puts back.
    """
    import shutil

    new, target = Path(new), Path(target)
    old = None
    if target.exists():
        if _exchange(new, target):
            _fsync_dir(target.parent)
            shutil.rmtree(new, ignore_errors=True)
            return
        old = Path(tempfile.mkdtemp(prefix=_tmp_prefix(target.name), suffix=".old", dir=target.parent))
        os.rmdir(old)
        os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory under a temporary name; on success it replaces ``path`` (see
    :func:`replace_dir`). On error the temporary directory is removed and ``path`` is left
    untouched.
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_debris(path)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path.name), suffix=".tmp", dir=path.parent))
    try:
        _chmod_default(tmp, directory=True)
        yield tmp
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
