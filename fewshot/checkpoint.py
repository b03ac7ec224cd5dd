"""Checkpoint directories: a backbone that loads alone, heads beside it, JSON provenance.

Layout of a checkpoint directory ``DIR`` (format version 1)::

    DIR/backbone.safetensors   the backbone's state dict, nothing else
    DIR/heads.safetensors      head weights as "<head name>.<param>" (only when heads given)
    DIR/<name>                 extra files given as files={name: bytes} (optimiser state, ...)
    DIR/checkpoint.json        what is needed to rebuild and to trust the weights:
        format_version    1
        backbone          {"name": timm name, "kwargs": timm.create_model kwargs,
                           "num_features": int, "sha256": of backbone.safetensors}
        preprocessing     Preprocessing.to_dict() (feature extraction reproduces it)
        heads             {name: {"type": class name, "config": {...}}} (may be empty)
        heads_sha256      sha256 of heads.safetensors, or null
        files             {file name: sha256} of extra files written with the checkpoint
        config            the run's resolved config (JSON), or {}
        extra             any JSON state (epoch, best metric, RNG states, ...), or {}
        versions          fewshot, torch, timm versions that wrote it

:func:`save_checkpoint` writes everything into a temporary directory beside ``DIR`` and
renames it into place, so ``DIR`` is either the old checkpoint or the new one, never a
mixture. :func:`load_checkpoint` verifies the SHA-256 before trusting the weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fewshot._io import atomic_dir, sha256_file, write_bytes, write_json
from fewshot.backbones import create_backbone
from fewshot.backbones.weights import load_weights
from fewshot.heads import head_from_config
from fewshot.runs import check_run_name, seed_run_name
from fewshot.transforms import Preprocessing

__all__ = [
    "save_checkpoint",
    "checkpoint_run",
    "load_checkpoint",
    "load_heads",
    "read_checkpoint_file",
    "read_checkpoint_meta",
    "is_checkpoint",
    "BACKBONE_FILE",
    "HEADS_FILE",
    "META_FILE",
    "FORMAT_VERSION",
]

BACKBONE_FILE = "backbone.safetensors"
HEADS_FILE = "heads.safetensors"
META_FILE = "checkpoint.json"
FORMAT_VERSION = 1
_RESERVED = {BACKBONE_FILE, HEADS_FILE, META_FILE}


def _tensors(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share memory; contiguous copies on the CPU are safe.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def _versions() -> dict[str, str]:
    import timm

    from fewshot import __version__

    return {"fewshot": __version__, "torch": torch.__version__, "timm": timm.__version__}


def _unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside ``torch.compile`` and ``DistributedDataParallel`` wrappers."""
    while True:
        if isinstance(getattr(module, "_orig_mod", None), nn.Module):
            module = module._orig_mod
        elif isinstance(module, nn.parallel.DistributedDataParallel | nn.DataParallel):
            module = module.module
        else:
            return module


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory holding a ``checkpoint.json``."""
    return (Path(path) / META_FILE).is_file()


def save_checkpoint(
    directory: str | os.PathLike,
    backbone: nn.Module,
    *,
    backbone_name: str,
    backbone_kwargs: Mapping[str, Any] | None = None,
    preprocessing: Preprocessing,
    heads: Mapping[str, nn.Module] | None = None,
    config: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    files: Mapping[str, bytes] | None = None,
    run: str | None = None,
) -> Path:
    """Write a checkpoint directory atomically (see the module docstring for the layout).

    Args:
        directory: the checkpoint directory; an existing checkpoint there is replaced (an
            existing directory that is not a checkpoint is refused).
        backbone: the backbone module (its full state dict is saved, buffers included).
        backbone_name: timm name to rebuild it with :func:`fewshot.backbones.create_backbone`.
        backbone_kwargs: the other ``create_backbone``/timm kwargs it was built with (JSON).
        preprocessing: the backbone's :class:`~fewshot.transforms.Preprocessing`.
        heads: named head modules (e.g. ``{"classifier": ..., "projection": ...}``); their
            weights go to ``heads.safetensors`` and their ``config()`` (when they have one)
            to ``checkpoint.json``.
        config: the run's resolved config (JSON-serialisable).
        extra: any JSON state (epoch, best validation loss, ...).
        files: further files to place in the directory, name → bytes (e.g. an optimiser
            state written with ``torch.save``); recorded with their SHA-256.
        run: the training run's name (``checkpoint.json`` key ``run``; see
            :mod:`fewshot.runs`), copied into feature files by ``fewshot extract``.

    Returns:
        The checkpoint directory.

    Raises:
        ValueError: ``directory`` exists and is not a checkpoint, a reserved or nested file
            name in ``files``, or a head name containing ``"."``.
        TypeError: ``config``/``extra``/``backbone_kwargs`` are not JSON-serialisable.
    """
    from safetensors.torch import save as st_save

    directory = Path(directory)
    replaceable = directory.is_dir() and (is_checkpoint(directory) or not any(directory.iterdir()))
    if directory.exists() and not replaceable:
        raise ValueError(f"refusing to replace {directory}: it exists and is not a checkpoint directory")
    if run is not None:
        check_run_name(run, "run")
    heads = dict(heads or {})
    files = dict(files or {})
    for name in files:
        if name in _RESERVED or Path(name).name != name or name.startswith("."):
            raise ValueError(f"bad extra file name {name!r}: a plain name other than {sorted(_RESERVED)}")
    for name in heads:
        if not name or "." in name:
            raise ValueError(f"head names must be non-empty and contain no '.', got {name!r}")

    backbone = _unwrap(backbone)
    heads = {n: _unwrap(h) for n, h in heads.items()}
    backbone_bytes = st_save(_tensors(backbone.state_dict()), metadata={"format": "pt"})
    head_state = {f"{n}.{k}": v for n, h in heads.items() for k, v in h.state_dict().items()}
    head_bytes = st_save(_tensors(head_state), metadata={"format": "pt"}) if heads else None
    meta = {
        "format_version": FORMAT_VERSION,
        "run": run,
        "backbone": {
            "name": backbone_name,
            "kwargs": dict(backbone_kwargs or {}),
            "num_features": int(getattr(backbone, "num_features", 0) or 0),
            "sha256": hashlib.sha256(backbone_bytes).hexdigest(),
        },
        "preprocessing": preprocessing.to_dict(),
        "heads": {
            n: {"type": type(h).__name__, "config": h.config() if hasattr(h, "config") else None}
            for n, h in heads.items()
        },
        "heads_sha256": hashlib.sha256(head_bytes).hexdigest() if head_bytes is not None else None,
        "files": {n: hashlib.sha256(b).hexdigest() for n, b in files.items()},
        "config": dict(config or {}),
        "extra": dict(extra or {}),
        "versions": _versions(),
    }
    json.dumps(meta)  # TypeError now (write_json would stringify), not a surprise later

    with atomic_dir(directory) as tmp:
        write_bytes(tmp / BACKBONE_FILE, backbone_bytes)
        if head_bytes is not None:
            write_bytes(tmp / HEADS_FILE, head_bytes)
        for name, data in files.items():
            write_bytes(tmp / name, data)
        write_json(tmp / META_FILE, meta)  # last: a directory with checkpoint.json is complete
    return directory


def read_checkpoint_meta(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``checkpoint.json`` of a checkpoint directory.

    Raises:
        FileNotFoundError: no such directory, or no ``checkpoint.json`` in it.
        ValueError: unreadable JSON, a format version this code does not know, or missing keys.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory not found: {directory}")
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"not a checkpoint directory (no {META_FILE}): {directory}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot parse {meta_path}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise ValueError(f"{meta_path}: unsupported checkpoint format_version {version!r} (expected {FORMAT_VERSION})")
    for key in ("backbone", "preprocessing"):
        if key not in meta:
            raise ValueError(f"{meta_path}: missing key {key!r}")
    if not {"name", "sha256"} <= set(meta["backbone"]):
        raise ValueError(f"{meta_path}: 'backbone' needs 'name' and 'sha256'")
    return meta


def checkpoint_run(meta: Mapping[str, Any]) -> str:
    """The training run's name recorded in a checkpoint's metadata.

    ``meta["run"]``; for checkpoints written before runs were named, ``seed-<S>`` from the
    recorded fine-tuning config, else ``""``.
    """
    run = meta.get("run")
    if isinstance(run, str) and run:
        return check_run_name(run, "checkpoint run")
    config = meta.get("config")
    if isinstance(config, Mapping) and isinstance(config.get("seed"), int) and "epochs" in config:
        return seed_run_name(config["seed"])
    return ""


def _verify(path: Path, expected: str | None) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file missing: {path}")
    if expected is not None and sha256_file(path) != expected:
        raise ValueError(f"{path} is corrupted: its SHA-256 does not match {META_FILE}")


def load_checkpoint(
    directory: str | os.PathLike, *, verify: bool = True
) -> tuple[nn.Module, Preprocessing, dict[str, Any]]:
    """Rebuild a checkpoint's backbone alone.

    Args:
        directory: a directory written by :func:`save_checkpoint`.
        verify: check ``backbone.safetensors`` against the recorded SHA-256.

    Returns:
        ``(backbone, preprocessing, metadata)``: the backbone (train mode, CPU) with its
        weights, its :class:`~fewshot.transforms.Preprocessing`, and the parsed
        ``checkpoint.json``.

    Raises:
        FileNotFoundError: missing directory or files.
        ValueError: unreadable metadata, checksum mismatch, or weights that do not match
            the recorded architecture.
    """
    directory = Path(directory)
    meta = read_checkpoint_meta(directory)
    weights = directory / BACKBONE_FILE
    _verify(weights, meta["backbone"]["sha256"] if verify else None)
    preprocessing = Preprocessing.from_dict(meta["preprocessing"])
    kwargs = dict(meta["backbone"].get("kwargs", {}))
    kwargs.pop("seed", None)  # a fixed seed: the weights are overwritten, torch's RNG stays untouched
    backbone = create_backbone(meta["backbone"]["name"], None, seed=0, **kwargs)
    load_weights(backbone, weights, strict=True)
    return backbone, preprocessing, meta


def load_heads(
    directory: str | os.PathLike,
    heads: Mapping[str, nn.Module] | None = None,
    *,
    verify: bool = True,
) -> dict[str, nn.Module]:
    """The heads of a checkpoint.

    With ``heads`` given, their weights are loaded into those modules (strictly); otherwise
    each head is rebuilt from its recorded type and ``config`` (see
    :data:`fewshot.heads.HEADS`).

    Returns:
        ``{name: module}``; empty when the checkpoint has no heads.

    Raises:
        ValueError: a head that cannot be rebuilt, a checksum mismatch, or weights that do
            not fit the given modules.
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    meta = read_checkpoint_meta(directory)
    recorded = meta.get("heads") or {}
    if not recorded:
        return {}
    path = directory / HEADS_FILE
    _verify(path, meta.get("heads_sha256") if verify else None)
    state = load_file(str(path), device="cpu")
    if heads is None:
        modules: dict[str, nn.Module] = {}
        for name, info in recorded.items():
            if info.get("config") is None:
                raise ValueError(f"head {name!r} of type {info.get('type')} has no recorded config; pass heads=")
            modules[name] = head_from_config(info["type"], info["config"])
    else:
        modules = dict(heads)
        if set(modules) != set(recorded):
            raise ValueError(f"checkpoint has heads {sorted(recorded)}, got {sorted(modules)}")
    for name, module in modules.items():
        sub = {k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name + ".")}
        load_weights(module, sub, strict=True)
    return modules


def read_checkpoint_file(directory: str | os.PathLike, name: str, *, verify: bool = True) -> bytes:
    """The bytes of an extra file saved with ``save_checkpoint(files=...)``, checksum verified.

    Raises:
        FileNotFoundError: the checkpoint does not record or hold ``name``.
        ValueError: the file's SHA-256 does not match ``checkpoint.json``.
    """
    directory = Path(directory)
    recorded = read_checkpoint_meta(directory).get("files") or {}
    if name not in recorded:
        raise FileNotFoundError(f"checkpoint {directory} has no file {name!r} (it has {sorted(recorded)})")
    path = directory / name
    _verify(path, recorded[name] if verify else None)
    return path.read_bytes()
