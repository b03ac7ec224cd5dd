"""``finetune(config) -> RunResult``: fine-tune a backbone on the base classes of a benchmark.

One run, in order:

1. check the config (:meth:`FinetuneConfig.validate`) and join the process group when
   launched by ``torchrun``;
2. hold out ``val_fraction`` of every base class's images for validation (seeded, stratified);
3. build the backbone (timm, ``num_classes=0``; a ``pretrained`` file goes through
   :func:`fewshot.backbones.weights.load_weights`, whose report is written to the manifest), a
   classification head (dropout + linear) and, with ``projection_dim > 0``, a projection head;
   timm's optimiser, per-step schedule, Mixup/CutMix and model EMA as configured;
4. every epoch: two AutoAugment views per image (framed like extraction: timm's resize and
   centre crop at ``crop_pct``), CE on both views' logits (of the mixed views with Mixup/CutMix)
   and the contrastive term on both (un-mixed) views' embeddings over the global batch; the validation loss; ``best/`` when
   it went down, ``last/`` always, ``log.jsonl``, a one-line summary (logged at INFO, like
   every progress message of the run); stop early after
   ``patience`` epochs without improvement.

Each process uses its own torch RNG state, restored when ``finetune`` returns (so the caller's
random state is untouched): data order, augmentation and dropout are all derived from
``(seed, epoch, step)`` (see :mod:`fewshot.training.sampling`), which is why a run killed and
resumed ends with the same weights as an uninterrupted one on the CPU. With ``dropout > 0``
dropout masks also depend on the process rank, so runs on different numbers of processes
differ in those masks (and, on the CPU, in BatchNorm statistics, which are per process there).

Test hook: with the environment variable ``FEWSHOT_TEST_EXIT_AFTER_STEPS=K`` the process
exits abruptly (``os._exit(75)``, no cleanup) right after optimiser step ``K`` of the run and
any checkpoint due at that step — a stand-in for a pre-empted job.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fewshot._io import (
    check_output_dir,
    sha256_arrays,
    sha256_file,
    write_json,
    write_text,
)
from fewshot._manifest import make_manifest
from fewshot._validate import check_int
from fewshot.backbones import create_backbone
from fewshot.backbones.weights import load_weights
from fewshot.checkpoint import read_checkpoint_meta
from fewshot.data import load_split
from fewshot.features import check_input_size, default_cache_dir, extract_cached
from fewshot.heads import ClassificationHead, NeckHead, ProjectionHead
from fewshot.losses import create_objective
from fewshot.runs import seed_run_name
from fewshot.training.config import FinetuneConfig, config_diff
from fewshot.training.distributed import (
    barrier,
    broadcast_flag,
    default_num_workers,
    init_distributed,
    shutdown,
)
from fewshot.training.loop import FinetuneNet, Trainer, make_mixup
from fewshot.training.sampling import (
    FeatureViews,
    TrainBatchSampler,
    TwoViews,
    ValBatchSampler,
    collate_views,
    holdout_split,
)
from fewshot.training.state import (
    BEST,
    LAST,
    LOG_FILE,
    MANIFEST_FILE,
    Progress,
    load_state,
    save_best,
    save_state,
    stored_config,
)
from fewshot.transforms import resolve_preprocessing, train_transform

__all__ = ["finetune", "finetune_seeds", "RunResult", "resume_config", "TEST_EXIT_ENV"]

_log = logging.getLogger(__name__)

#: Environment variable of the test hook (see the module docstring).
TEST_EXIT_ENV = "FEWSHOT_TEST_EXIT_AFTER_STEPS"
_TEST_EXIT_STATUS = 75


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What :func:`finetune` produced.

    Attributes:
        run_dir: the run directory.
        best: ``run_dir/best`` (checkpoint of the lowest validation loss; the last epoch
            without validation), for ``fewshot extract --checkpoint``.
        last: ``run_dir/last`` (latest state, resumable).
        epochs: epochs completed.
        steps: optimiser steps taken.
        best_epoch: 1-based epoch of ``best`` (None if no epoch completed).
        best_val_loss: its validation loss (None without validation).
        stopped_early: whether early stopping ended the run.
        history: the per-epoch records of ``log.jsonl``.
    """

    run_dir: Path
    best: Path
    last: Path
    epochs: int
    steps: int
    best_epoch: int | None
    best_val_loss: float | None
    stopped_early: bool
    history: tuple[dict[str, Any], ...]

    def summary(self) -> str:
        """One line for the terminal."""
        how = "stopped early" if self.stopped_early else "done"
        val = "" if self.best_val_loss is None else f" (val loss {self.best_val_loss:.4f})"
        return (
            f"{how} after {self.epochs} epochs, {self.steps} steps; best: epoch {self.best_epoch}{val} -> {self.best}"
        )


