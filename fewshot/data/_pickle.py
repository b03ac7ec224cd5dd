"""Read dataset pickles without running code from them.

A pickle names Python callables and the unpickler calls them: ``pickle.load`` on a file from
the internet can run anything. :func:`load_pickle` uses an unpickler whose ``find_class``
admits only what dataset pickles need — NumPy array reconstruction and builtin containers —
and refuses every other global with a ``ValueError`` naming the file and the global, before
anything is called.

Admitted globals (module, name):

- ``numpy.core.multiarray`` / ``numpy._core.multiarray``: ``_reconstruct``, ``scalar``
- ``numpy.core.numeric`` / ``numpy._core.numeric``: ``_frombuffer`` (protocol-5 arrays)
- ``numpy``: ``ndarray``, ``dtype``
- ``builtins`` / ``__builtin__``: ``set``, ``frozenset``, ``bytearray``, ``list``, ``dict``,
  ``tuple``; ``collections.OrderedDict``
- ``_codecs.encode`` (how Python 3 writes ``bytes`` in protocol-2 pickles; it only encodes a
  string)

Python 2 pickles (the official CIFAR-100 files, MetaOptNet's and Ren et al.'s pickles) are
read with ``encoding="latin1"``, which restores NumPy arrays byte for byte.
"""

from __future__ import annotations

import codecs
import collections
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_pickle", "ALLOWED_GLOBALS", "as_str", "str_keys"]


def _numpy_core(module: str, name: str) -> Any:
    # numpy >= 2 keeps these in numpy._core; numpy 1.x pickles name numpy.core.
    import importlib

    return getattr(importlib.import_module(f"numpy._core.{module}"), name)


#: (module, name) -> object the unpickler may return. Nothing else is ever imported.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **{
        (f"{pkg}.multiarray", name): _numpy_core("multiarray", name)
        for pkg in ("numpy.core", "numpy._core")
        for name in ("_reconstruct", "scalar")
    },
    **{
        (f"{pkg}.numeric", "_frombuffer"): _numpy_core("numeric", "_frombuffer")
        for pkg in ("numpy.core", "numpy._core")
    },
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{
        (mod, name): obj
        for mod in ("builtins", "__builtin__")
        for name, obj in {
            "set": set,
            "frozenset": frozenset,
            "bytearray": bytearray,
            "list": list,
            "dict": dict,
            "tuple": tuple,
        }.items()
    },
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): codecs.encode,
}


class _Refused(Exception):
    """A global outside :data:`ALLOWED_GLOBALS` was requested."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused(f"persistent id {pid!r}")


def load_pickle(path: str | os.PathLike, encoding: str = "latin1") -> Any:
    """Unpickle ``path`` admitting only NumPy arrays and builtin containers.

    Args:
        path: the pickle file.
        encoding: how Python 2 ``str`` objects are decoded; ``"latin1"`` (default) restores
            NumPy arrays pickled by Python 2 exactly. Python 3 pickles are unaffected.

    Returns:
        The unpickled object. Arrays are read once into memory (the peak while reading is
        about twice the array size; one copy is kept).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the pickle names a global outside :data:`ALLOWED_GLOBALS` (nothing from it
            is called), or the file is truncated or not a pickle.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with path.open("rb") as fh:
            return _RestrictedUnpickler(fh, encoding=encoding).load()
    except _Refused as exc:
        raise ValueError(
            f"{path}: refusing to unpickle global {exc} (only numpy arrays and builtin containers are allowed)"
        ) from None
    except MemoryError:
        raise
    except Exception as exc:  # EOFError, UnpicklingError, struct/TypeError from bad opcodes
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{path}: not a readable pickle (truncated or corrupt?): {detail}") from exc


def as_str(value: Any) -> Any:
    """``bytes`` decoded as latin-1 (as Python 2 pickles read with ``encoding='bytes'`` hold them);
    anything else unchanged."""
    return value.decode("latin1") if isinstance(value, (bytes, bytearray)) else value


def str_keys(obj: Any, path: str | os.PathLike, what: str = "a dict") -> dict[str, Any]:
    """``obj`` as a dict with ``str`` keys; ``ValueError`` naming ``path`` if it is not a dict."""
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected {what}, found {type(obj).__name__}")
    return {as_str(k): v for k, v in obj.items()}
