"""``finetune(config) -> RunResult``: fine-tune a backbone on the base classes of a benchmark.

One run, in order:

1. check the config (:meth:`FinetuneConfig.validate`) and join the process group when
   launched by ``torchrun``;
2. hold out ``val_fraction`` of every base class's images for validation (seeded, stratified);
3. build the backbone (timm, ``num_classes=0``; a ``pretrained`` file goes through
   :func:`fewshot.weights.load_weights`, whose report is written to the manifest), a
   classification head (dropout + linear) and, with ``projection_dim > 0``, a projection head;
   timm's optimiser, per-step schedule, Mixup/CutMix and model EMA as configured;
4. every epoch: two AutoAugment views per image (framed like extraction: timm's resize and
   centre crop at ``crop_pct``), CE on both views' logits (of the mixed views with Mixup/CutMix)
   and the contrastive term on both (un-mixed) views' embeddings over the global batch; the validation loss; ``best/`` when
   it went down, ``last/`` always, ``log.jsonl``, a one-line summary; stop early after
   ``patience`` epochs without improvement.

Each process uses its own torch RNG state, restored when ``finetune`` returns (so the caller's
random state is untouched): data order, augmentation and dropout are all derived from
``(seed, epoch, step)`` (see :mod:`fewshot.training.data`), which is why a run killed and
resumed ends with the same weights as an uninterrupted one on the CPU. With ``dropout > 0``
dropout masks also depend on the process rank, so runs on different numbers of processes
differ in those masks (and, on the CPU, in BatchNorm statistics, which are per process there).

Test hook: with the environment variable ``FEWSHOT_TEST_EXIT_AFTER_STEPS=K`` the process
exits abruptly (``os._exit(75)``, no cleanup) right after optimiser step ``K`` of the run and
any checkpoint due at that step — a stand-in for a pre-empted job.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from fewshot.runs import seed_run_name
from fewshot.training.config import FinetuneConfig, config_diff
from fewshot.training.state import BEST, LAST, LOG_FILE, MANIFEST_FILE, Progress

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
        return f"{how} after {self.epochs} epochs, {self.steps} steps; best: epoch {self.best_epoch}{val} -> {self.best}"


def resume_config(run_dir: str | os.PathLike, **overrides: Any) -> FinetuneConfig:
    """The config of the run in ``run_dir`` (from ``last/``) with ``overrides`` applied.

    ``out`` is set to ``run_dir``. Overrides of settings outside
    :data:`~fewshot.training.config.RESUME_FREE_KEYS` that change a value make
    :func:`finetune` refuse to resume.

    Raises:
        FileNotFoundError: ``run_dir`` holds no ``last/`` checkpoint.
        ValueError: an unreadable checkpoint or bad overrides.
    """
    from fewshot.training.state import stored_config

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
        from fewshot.training.state import stored_config

        stored = stored_config(run_dir)
        diff = config_diff(stored, config.to_dict())
        if diff:
            shown = "; ".join(f"{k}: run has {stored.get(k)!r}, given {config.to_dict().get(k)!r}" for k in diff)
            raise ValueError(f"cannot resume {run_dir} with a different config ({shown}); keep the run's settings or start a new --out")

    from fewshot.training.distributed import init_distributed, shutdown

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
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"training seeds must be non-negative integers, got {s!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"training seeds must be distinct, got {seeds}")
    if config.run is not None:
        raise ValueError(f"run {config.run!r} conflicts with several seeds: each run is named seed-<S>")
    results = []
    for s in seeds:
        run = config.replace(seed=s, out=str(Path(config.out) / seed_run_name(s)))
        resume = (Path(run.out) / LAST).is_dir()  # finetune refuses a run with other settings
        _log.info("training run %s (%d of %d)%s", seed_run_name(s), len(results) + 1, len(seeds), " (resuming)" if resume else "")
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
    from fewshot.training.distributed import default_num_workers

    return config.num_workers if config.num_workers is not None else default_num_workers(ctx.local_world_size)


def _run(config: FinetuneConfig, ctx: Any, *, resume: bool, split: Any) -> RunResult:
    from fewshot._io import sha256_arrays, sha256_file, write_json
    from fewshot._manifest import make_manifest
    from fewshot.losses import create_objective
    from fewshot.models import (
        ClassificationHead,
        NeckHead,
        ProjectionHead,
        create_backbone,
        load_weights,
        resolve_preprocessing,
        train_transform,
    )
    from fewshot.training.data import TrainBatchSampler, TwoViews, ValBatchSampler, collate_views, holdout_split
    from fewshot.training.distributed import barrier, broadcast_flag
    from fewshot.training.loop import FinetuneNet, Trainer, make_mixup
    from fewshot.training.state import load_state, save_best, save_state

    run_dir = Path(config.out)
    main = ctx.is_main
    cfg = config.to_dict()
    if not resume and (run_dir / LAST).exists():  # every process looks before process 0 writes (barrier below)
        raise ValueError(f"{run_dir} already holds a run ({LAST}/); pass --resume {run_dir} to continue it, or choose another --out")
    if not resume:
        from fewshot._io import check_output_dir

        check_output_dir(run_dir, "finetune", inputs=[config.pretrained if config.pretrained != "hub" else None, config.data_root])

    # ---------------------------------------------------------------- data
    if split is None:
        from fewshot.data import load_split

        split = load_split(config.dataset, config.split, config.data_root)
    labels = split.labels
    n_classes = len(split.class_names)
    if len(labels) == 0:
        raise ValueError(f"{config.dataset}/{config.split} has no images")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels of {config.dataset}/{config.split} span {labels.min()}..{labels.max()} for {n_classes} classes")
    train_idx, val_idx = holdout_split(labels, config.val_fraction, config.seed)

    # ---------------------------------------------------------------- model
    backbone_options = dict(config.backbone_kwargs)
    if config.drop_path:
        backbone_options["drop_path_rate"] = config.drop_path  # training only: not recorded in the checkpoint
    weights_file = config.pretrained not in (None, "hub")
    backbone = create_backbone(config.backbone, None if weights_file else config.pretrained, seed=config.seed, **backbone_options)
    load_report = load_weights(backbone, config.pretrained) if weights_file else None
    preprocessing = resolve_preprocessing(backbone, img_size=config.img_size, crop_pct=config.crop_pct)
    from fewshot.features import check_input_size

    check_input_size(backbone, preprocessing)  # before anything is written
    objective = create_objective(config.objective, lam=config.lam, temperature=config.temperature, **config.objective_options)
    neck = NeckHead(backbone.num_features, config.neck_dims, seed=config.seed + 3) if config.neck_dims else None
    embed_dim = backbone.num_features if neck is None else neck.out_features
    classifier = ClassificationHead(embed_dim, n_classes, dropout=config.dropout, seed=config.seed + 1)
    projection = None
    if config.projection_dim > 0 and objective.uses_contrastive:
        projection = ProjectionHead(embed_dim, config.projection_dim, seed=config.seed + 2)
    net = FinetuneNet(backbone, classifier, projection, neck=neck, freeze_backbone=config.freeze_backbone).to(ctx.device)

    if config.features_cached:  # one fixed view per image: the frozen backbone's features, computed once
        items = _cached_feature_items(config, backbone, split, preprocessing, ctx)
    else:
        transform = train_transform(preprocessing, policy=config.augment, hflip=config.hflip, scale=config.crop_scale,
                                    normalize=False)  # uint8 views, normalised on the device
        items = lambda idx: TwoViews(split, idx, transform)  # noqa: E731
    sampler = TrainBatchSampler(len(train_idx), config.batch_size, config.seed, rank=ctx.rank, world_size=ctx.world_size)
    workers = _default_workers(config, ctx)
    loader_options: dict[str, Any] = dict(
        num_workers=workers,
        collate_fn=collate_views,
        pin_memory=ctx.device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        generator=torch.Generator().manual_seed(config.seed),
    )
    train_loader = torch.utils.data.DataLoader(items(train_idx), batch_sampler=sampler, **loader_options)
    val_loader = None
    if val_idx.size:
        val_sampler = ValBatchSampler(len(val_idx), config.batch_size, config.seed, rank=ctx.rank, world_size=ctx.world_size)
        val_loader = torch.utils.data.DataLoader(items(val_idx), batch_sampler=val_sampler, **loader_options)

    steps_per_epoch = sampler.steps_per_epoch
    trainer = Trainer(
        net, objective, ctx, train_loader, val_loader,
        lr=config.lr, weight_decay=config.weight_decay,
        total_steps=config.epochs * steps_per_epoch, warmup_steps=config.warmup_epochs * steps_per_epoch,
        scheduler=config.scheduler, seed=config.seed, opt=config.optimizer, layer_decay=config.layer_decay,
        warmup_lr=config.warmup_lr, min_lr=config.min_lr, ema_decay=config.ema_decay,
        mixup=make_mixup(n_classes, mixup=config.mixup, cutmix=config.cutmix, prob=config.mixup_prob,
                         switch_prob=config.mixup_switch_prob, smoothing=config.smoothing),
        compile=config.compile, sync_batchnorm=config.sync_batchnorm,
        channels_last=config.channels_last, normalize=(preprocessing.mean, preprocessing.std),
    )
    net = trainer.net
    ckpt = dict(backbone_name=config.backbone, backbone_kwargs=dict(config.backbone_kwargs), preprocessing=preprocessing, config=cfg, run=config.run_name)

    data_info = {
        "dataset": config.dataset,
        "split": config.split,
        "source": str(getattr(split, "source", "")),
        "classes": n_classes,
        "images": int(len(labels)),
        "train_images": int(train_idx.size),
        "val_images": int(val_idx.size),
        "val_indices_sha256": sha256_arrays(val_idx),
        "steps_per_epoch": steps_per_epoch,
    }
    run_info = {"world_size": ctx.world_size, "device": str(ctx.device), "num_workers": workers,
                "channels_last": trainer.channels_last,
                "threads": torch.get_num_threads(), "preprocessing": preprocessing.to_dict()}
    if main and weights_file:
        run_info["pretrained_sha256"] = sha256_file(config.pretrained)
        run_info["pretrained_load"] = load_report.to_dict()

    # ---------------------------------------------------------------- state
    if resume:
        progress = load_state(run_dir / LAST, net, trainer.optimizer, trainer.scheduler, ctx.device, ema=trainer.ema)
        if progress.finished:
            if main:
                print(f"{run_dir} already finished ({len(progress.history)} epochs); nothing to do", flush=True)
                _write_outputs(run_dir, progress, cfg, data_info, run_info)
            barrier()
            return _result(run_dir, progress)
        _warn_threads(run_dir, progress)
        if main:
            print(f"resuming {run_dir} at epoch {progress.epoch + 1}, step {progress.step}/{steps_per_epoch}", flush=True)
    else:
        progress = Progress()
        barrier()
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_state(run_dir / LAST, net, optimizer=trainer.optimizer, scheduler=trainer.scheduler, progress=progress, ema=trainer.ema, **ckpt)
        barrier()
    trainer.sums.copy_(torch.tensor(progress.sums, dtype=torch.float64))
    if main:
        write_json(run_dir / MANIFEST_FILE, make_manifest("finetune", cfg, status="running", data=data_info, run=run_info))

    exit_after = _test_exit_steps()

    def checkpoint_last() -> None:
        progress.sums = [float(v) for v in trainer.sums.tolist()]
        if main:
            save_state(run_dir / LAST, net, optimizer=trainer.optimizer, scheduler=trainer.scheduler, progress=progress, ema=trainer.ema, **ckpt)
        barrier()

    def on_step(epoch: int, done: int) -> None:
        progress.step = done
        progress.global_step += 1
        if config.save_every_steps and progress.global_step % config.save_every_steps == 0 and done < steps_per_epoch:
            checkpoint_last()
        if exit_after is not None and progress.global_step == exit_after:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(_TEST_EXIT_STATUS)

    # ---------------------------------------------------------------- epochs
    width = len(str(config.epochs))
    while progress.epoch < config.epochs:
        epoch = progress.epoch
        t0 = time.perf_counter()
        stats = trainer.train_epoch(
            epoch, progress.step, on_step=on_step, progress=config.progress,
            desc=f"epoch {epoch + 1:>{width}}/{config.epochs}",
        )
        val = trainer.validate()
        seconds = time.perf_counter() - t0
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "total": stats["total"],
            "ce": stats["ce"],
            "contrastive": stats["contrastive"],
            "val_loss": None if val is None else val["val_loss"],
            "val_ce": None if val is None else val["val_ce"],
            "val_contrastive": None if val is None else val["val_contrastive"],
            "val_acc": None if val is None else val["val_acc"],
            "lr": trainer.lr_last,
            "images_per_s": stats["images"] / stats["seconds"] if stats["seconds"] > 0 else None,
            "time": seconds,
            "steps": steps_per_epoch,
            "threads": torch.get_num_threads(),
        }
        if val is not None and not math.isfinite(val["val_loss"]):
            raise FloatingPointError(f"the validation loss is {val['val_loss']} in epoch {epoch + 1}; lower lr")
        improved = val is None or progress.best_val_loss is None or val["val_loss"] < progress.best_val_loss
        improved = broadcast_flag(improved, ctx.device)
        record["best"] = bool(improved)
        if improved:
            progress.best_val_loss = None if val is None else val["val_loss"]
            progress.best_epoch = epoch + 1
            progress.bad_epochs = 0
            if main:
                metrics = {k: record[k] for k in ("total", "ce", "contrastive", "val_loss", "val_ce", "val_contrastive", "val_acc")}
                save_best(run_dir / BEST, trainer.eval_net, epoch=epoch + 1, metrics=metrics, **ckpt)
        else:
            progress.bad_epochs += 1
        stop = config.patience > 0 and val is not None and progress.bad_epochs >= config.patience
        progress.history.append(record)
        progress.epoch, progress.step = epoch + 1, 0
        progress.finished = stop or progress.epoch >= config.epochs
        progress.stopped_early = stop
        trainer.sums.zero_()
        checkpoint_last()
        if main:
            _write_log(run_dir, progress)
            print(_summary(record, config.epochs, width), flush=True)
        if stop:
            if main:
                print(f"early stopping: no lower validation loss for {config.patience} epochs", flush=True)
            break

    if main:
        _write_outputs(run_dir, progress, cfg, data_info, run_info)
    barrier()
    return _result(run_dir, progress)


def _warn_threads(run_dir: Path, progress: Any) -> None:
    """Warn when a resumed run computes with another number of CPU threads than it did:
    float reductions then sum in another order, so the final weights differ (slightly) from
    an uninterrupted run's. Every epoch's ``log.jsonl`` record keeps its thread count."""
    import warnings

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
    import numpy as np

    from fewshot.features import default_cache_dir, extract_cached
    from fewshot.training.data import FeatureViews
    from fewshot.training.distributed import barrier

    options = dict(preprocessing=preprocessing, device=ctx.device, progress=config.progress,
                   num_workers=config.num_workers, manifest={"kind": "finetune-cache"})
    if ctx.is_main:
        path, hit = extract_cached(backbone, split, default_cache_dir(), **options)
        _log.info("backbone features of %s/%s %s: %s", config.dataset, config.split, "from cache" if hit else "computed", path)
    barrier()
    if not ctx.is_main:
        path, _ = extract_cached(backbone, split, default_cache_dir(), **options)
    with np.load(path, allow_pickle=False) as data:
        features = torch.from_numpy(np.ascontiguousarray(data["features"]))
    backbone.eval()  # extraction restores the training mode; the frozen backbone stays in eval mode
    return lambda idx: FeatureViews(features, split.labels, idx)


def _write_log(run_dir: Path, progress: Progress) -> None:
    from fewshot._io import write_text

    write_text(run_dir / LOG_FILE, "".join(json.dumps(r) + "\n" for r in progress.history))


def _write_outputs(run_dir: Path, progress: Progress, cfg: dict, data_info: dict, run_info: dict) -> None:
    """The log and the final manifest of a finished run (rewritten whole: idempotent)."""
    from fewshot._io import write_json
    from fewshot._manifest import make_manifest

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
    write_json(run_dir / MANIFEST_FILE, make_manifest(
        "finetune", cfg, status="finished", data=data_info, run=run_info, result=outcome, checkpoints=checkpoints,
    ))


def _backbone_sha(directory: Path) -> str | None:
    from fewshot.checkpoint import read_checkpoint_meta

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