def resume_config(run_dir: str | os.PathLike, **overrides: Any) -> FinetuneConfig:
    """The config of the run in ``run_dir`` (from ``last/``) with ``overrides`` applied.

    ``out`` is set to ``run_dir``. Overrides of settings outside
    :data:`~fewshot.training.config.RESUME_FREE_KEYS` that change a value make
    :func:`finetune` refuse to resume.

    Raises:
        FileNotFoundError: ``run_dir`` holds no ``last/`` checkpoint.
        ValueError: an unreadable checkpoint or bad overrides.
    """
    stored = stored_config(run_dir)
    merged = {**stored, **overrides, "out": str(run_dir)}
    return FinetuneConfig.from_dict(merged, source=f"{run_dir}/{LAST}")


def finetune(config: FinetuneConfig, *, resume: bool = False, split: Any = None) -> RunResult:
    """Fine-tune ``config.backbone`` on the base classes of ``config.dataset``.

    Run it in one process, or in N under ``torchrun --nproc_per_node=N -m fewshot finetune``
    (DDP; NCCL on GPUs, gloo on the CPU). ``config.batch_size`` is the global batch: each of
    N processes takes ``batch_size / N`` images, and the contrastive term sees all
    ``2 * batch_size`` embeddings of the step (all-gathered with gradient), so the loss and
    gradients equal those of one process with the whole batch.

    Args:
        config: the run's settings (:class:`FinetuneConfig`).
        resume: continue the run in ``config.out`` from its ``last/`` checkpoint: model,
            optimiser, scheduler, data position and RNG states. A run that already finished
            is returned as it is.
        split: an :class:`~fewshot.data.ImageSplit` to train on instead of
            ``load_split(config.dataset, config.split, config.data_root)`` (its labels must
            index its ``class_names``); ``config.dataset`` then only names it.

    Returns:
        :class:`RunResult`.

    Writes ``config.out``: ``best/``, ``last/``, ``log.jsonl`` (one JSON object per epoch:
    ``epoch``, ``total``, ``ce``, ``contrastive``, ``val_loss``, ``val_ce``,
    ``val_contrastive``, ``val_acc``, ``lr`` (of the epoch's last step), ``images_per_s``,
    ``time`` (seconds), ``steps``, ``threads`` (CPU threads used), ``best``), and
    ``manifest.json``. Only process 0 writes. Resuming with another thread count than the
    run used warns (a ``RuntimeWarning``): the result then differs from an uninterrupted run.

    Raises:
        ValueError: any bad setting (see :meth:`FinetuneConfig.validate`); ``resume`` with a
            config that differs from the run's (the message names the keys); a fresh run
            into a directory that already holds one, or into an existing directory that is
            neither empty nor a fewshot run; an ``img_size`` the backbone cannot take
            (checked with one blank image before anything is written); a training set
            smaller than one batch.
        FileNotFoundError: missing data, weights, or (``resume``) no ``last/`` checkpoint.
        FloatingPointError: the training loss became NaN or infinite.
    """
    if not isinstance(config, FinetuneConfig):
        raise TypeError(f"config must be a FinetuneConfig, got {type(config).__name__}")
    config.validate(check_data=split is None)
    run_dir = Path(config.out)
    if resume:
        stored = stored_config(run_dir)
        diff = config_diff(stored, config.to_dict())
        if diff:
            shown = "; ".join(f"{k}: run has {stored.get(k)!r}, given {config.to_dict().get(k)!r}" for k in diff)
            raise ValueError(
                f"cannot resume {run_dir} with a different config ({shown}); keep the run's settings or start a new --out"
            )

    ctx = init_distributed(config.device)
    threads_before = torch.get_num_threads()
    try:
        _set_threads(config, ctx)
        devices = [ctx.device] if ctx.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            return _run(config, ctx, resume=resume, split=split)
    finally:
        torch.set_num_threads(threads_before)
        shutdown(ctx)


