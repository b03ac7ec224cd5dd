"""Run directories and the state a resumed run needs.

Layout of a run directory ``RUN_DIR``::

    RUN_DIR/manifest.json   make_manifest("finetune", config, ...): status, data, result
    RUN_DIR/log.jsonl       one JSON object per finished epoch (see fewshot.training.finetune)
    RUN_DIR/best/           checkpoint of the epoch with the lowest validation loss
    RUN_DIR/last/           checkpoint of the latest state, plus training_state.pt

``best/`` and ``last/`` are :mod:`fewshot.checkpoint` directories (backbone.safetensors,
heads.safetensors with ``classifier`` and optionally ``projection``, checkpoint.json with the
resolved config and preprocessing), so ``fewshot extract --checkpoint RUN_DIR/best`` reads
either. ``last/`` also holds ``training_state.pt`` (``torch.save``: optimiser and scheduler
state dicts, torch RNG states; read back with ``weights_only=True``), and its
``checkpoint.json`` ``extra`` holds the :class:`Progress` as JSON. Each checkpoint is written
into a temporary directory and renamed into place, so a kill at any moment leaves the previous
complete ``last/``.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from fewshot._io import recover_dir
from fewshot.backbones.weights import load_weights
from fewshot.checkpoint import read_checkpoint_meta, save_checkpoint
from fewshot.transforms import Preprocessing

__all__ = [
    "Progress",
    "STATE_FILE",
    "BEST",
    "LAST",
    "LOG_FILE",
    "MANIFEST_FILE",
    "save_state",
    "load_state",
    "save_best",
    "stored_config",
]

STATE_FILE = "training_state.pt"
BEST, LAST = "best", "last"
LOG_FILE = "log.jsonl"
MANIFEST_FILE = "manifest.json"


@dataclasses.dataclass
class Progress:
    """Where a run stands; JSON, stored in ``last/checkpoint.json`` under ``extra``.

    Attributes:
        epoch: the epoch in progress, 0-based (= epochs completed when ``step == 0``).
        step: optimiser steps done within ``epoch``.
        global_step: optimiser steps done in the whole run.
        sums: running sums of (total, ce, contrastive) over the steps done in ``epoch``.
        best_val_loss: the lowest validation loss so far (None before the first epoch, or
            without validation).
        best_epoch: 1-based epoch of ``best/``.
        bad_epochs: epochs since the validation loss last went down.
        finished: the run is over (all epochs done, or stopped early).
        stopped_early: it ended by early stopping.
        history: the epoch records written to ``log.jsonl``.
    """

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    sums: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.0, 0.0])
    best_val_loss: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    finished: bool = False
    stopped_early: bool = False
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Progress:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = names - set(data)
        if missing:
            raise ValueError(f"training progress lacks {sorted(missing)}; was last/ written by fewshot finetune?")
        return cls(**{k: data[k] for k in names})


def _rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _checkpoint_args(
    net: Any, backbone_name: str, backbone_kwargs: dict[str, Any], preprocessing: Preprocessing
) -> dict[str, Any]:
    return dict(
        backbone=net.backbone,
        backbone_name=backbone_name,
        backbone_kwargs=backbone_kwargs,
        preprocessing=preprocessing,
        heads=net.heads(),
    )


def save_state(
    directory: str | os.PathLike,
    net: Any,
    *,
    backbone_name: str,
    backbone_kwargs: dict[str, Any],
    preprocessing: Preprocessing,
    config: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    progress: Progress,
    ema: Any = None,
    run: str | None = None,
) -> Path:
    """Write ``last/``: the checkpoint, the progress and ``training_state.pt`` (optimiser,
    scheduler, RNG states and, with a model EMA, its weights), atomically."""
    buffer = io.BytesIO()
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_states()}
    if ema is not None:
        state["ema"] = ema.state_dict()
    torch.save(state, buffer)
    return save_checkpoint(
        directory,
        **_checkpoint_args(net, backbone_name, backbone_kwargs, preprocessing),
        config=config,
        extra={"progress": progress.to_dict()},
        files={STATE_FILE: buffer.getvalue()},
        run=run,
    )


def save_best(
    directory: str | os.PathLike,
    net: Any,
    *,
    backbone_name: str,
    backbone_kwargs: dict[str, Any],
    preprocessing: Preprocessing,
    config: dict[str, Any],
    epoch: int,
    metrics: dict[str, Any],
    run: str | None = None,
) -> Path:
    """Write ``best/``: the checkpoint with the epoch (1-based) and its metrics in ``extra``."""
    return save_checkpoint(
        directory,
        **_checkpoint_args(net, backbone_name, backbone_kwargs, preprocessing),
        config=config,
        extra={"epoch": epoch, **metrics},
        run=run,
    )


def stored_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The config recorded in ``RUN_DIR/last``.

    Raises:
        FileNotFoundError: no ``last/`` checkpoint in ``run_dir``.
        ValueError: an unreadable checkpoint.
    """
    last = Path(run_dir) / LAST
    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    recover_dir(last)  # a kill inside replace_dir may have left last/ moved aside
    if not (last / "checkpoint.json").is_file():
        raise FileNotFoundError(f"nothing to resume in {run_dir}: no {LAST}/checkpoint.json")
    meta = read_checkpoint_meta(last)
    config = meta.get("config")
    if not isinstance(config, dict) or not config:
        raise ValueError(f"{last}/checkpoint.json records no run config; was it written by fewshot finetune?")
    return config


def load_state(
    directory: str | os.PathLike,
    net: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    device: torch.device,
    ema: Any = None,
) -> Progress:
    """Restore ``last/`` into ``net``, ``optimizer``, ``scheduler`` (and ``ema``); returns the progress.

    Weights are verified against their SHA-256 and loaded strictly.

    Raises:
        FileNotFoundError: missing files.
        ValueError: corrupted or mismatching weights, or an unreadable training state.
    """
    from fewshot.checkpoint import load_checkpoint, load_heads

    directory = Path(directory)
    saved, _, meta = load_checkpoint(directory)  # verifies the SHA-256
    load_weights(net.backbone, saved.state_dict(), strict=True)
    load_heads(directory, net.heads())
    state_path = directory / STATE_FILE
    if not state_path.is_file():
        raise FileNotFoundError(f"{directory} has no {STATE_FILE}; it is not a resumable last/ checkpoint")
    try:
        state = torch.load(state_path, map_location=device, weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
    except (
        KeyError,
        RuntimeError,
        ValueError,
        OSError,
        EOFError,
        TypeError,
        AttributeError,
        MemoryError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
    ) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(
            f"cannot restore {state_path}: not a training state written by fewshot finetune ({first})"
        ) from None
    rng = state.get("rng", {})
    if "torch" in rng:
        torch.set_rng_state(rng["torch"].cpu())
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    progress = meta.get("extra", {}).get("progress")
    if not isinstance(progress, dict):
        raise ValueError(f"{directory}/checkpoint.json records no training progress")
    return Progress.from_dict(progress)