def finetune_seeds(config: FinetuneConfig, seeds: Sequence[int], *, split: Any = None) -> list[RunResult]:
    """Train one run per training seed: the replicates of one objective.

    Run ``s`` goes to ``config.out/seed-<s>/`` (a normal run directory, named ``seed-<s>``
    in its checkpoints) with ``config``'s settings and ``seed=s``. A run directory that
    already holds a run is resumed (a finished one is returned as it is, after checking its
    settings), so the same command continues an interrupted set of runs, and several
    processes or GPUs can each take a subset of the seeds (give each process different
    seeds).

    Args:
        config: the settings shared by all runs; ``config.out`` is the parent directory,
            ``config.seed`` is ignored and ``config.run`` must be None (runs are named by
            their seed).
        seeds: distinct non-negative training seeds, at least one.
        split: as :func:`finetune`.

    Returns:
        One :class:`RunResult` per seed, in the order given.

    Raises:
        ValueError: no seeds, repeated or negative seeds, a ``run`` name given, or any
            error of :func:`finetune` (e.g. a run directory whose settings differ).
    """
    seeds = list(seeds)
    if not seeds:
        raise ValueError("give at least one training seed")
    for s in seeds:
        check_int("training seed", s, low=0)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"training seeds must be distinct, got {seeds}")
    if config.run is not None:
        raise ValueError(f"run {config.run!r} conflicts with several seeds: each run is named seed-<S>")
    results = []
    for s in seeds:
        run = config.replace(seed=s, out=str(Path(config.out) / seed_run_name(s)))
        resume = (Path(run.out) / LAST).is_dir()  # finetune refuses a run with other settings
        _log.info(
            "training run %s (%d of %d)%s",
            seed_run_name(s),
            len(results) + 1,
            len(seeds),
            " (resuming)" if resume else "",
        )
        results.append(finetune(run, resume=resume, split=split))
    return results


def _set_threads(config: FinetuneConfig, ctx: Any) -> None:
    if ctx.device.type != "cpu":
        return
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    elif ctx.local_world_size > 1 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // ctx.local_world_size))


def _default_workers(config: FinetuneConfig, ctx: Any) -> int:
    return config.num_workers if config.num_workers is not None else default_num_workers(ctx.local_world_size)


@dataclasses.dataclass(frozen=True)
class _Data:
    """The base-class images of a run and its held-out split (:func:`_prepare_data`)."""

    split: Any
    n_classes: int
    train_idx: np.ndarray
    val_idx: np.ndarray


@dataclasses.dataclass
class _Run:
    """What the steps of one run share, built once by :func:`_build` and passed explicitly.

    ``progress`` is the only part that changes while the run goes on (set by
    :func:`_restore_or_initialise`, advanced by :func:`_after_step` and :func:`_end_epoch`).
    """

    config: FinetuneConfig
    ctx: Any
    run_dir: Path
    trainer: Trainer
    #: keyword arguments of save_state / save_best besides the weights: backbone, preprocessing, config, run
    ckpt: dict[str, Any]
    data_info: dict[str, Any]
    run_info: dict[str, Any]
    exit_after: int | None = None
    progress: Progress = dataclasses.field(default_factory=Progress)

    @property
    def main(self) -> bool:
        return bool(self.ctx.is_main)

    @property
    def steps_per_epoch(self) -> int:
        return int(self.data_info["steps_per_epoch"])


def _run(config: FinetuneConfig, ctx: Any, *, resume: bool, split: Any) -> RunResult:
    run_dir = Path(config.out)
    _check_output(config, run_dir, resume=resume)
    data = _prepare_data(config, split)
    run = _build(config, ctx, data)
    _restore_or_initialise(run, resume=resume)
    if run.progress.finished:
        if run.main:
            _log.info("%s already finished (%d epochs); nothing to do", run_dir, len(run.progress.history))
        return _finish(run)
    while run.progress.epoch < config.epochs:
        record = _train_epoch(run)
        stop = _update_best(run, record)
        _end_epoch(run, record, stop=stop)
        if stop:
            if run.main:
                _log.info("early stopping: no lower validation loss for %d epochs", config.patience)
            break
    return _finish(run)


def _check_output(config: FinetuneConfig, run_dir: Path, *, resume: bool) -> None:
    """Refuse a fresh run into a directory that holds a run, or that is not ours to write."""
    if resume:
        return
    if (run_dir / LAST).exists():  # every process looks before process 0 writes (barrier in _restore_or_initialise)
        raise ValueError(
            f"{run_dir} already holds a run ({LAST}/); pass --resume {run_dir} to continue it, or choose another --out"
        )
    check_output_dir(
        run_dir, "finetune", inputs=[config.pretrained if config.pretrained != "hub" else None, config.data_root]
    )


def _prepare_data(config: FinetuneConfig, split: Any) -> _Data:
    """Load the base classes (unless ``split`` is given), check their labels, hold out the
    validation part.

    Raises:
        ValueError: no images, or labels outside ``0..n_classes - 1``.
    """
    if split is None:
        split = load_split(config.dataset, config.split, config.data_root)
    labels = split.labels
    n_classes = len(split.class_names)
    if len(labels) == 0:
        raise ValueError(f"{config.dataset}/{config.split} has no images")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(
            f"labels of {config.dataset}/{config.split} span {labels.min()}..{labels.max()} for {n_classes} classes"
        )
    train_idx, val_idx = holdout_split(labels, config.val_fraction, config.seed)
    return _Data(split, n_classes, train_idx, val_idx)


def _build(config: FinetuneConfig, ctx: Any, data: _Data) -> _Run:
    """Build the run: backbone (with its pretrained weights), heads, objective, loaders, and the
    :class:`Trainer` (optimiser, schedule, Mixup/CutMix, EMA); the manifest's data and run
    parts. Nothing is written yet.

    Raises:
        ValueError: an ``img_size`` the backbone cannot take, or bad weights.
        FileNotFoundError: a missing weights file.
    """
    backbone_options = dict(config.backbone_kwargs)
    if config.drop_path:
        backbone_options["drop_path_rate"] = config.drop_path  # training only: not recorded in the checkpoint
    weights_file = config.pretrained not in (None, "hub")
    backbone = create_backbone(
        config.backbone, None if weights_file else config.pretrained, seed=config.seed, **backbone_options
    )
    load_report = load_weights(backbone, config.pretrained) if weights_file else None
    preprocessing = resolve_preprocessing(backbone, img_size=config.img_size, crop_pct=config.crop_pct)
    check_input_size(backbone, preprocessing)  # before anything is written
    objective = create_objective(
        config.objective, lam=config.lam, temperature=config.temperature, **config.objective_options
    )
    net = _build_net(config, backbone, objective, data.n_classes).to(ctx.device)

    items = _make_items(config, ctx, backbone, data.split, preprocessing)
    train_loader, val_loader, workers = _make_loaders(config, ctx, data, items)
    steps_per_epoch = train_loader.batch_sampler.steps_per_epoch
    trainer = Trainer(
        net,
        objective,
        ctx,
        train_loader,
        val_loader,
        lr=config.lr,
        weight_decay=config.weight_decay,
        total_steps=config.epochs * steps_per_epoch,
        warmup_steps=config.warmup_epochs * steps_per_epoch,
        scheduler=config.scheduler,
        seed=config.seed,
        opt=config.optimizer,
        layer_decay=config.layer_decay,
        warmup_lr=config.warmup_lr,
        min_lr=config.min_lr,
        ema_decay=config.ema_decay,
        mixup=make_mixup(
            data.n_classes,
            mixup=config.mixup,
            cutmix=config.cutmix,
            prob=config.mixup_prob,
            switch_prob=config.mixup_switch_prob,
            smoothing=config.smoothing,
        ),
        compile=config.compile,
        sync_batchnorm=config.sync_batchnorm,
        channels_last=config.channels_last,
        normalize=(preprocessing.mean, preprocessing.std),
        bf16=config.bf16,
    )
    cfg = config.to_dict()
    ckpt = dict(
        backbone_name=config.backbone,
        backbone_kwargs=dict(config.backbone_kwargs),
        preprocessing=preprocessing,
        config=cfg,
        run=config.run_name,
    )
    data_info = {
        "dataset": config.dataset,
        "split": config.split,
        "source": str(getattr(data.split, "source", "")),
        "classes": data.n_classes,
        "images": int(len(data.split.labels)),
        "train_images": int(data.train_idx.size),
        "val_images": int(data.val_idx.size),
        "val_indices_sha256": sha256_arrays(data.val_idx),
        "steps_per_epoch": steps_per_epoch,
    }
    run_info = {
        "world_size": ctx.world_size,
        "device": str(ctx.device),
        "num_workers": workers,
        "channels_last": trainer.channels_last,
        "bf16": trainer.bf16,
        "threads": torch.get_num_threads(),
        "preprocessing": preprocessing.to_dict(),
    }
    if ctx.is_main and weights_file:
        run_info["pretrained_sha256"] = sha256_file(config.pretrained)
        run_info["pretrained_load"] = load_report.to_dict()
    return _Run(config, ctx, Path(config.out), trainer, ckpt, data_info, run_info, exit_after=_test_exit_steps())


def _build_net(config: FinetuneConfig, backbone: torch.nn.Module, objective: Any, n_classes: int) -> FinetuneNet:
    """The backbone with its heads: the optional neck, the classifier and, when the
    contrastive term has ``projection_dim > 0``, the projection (each seeded from ``config.seed``)."""
    neck = NeckHead(backbone.num_features, config.neck_dims, seed=config.seed + 3) if config.neck_dims else None
    embed_dim = backbone.num_features if neck is None else neck.out_features
    classifier = ClassificationHead(embed_dim, n_classes, dropout=config.dropout, seed=config.seed + 1)
    projection = None
    if config.projection_dim > 0 and objective.uses_contrastive:
        projection = ProjectionHead(embed_dim, config.projection_dim, seed=config.seed + 2)
    return FinetuneNet(backbone, classifier, projection, neck=neck, freeze_backbone=config.freeze_backbone)


def _make_items(
    config: FinetuneConfig, ctx: Any, backbone: Any, split: Any, preprocessing: Any
) -> Callable[[np.ndarray], Any]:
    """``indices -> dataset`` of training items: two augmented views per image, or the frozen
    backbone's cached features (one fixed view per image, computed once)."""
    if config.features_cached:
        return _cached_feature_items(config, backbone, split, preprocessing, ctx)
    transform = train_transform(
        preprocessing, policy=config.augment, hflip=config.hflip, scale=config.crop_scale, normalize=False
    )  # uint8 views, normalised on the device by the Trainer
    return lambda idx: TwoViews(split, idx, transform)


def _make_loaders(
    config: FinetuneConfig, ctx: Any, data: _Data, items: Callable[[np.ndarray], Any]
) -> tuple[Any, Any, int]:
    """The training loader (this rank's share of every global batch), the validation loader
    (None without held-out images) and the number of loader workers."""
    sampler = TrainBatchSampler(
        len(data.train_idx), config.batch_size, config.seed, rank=ctx.rank, world_size=ctx.world_size
    )
    workers = _default_workers(config, ctx)
    loader_options: dict[str, Any] = dict(
        num_workers=workers,
        collate_fn=collate_views,
        pin_memory=ctx.device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        generator=torch.Generator().manual_seed(config.seed),
    )
    train_loader = torch.utils.data.DataLoader(items(data.train_idx), batch_sampler=sampler, **loader_options)
    val_loader = None
    if data.val_idx.size:
        val_sampler = ValBatchSampler(
            len(data.val_idx), config.batch_size, config.seed, rank=ctx.rank, world_size=ctx.world_size
        )
        val_loader = torch.utils.data.DataLoader(items(data.val_idx), batch_sampler=val_sampler, **loader_options)
    return train_loader, val_loader, workers


def _restore_or_initialise(run: _Run, *, resume: bool) -> None:
    """Set ``run.progress``: restored from ``last/`` (model, optimiser, schedule, EMA, RNG
    states) when resuming, else a fresh start whose ``last/`` is written at once. An
    unfinished run then records ``status: running`` in its manifest."""
    trainer = run.trainer
    if resume:
        run.progress = load_state(
            run.run_dir / LAST, trainer.net, trainer.optimizer, trainer.scheduler, run.ctx.device, ema=trainer.ema
        )
        if run.progress.finished:
            return
        _warn_threads(run.run_dir, run.progress)
        if run.main:
            _log.info(
                "resuming %s at epoch %d, step %d/%d",
                run.run_dir,
                run.progress.epoch + 1,
                run.progress.step,
                run.steps_per_epoch,
            )
    else:
        run.progress = Progress()
        barrier()
        if run.main:
            run.run_dir.mkdir(parents=True, exist_ok=True)
            _save_last(run)
        barrier()
    trainer.sums.copy_(torch.tensor(run.progress.sums, dtype=torch.float64))
    if run.main:
        write_json(
            run.run_dir / MANIFEST_FILE,
            make_manifest("finetune", run.ckpt["config"], status="running", data=run.data_info, run=run.run_info),
        )


def _save_last(run: _Run) -> None:
    """Process 0 writes ``last/``: weights, optimiser, schedule, EMA, RNG states, progress."""
    t = run.trainer
    save_state(
        run.run_dir / LAST,
        t.net,
        optimizer=t.optimizer,
        scheduler=t.scheduler,
        progress=run.progress,
        ema=t.ema,
        **run.ckpt,
    )


def _checkpoint_last(run: _Run) -> None:
    """Store the epoch's running sums in the progress and write ``last/`` (all processes wait)."""
    run.progress.sums = [float(v) for v in run.trainer.sums.tolist()]
    if run.main:
        _save_last(run)
    barrier()


def _after_step(run: _Run, epoch: int, done: int) -> None:
    """Called by the trainer after every optimiser step: advance the progress, write a
    mid-epoch ``last/`` every ``save_every_steps`` steps, and the test hook's exit."""
    progress = run.progress
    progress.step = done
    progress.global_step += 1
    every = run.config.save_every_steps
    if every and progress.global_step % every == 0 and done < run.steps_per_epoch:
        _checkpoint_last(run)
    if run.exit_after is not None and progress.global_step == run.exit_after:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_TEST_EXIT_STATUS)


def _train_epoch(run: _Run) -> dict[str, Any]:
    """Train the epoch in progress (from its current step) and validate: the epoch's
    ``log.jsonl`` record, without ``best``.

    Raises:
        FloatingPointError: the training or validation loss is NaN or infinite.
    """
    config, trainer, epoch = run.config, run.trainer, run.progress.epoch
    width = len(str(config.epochs))
    t0 = time.perf_counter()
    stats = trainer.train_epoch(
        epoch,
        run.progress.step,
        on_step=functools.partial(_after_step, run),
        progress=config.progress,
        desc=f"epoch {epoch + 1:>{width}}/{config.epochs}",
    )
    val = trainer.validate()
    seconds = time.perf_counter() - t0
    record = _epoch_record(epoch, stats, val, lr=trainer.lr_last, seconds=seconds, steps=run.steps_per_epoch)
    if val is not None and not math.isfinite(val["val_loss"]):
        raise FloatingPointError(f"the validation loss is {val['val_loss']} in epoch {epoch + 1}; lower lr")
    return record


def _epoch_record(
    epoch: int, stats: dict[str, float], val: dict[str, float] | None, *, lr: float, seconds: float, steps: int
) -> dict[str, Any]:
    """One ``log.jsonl`` record (see :func:`finetune`) of 0-based ``epoch`` from the trainer's
    epoch ``stats`` and validation ``val`` (None without validation)."""
    return {
        "epoch": epoch + 1,
        "total": stats["total"],
        "ce": stats["ce"],
        "contrastive": stats["contrastive"],
        "val_loss": None if val is None else val["val_loss"],
        "val_ce": None if val is None else val["val_ce"],
        "val_contrastive": None if val is None else val["val_contrastive"],
        "val_acc": None if val is None else val["val_acc"],
        "lr": lr,
        "images_per_s": stats["images"] / stats["seconds"] if stats["seconds"] > 0 else None,
        "time": seconds,
        "steps": steps,
        "threads": torch.get_num_threads(),
    }


def _update_best(run: _Run, record: dict[str, Any]) -> bool:
    """Best checkpoint and early stopping: set ``record["best"]``; when the validation loss
    went down (or there is no validation) write ``best/`` and reset the patience count.
    Every process takes process 0's decision. Returns whether to stop early."""
    progress, val_loss = run.progress, record["val_loss"]
    improved = val_loss is None or progress.best_val_loss is None or val_loss < progress.best_val_loss
    improved = broadcast_flag(improved, run.ctx.device)
    record["best"] = bool(improved)
    if improved:
        progress.best_val_loss = val_loss
        progress.best_epoch = record["epoch"]
        progress.bad_epochs = 0
        if run.main:
            metrics = {
                k: record[k] for k in ("total", "ce", "contrastive", "val_loss", "val_ce", "val_contrastive", "val_acc")
            }
            save_best(run.run_dir / BEST, run.trainer.eval_net, epoch=record["epoch"], metrics=metrics, **run.ckpt)
    else:
        progress.bad_epochs += 1
    return run.config.patience > 0 and val_loss is not None and progress.bad_epochs >= run.config.patience


def _end_epoch(run: _Run, record: dict[str, Any], *, stop: bool) -> None:
    """Close the epoch: append its record, move the progress to the next epoch (finished
    after the last one or an early stop), write ``last/`` and ``log.jsonl``, log the summary."""
    progress, config = run.progress, run.config
    progress.history.append(record)
    progress.epoch, progress.step = record["epoch"], 0
    progress.finished = stop or progress.epoch >= config.epochs
    progress.stopped_early = stop
    run.trainer.sums.zero_()
    _checkpoint_last(run)
    if run.main:
        _write_log(run.run_dir, progress)
        _log.info("%s", _summary(record, config.epochs, len(str(config.epochs))))


def _finish(run: _Run) -> RunResult:
    """Process 0 writes the log and the final manifest; every process returns the result."""
    if run.main:
        _write_outputs(run.run_dir, run.progress, run.ckpt["config"], run.data_info, run.run_info)
    barrier()
    return _result(run.run_dir, run.progress)


def _warn_threads(run_dir: Path, progress: Any) -> None:
    """Warn when a resumed run computes with another number of CPU threads than it did:
    float reductions then sum in another order, so the final weights differ (slightly) from
    an uninterrupted run's. Every epoch's ``log.jsonl`` record keeps its thread count."""
    before = next((r.get("threads") for r in reversed(progress.history) if r.get("threads") is not None), None)
    now = torch.get_num_threads()
    if before is not None and before != now:
        warnings.warn(
            f"resuming {run_dir} with {now} CPU threads where it ran with {before}: the final weights "
            "will differ from an uninterrupted run's (pass --threads to keep them equal)",
            RuntimeWarning,
            stacklevel=3,
        )


def _cached_feature_items(config: FinetuneConfig, backbone: Any, split: Any, preprocessing: Any, ctx: Any) -> Any:
    """``indices -> FeatureViews``: the frozen backbone's features of ``split`` from the feature
    cache (:func:`fewshot.features.extract_cached`); process 0 computes a missing entry, the
    others then read it."""
    options = dict(
        preprocessing=preprocessing,
        device=ctx.device,
        progress=config.progress,
        num_workers=config.num_workers,
        manifest={"kind": "finetune-cache"},
    )
    if ctx.is_main:
        path, hit = extract_cached(backbone, split, default_cache_dir(), **options)
        _log.info(
            "backbone features of %s/%s %s: %s", config.dataset, config.split, "from cache" if hit else "computed", path
        )
    barrier()
    if not ctx.is_main:
        path, _ = extract_cached(backbone, split, default_cache_dir(), **options)
    with np.load(path, allow_pickle=False) as data:
        features = torch.from_numpy(np.ascontiguousarray(data["features"]))
    backbone.eval()  # extraction restores the training mode; the frozen backbone stays in eval mode
    return lambda idx: FeatureViews(features, split.labels, idx)


def _write_log(run_dir: Path, progress: Progress) -> None:
    write_text(run_dir / LOG_FILE, "".join(json.dumps(r) + "\n" for r in progress.history))


def _write_outputs(run_dir: Path, progress: Progress, cfg: dict, data_info: dict, run_info: dict) -> None:
    """The log and the final manifest of a finished run (rewritten whole: idempotent)."""
    _write_log(run_dir, progress)
    result = _result(run_dir, progress)
    outcome = {
        "epochs": result.epochs,
        "steps": result.steps,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "stopped_early": result.stopped_early,
    }
    checkpoints = {name: _backbone_sha(run_dir / name) for name in (BEST, LAST)}
    write_json(
        run_dir / MANIFEST_FILE,
        make_manifest(
            "finetune",
            cfg,
            status="finished",
            data=data_info,
            run=run_info,
            result=outcome,
            checkpoints=checkpoints,
        ),
    )


def _backbone_sha(directory: Path) -> str | None:
    try:
        return read_checkpoint_meta(directory)["backbone"]["sha256"]
    except (OSError, ValueError):
        return None


def _result(run_dir: Path, progress: Progress) -> RunResult:
    return RunResult(
        run_dir=run_dir,
        best=run_dir / BEST,
        last=run_dir / LAST,
        epochs=len(progress.history),
        steps=progress.global_step,
        best_epoch=progress.best_epoch,
        best_val_loss=progress.best_val_loss,
        stopped_early=progress.stopped_early,
        history=tuple(progress.history),
    )


def _summary(r: dict[str, Any], epochs: int, width: int) -> str:
    parts = [
        f"epoch {r['epoch']:>{width}}/{epochs}",
        f"loss {r['total']:.4f}",
        f"ce {r['ce']:.4f}",
        f"con {r['contrastive']:.4f}",
    ]
    if r["val_loss"] is not None:
        parts.append(f"val {r['val_loss']:.4f}{' *' if r['best'] else '  '}")
        parts.append(f"val_acc {r['val_acc']:.3f}")
    parts.append(f"lr {r['lr']:.2e}")
    if r["images_per_s"] is not None:
        parts.append(f"{r['images_per_s']:.0f} img/s")
    parts.append(f"{r['time']:.1f}s")
    return "  ".join(parts)


def _test_exit_steps() -> int | None:
    value = os.environ.get(TEST_EXIT_ENV)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{TEST_EXIT_ENV}={value!r} is not an integer") from None
