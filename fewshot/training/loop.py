"""The training step, the epoch and the validation pass.

:class:`FinetuneNet` joins a backbone and its heads: ``(B, 3, H, W)`` images give
``(B, C)`` logits for cross-entropy and ``(B, d)`` embeddings for the contrastive term (the
backbone's pooled features, or their projection). :func:`compute_loss` is one step's
objective for a batch of images with two views each; :class:`Trainer` runs epochs of it with
timm's optimiser (``create_optimizer_v2``: weight-decay groups, layer-wise lr decay), timm's
per-step warm-up + cosine schedule, optional Mixup/CutMix and model EMA, and measures the
validation loss.

Views are interleaved: a ``(b, 2, 3, H, W)`` batch becomes rows ``[img0 view0, img0 view1,
img1 view0, ...]``, so the rows gathered from N processes are in the same order as the rows
of one process holding all their images.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from fewshot.allocator import reuse_freed_memory_on
from fewshot.losses import Objective, ObjectiveOutput
from fewshot.training.distributed import (
    DistContext,
    all_gather,
    all_gather_varlen,
    all_gather_with_grad,
    all_reduce_sum,
)
from fewshot.training.sampling import step_seed

__all__ = [
    "FinetuneNet",
    "compute_loss",
    "normalize_views",
    "use_channels_last",
    "CHANNELS_LAST_CPU",
    "FUSED_OPTIMIZERS",
    "make_optimizer",
    "make_scheduler",
    "make_mixup",
    "Trainer",
]

#: Backbone classes (``type(backbone).__name__``) trained in channels-last memory format on
#: the CPU when ``channels_last`` is not set: the families whose CPU training step measured
#: faster that way (``benchmarks/bench_finetune.py``, CPU time of one step, 2 cores, 2026-12):
#: Conv-4 (0.69x the contiguous step's time at 16 px, 0.71x at 84 px) and timm's EfficientNets
#: (``tf_efficientnet_lite0`` at 84 px: 0.69x). ResNets measured no gain (ResNet-12 at 84 px
#: 1.01x, timm ``resnet18`` at 84 px 1.02x) and stay contiguous, as do ViTs (their blocks see
#: rows) and families not measured; on CUDA every backbone goes channels-last.
CHANNELS_LAST_CPU: frozenset[str] = frozenset({"Conv4", "EfficientNet", "ResNet12", "FewShotResNet12"})


def use_channels_last(backbone: nn.Module, device: torch.device | str) -> bool:
    """Whether training ``backbone`` on ``device`` uses channels-last by default: always on
    CUDA; on the CPU when its class is in :data:`CHANNELS_LAST_CPU`."""
    if torch.device(device).type == "cuda":
        return True
    return type(backbone).__name__ in CHANNELS_LAST_CPU


def normalize_views(views: torch.Tensor, mean: torch.Tensor | None, std: torch.Tensor | None) -> torch.Tensor:
    """The model input of a batch of views, on the views' device.

    ``uint8`` pixels ``(..., 3, H, W)`` (what the training workers emit) become float32
    ``(x / 255 - mean) / std`` — the operations of torchvision's ``ToTensor`` + ``Normalize``
    in the same order, so on the CPU the result is bitwise theirs (on CUDA within rounding).
    Float views (a frozen backbone's cached features, or views normalised elsewhere) are
    returned unchanged.

    Args:
        views: uint8 pixels or float inputs.
        mean, std: ``(3, 1, 1)`` float32 tensors on the views' device (the backbone's
            :class:`~fewshot.transforms.Preprocessing`); needed for uint8 views.

    Raises:
        ValueError: uint8 views without ``mean`` and ``std``.
    """
    if views.dtype != torch.uint8:
        return views
    if mean is None or std is None:
        raise ValueError("uint8 views need the backbone's mean and std (Trainer(normalize=(mean, std)))")
    return views.float().div_(255).sub_(mean).div_(std)


class FinetuneNet(nn.Module):
    """A backbone with an optional neck, a classification head and an optional projection head.

    ``forward(x)`` maps ``(B, 3, H, W)`` images — or ``(B, D)`` backbone features, which skip
    the backbone (a frozen backbone's cached features) — to ``(logits (B, num_classes),
    embeddings (B, d))``. The embedding is the backbone's pooled features, or ``neck(features)``
    with a neck; the classifier sees the embedding; the contrastive term sees it, or
    ``projection(embedding)`` when a projection head is given (not normalised; the losses
    normalise).

    With ``freeze_backbone`` the backbone's parameters get ``requires_grad=False``, it runs
    under ``torch.no_grad`` and stays in eval mode whatever :meth:`train` is asked.
    """

    def __init__(
        self,
        backbone: nn.Module,
        classifier: nn.Module,
        projection: nn.Module | None = None,
        *,
        neck: nn.Module | None = None,
        freeze_backbone: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.classifier = classifier
        self.projection = projection
        self.freeze_backbone = bool(freeze_backbone)
        if self.freeze_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def train(self, mode: bool = True) -> FinetuneNet:
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    @property
    def embed_dim(self) -> int:
        if self.projection is not None:
            return int(self.projection.out_features)
        if self.neck is not None:
            return int(self.neck.out_features)
        return int(self.backbone.num_features)

    def heads(self) -> dict[str, nn.Module]:
        """The heads by checkpoint name: ``classifier`` and, when present, ``neck`` and ``projection``."""
        out = {"classifier": self.classifier}
        if self.neck is not None:
            out["neck"] = self.neck
        if self.projection is not None:
            out["projection"] = self.projection
        return out

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """The backbone's ``no_weight_decay()`` names (ViT ``cls_token``, ``pos_embed``, ...), prefixed."""
        fn = getattr(self.backbone, "no_weight_decay", None)
        return {f"backbone.{n}" for n in (fn() if callable(fn) else ())}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Callable[[str], tuple[float, ...]]:
        """timm's layer groups of the backbone; the heads join the backbone's last group.

        Raises:
            ValueError: the backbone has no ``group_matcher`` (layer-wise lr decay needs one).
        """
        from timm.models import group_parameters

        matcher = getattr(self.backbone, "group_matcher", None)
        if not callable(matcher):
            raise ValueError(
                f"backbone {type(self.backbone).__name__} has no group_matcher(); layer_decay needs timm's layer groups"
            )
        layer_of = group_parameters(self.backbone, matcher(coarse=coarse), reverse=True)
        top = float(max(layer_of.values())) if layer_of else 0.0

        def match(name: str) -> tuple[float, ...]:
            if name.startswith("backbone."):
                return (float(layer_of.get(name[len("backbone.") :], top)),)
            return (top,)

        return match

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim == 2:  # backbone features already (a frozen backbone's cache)
            features = x
        elif self.freeze_backbone:
            with torch.no_grad():
                features = self.backbone(x)
        else:
            features = self.backbone(x)
        if self.neck is not None:
            features = self.neck(features)
        logits = self.classifier(features)
        embeddings = features if self.projection is None else self.projection(features)
        return logits, embeddings


def compute_loss(
    model: nn.Module,
    objective: Objective,
    views: torch.Tensor,
    labels: torch.Tensor,
    instance_ids: torch.Tensor,
    *,
    gather: bool = False,
    autocast: contextlib.AbstractContextManager | None = None,
    channels_last: bool = False,
    mixup: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> ObjectiveOutput:
    """The objective of one batch of multi-view images.

    Args:
        model: maps ``(R, 3, H, W)`` to ``(logits (R, C), embeddings (R, d))``
            (a :class:`FinetuneNet`, possibly wrapped in DDP or compiled).
        objective: the :class:`~fewshot.losses.Objective`.
        views: ``(b, V, 3, H, W)`` images, ``V`` views each, or ``(b, V, D)`` backbone
            features (a frozen backbone's cache; the model skips its backbone).
        labels: ``(b,)`` int64 labels; repeated for each view.
        instance_ids: ``(b,)`` int64 image ids; repeated for each view (SimCLR's positives).
        gather: all-gather embeddings, labels and ids over processes, so the contrastive
            term sees the global batch (gradient returned to each process's rows, see
            :mod:`fewshot.training.distributed`); cross-entropy stays local.
        autocast: context for the forward pass (bf16 autocast on CUDA); the loss itself is
            computed in float32.
        channels_last: feed the images in channels-last memory format.
        mixup: ``mixup(x, y) -> (mixed x, soft targets (R, C))`` (a ``timm.data.Mixup``). The
            cross-entropy term is computed on the mixed rows against the soft targets; the
            contrastive term on the un-mixed rows. Both go through the model in one forward
            pass (``2R`` rows), so BatchNorm statistics see clean and mixed images.

    Returns:
        :class:`~fewshot.losses.ObjectiveOutput` ``(total, ce, contrastive)``; ``total`` is
        this process's loss (its CE, and the global contrastive term).
    """
    b, v = views.shape[:2]
    x = views.flatten(0, 1)
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    y = labels.repeat_interleave(v)
    ids = instance_ids.repeat_interleave(v)
    soft = None
    if mixup is not None:
        mixed, soft = mixup(x.clone(), y)  # timm mixes in place
        x = torch.cat([x, mixed])
    with autocast if autocast is not None else contextlib.nullcontext():
        logits, embeddings = model(x)
    logits, embeddings = logits.float(), embeddings.float()
    if soft is not None:
        rows = y.shape[0]
        logits, embeddings = logits[rows:], embeddings[:rows]
    if gather and objective.uses_contrastive:
        return objective(
            logits,
            all_gather_with_grad(embeddings),
            y,
            ids,
            embedding_labels=all_gather(y),
            embedding_instance_ids=all_gather(ids),
            ce_targets=soft,
        )
    return objective(logits, embeddings, y, ids, ce_targets=soft)


#: timm optimizer names built with torch's fused kernels (torch >= 2.4 has them on the CPU).
FUSED_OPTIMIZERS: frozenset[str] = frozenset({"adamw", "adam", "sgd"})


def make_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    *,
    opt: str = "adamw",
    layer_decay: float | None = None,
) -> torch.optim.Optimizer:
    """timm's ``create_optimizer_v2(model, opt, lr, weight_decay, layer_decay)``.

    Parameter groups are timm's: no weight decay for 1-D parameters (biases, norms), ``.bias``
    and the model's ``no_weight_decay()`` names; with ``layer_decay`` one group per layer of the
    model's ``group_matcher()`` with ``lr_scale = layer_decay ** (L - 1 - layer)`` (applied by
    timm's scheduler). ``"adamw"``/``"adam"``/``"sgd"`` use torch's fused implementation (one
    kernel per parameter on the CPU and CUDA; the same update as the for-loop one up to float
    rounding; 0.26-0.36x the foreach update's time on the CPU in ``benchmarks/bench_finetune.py``).
    """
    from timm.optim import create_optimizer_v2

    fused = {"fused": True} if opt in FUSED_OPTIMIZERS else {}
    return create_optimizer_v2(model, opt=opt, lr=lr, weight_decay=weight_decay, layer_decay=layer_decay, **fused)


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int,
    kind: str,
    *,
    warmup_lr: float = 1e-6,
    min_lr: float = 0.0,
) -> Any:
    """timm's per-step schedule (``create_scheduler_v2``), stepped with ``step_update(steps_done)``.

    ``warmup_steps`` steps of linear warm-up from ``warmup_lr`` to the peak, then ``"cosine"``
    from the peak to ``min_lr`` over the remaining ``total_steps - warmup_steps`` steps (timm's
    ``warmup_prefix``), or ``"constant"``. The lr of step ``t`` (0-based) is set after step
    ``t - 1``; without warm-up step ``t`` gets ``min_lr + (lr - min_lr) (1 + cos(pi t / T)) / 2``.
    """
    from timm.scheduler import create_scheduler_v2

    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=kind,
        num_epochs=total_steps - warmup_steps,
        warmup_epochs=warmup_steps,
        warmup_lr=warmup_lr,
        min_lr=min_lr,
        warmup_prefix=True,
        step_on_epochs=False,
        updates_per_epoch=1,
    )
    return scheduler


def make_mixup(
    num_classes: int,
    *,
    mixup: float = 0.0,
    cutmix: float = 0.0,
    prob: float = 1.0,
    switch_prob: float = 0.5,
    smoothing: float = 0.0,
) -> Any | None:
    """A ``timm.data.Mixup`` (batch mode) or None when both alphas are 0."""
    if not (mixup or cutmix):
        return None
    from timm.data import Mixup

    return Mixup(
        mixup_alpha=mixup,
        cutmix_alpha=cutmix,
        prob=prob,
        switch_prob=switch_prob,
        mode="batch",
        label_smoothing=smoothing,
        num_classes=num_classes,
    )


@contextlib.contextmanager
def _numpy_seeded(seed: int) -> Iterator[None]:
    """timm's Mixup draws from numpy's global RNG: seed it for the block, then restore it."""
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        np.random.set_state(state)


class Trainer:
    """Runs training epochs and validation passes for one process.

    Args:
        net: the :class:`FinetuneNet` (already on ``ctx.device``); checkpoints read it.
        objective: the objective.
        ctx: this process's :class:`~fewshot.training.distributed.DistContext`.
        train_loader: yields ``(views, labels, ids)`` batches from a
            :class:`~fewshot.training.sampling.TrainBatchSampler` (``loader.batch_sampler``).
        val_loader: the same from a :class:`~fewshot.training.sampling.ValBatchSampler`, or None.
        lr, weight_decay, total_steps, warmup_steps, scheduler: the optimiser and schedule.
        opt, layer_decay: see :func:`make_optimizer`; warmup_lr, min_lr: see
            :func:`make_scheduler`.
        mixup: a ``timm.data.Mixup`` for the CE term (see :func:`compute_loss`), or None; its
            numpy draws are seeded from ``(seed, epoch, step)``, the same on every process.
        ema_decay: > 0 keeps timm's ``ModelEmaV3`` of the net, updated after every step;
            :meth:`validate` then evaluates the EMA weights (:attr:`eval_net`).
        seed: seeds torch's RNGs before every step from ``(seed, epoch, step, rank)``.
        compile: wrap the model in ``torch.compile``.
        sync_batchnorm: convert BatchNorm to SyncBatchNorm when running on several CUDA
            processes.
        channels_last: weights and inputs in channels-last memory format; None:
            :func:`use_channels_last` of the backbone and device.
        bf16: bfloat16 autocast of the forward pass (the loss stays float32); None: on CUDA,
            off on the CPU, where it is an opt-in for CPUs with bf16 units (AMX, AVX512-BF16):
            faster there, but its numerics are bf16's, not float32's.
        normalize: ``(mean, std)`` of the backbone's preprocessing: uint8 views from the
            loaders are converted and normalised on the device (:func:`normalize_views`);
            None: the loaders must yield float inputs.
    """

    def __init__(
        self,
        net: FinetuneNet,
        objective: Objective,
        ctx: DistContext,
        train_loader: torch.utils.data.DataLoader,
        val_loader: torch.utils.data.DataLoader | None,
        *,
        lr: float,
        weight_decay: float,
        total_steps: int,
        warmup_steps: int,
        scheduler: str,
        seed: int,
        opt: str = "adamw",
        layer_decay: float | None = None,
        warmup_lr: float = 1e-6,
        min_lr: float = 0.0,
        mixup: Any | None = None,
        ema_decay: float = 0.0,
        compile: bool = False,
        sync_batchnorm: bool = True,
        channels_last: bool | None = None,
        normalize: tuple[Sequence[float], Sequence[float]] | None = None,
        bf16: bool | None = None,
    ) -> None:
        self.ctx = ctx
        self.objective = objective
        self.train_loader, self.val_loader = train_loader, val_loader
        self.seed = int(seed)
        cuda = ctx.device.type == "cuda"
        self.channels_last = (
            use_channels_last(net.backbone, ctx.device) if channels_last is None else bool(channels_last)
        )
        self.bf16 = cuda if bf16 is None else bool(bf16)
        dev_type = ctx.device.type
        self.autocast = (
            (lambda: torch.autocast(dev_type, dtype=torch.bfloat16)) if self.bf16 else contextlib.nullcontext
        )
        self.mean = self.std = None
        if normalize is not None:
            mean, std = normalize
            self.mean = torch.tensor(mean, dtype=torch.float32, device=ctx.device).view(-1, 1, 1)
            self.std = torch.tensor(std, dtype=torch.float32, device=ctx.device).view(-1, 1, 1)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        if ctx.distributed and cuda and sync_batchnorm:
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        self.net = net
        model: nn.Module = net
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(
                net,
                device_ids=[ctx.device.index] if cuda else None,
                # with lam == 1 cross-entropy is logged, not optimised: the classifier gets no gradient
                find_unused_parameters=objective.uses_contrastive and objective.lam == 1.0,
            )
        if compile:
            model = torch.compile(model)
        self.model = model
        self.optimizer = make_optimizer(net, lr, weight_decay, opt=opt, layer_decay=layer_decay)
        self.scheduler = make_scheduler(
            self.optimizer, total_steps, warmup_steps, scheduler, warmup_lr=warmup_lr, min_lr=min_lr
        )
        self.mixup = mixup
        self.ema = None
        if ema_decay > 0:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(net, decay=ema_decay)
        #: the weights validated and saved to ``best/``: the EMA's when there is one
        self.eval_net: FinetuneNet = self.ema.module if self.ema is not None else net
        # running sums of the epoch in progress: total, ce, contrastive (float64, on device)
        self.sums = torch.zeros(3, dtype=torch.float64, device=ctx.device)
        #: learning rate of the latest optimiser step
        self.lr_last = self.lr

    @property
    def lr(self) -> float:
        """The current peak learning rate (the largest over parameter groups: the heads' with layer decay)."""
        return max(float(g["lr"]) for g in self.optimizer.param_groups)

    def train_epoch(
        self,
        epoch: int,
        start_step: int = 0,
        *,
        on_step: Callable[[int, int], None] | None = None,
        progress: bool = True,
        desc: str = "",
    ) -> dict[str, float]:
        """Train one epoch from ``start_step`` on.

        ``on_step(epoch, steps_done_in_epoch)`` is called after every optimiser step (for
        mid-epoch checkpoints). :attr:`sums` must hold the sums of the steps before
        ``start_step`` (zeros at the start of an epoch).

        Returns:
            ``{"total", "ce", "contrastive"}`` epoch means over all steps and processes,
            ``"steps"``, ``"images"`` (global images trained on in this call) and
            ``"seconds"``.

        Raises:
            FloatingPointError: the loss became NaN or infinite.
        """
        from tqdm.auto import tqdm

        sampler = self.train_loader.batch_sampler
        sampler.set_epoch(epoch, start_step)
        steps = sampler.steps_per_epoch
        self.net.train()
        dev = self.ctx.device
        t0 = time.perf_counter()
        done = start_step
        bar = tqdm(
            total=steps,
            initial=start_step,
            desc=desc,
            unit="step",
            leave=False,
            disable=not (progress and self.ctx.is_main),
            dynamic_ncols=True,
        )
        with bar, reuse_freed_memory_on(dev):
            for views, labels, ids in self.train_loader:
                views = normalize_views(views.to(dev, non_blocking=True), self.mean, self.std)
                labels = labels.to(dev, non_blocking=True)
                ids = ids.to(dev, non_blocking=True)
                torch.manual_seed(step_seed(self.seed, epoch, done, self.ctx.rank))
                mixing = (
                    contextlib.nullcontext()
                    if self.mixup is None
                    else _numpy_seeded(step_seed(self.seed, epoch, done, 0))
                )
                with mixing:
                    out = compute_loss(
                        self.model,
                        self.objective,
                        views,
                        labels,
                        ids,
                        gather=self.ctx.distributed,
                        autocast=self.autocast(),
                        channels_last=self.channels_last,
                        mixup=self.mixup,
                    )
                self.optimizer.zero_grad(set_to_none=True)
                out.total.backward()
                self.lr_last = self.lr
                self.optimizer.step()
                updates = epoch * steps + done + 1
                self.scheduler.step_update(num_updates=updates)
                if self.ema is not None:
                    self.ema.update(self.net, step=updates)
                self.sums += torch.stack([out.total.detach(), out.ce.detach(), out.contrastive.detach()]).double()
                done += 1
                bar.update(1)
                if bar.disable is False and (done % 10 == 0 or done == steps):
                    bar.set_postfix(loss=f"{self.sums[0].item() / done:.4f}", refresh=False)
                if on_step is not None:
                    on_step(epoch, done)
        seconds = time.perf_counter() - t0
        sums = all_reduce_sum(self.sums.clone()) / self.ctx.world_size
        total, ce, con = (float(v) / max(1, steps) for v in sums.tolist())
        if not math.isfinite(total):
            raise FloatingPointError(
                f"the training loss is {total} in epoch {epoch + 1}; lower lr (now {self.lr:g}) or check the data"
            )
        return {
            "total": total,
            "ce": ce,
            "contrastive": con,
            "steps": steps - start_step,
            "images": (steps - start_step) * sampler.batch_size,
            "seconds": seconds,
        }

    @torch.no_grad()
    def validate(self) -> dict[str, float] | None:
        """The objective on the held-out images (model in eval mode, fixed views).

        Each global validation batch is gathered on every process (logits too), so the value
        is that of one process holding the whole batch, whatever the number of processes.

        Returns:
            ``{"val_loss", "val_ce", "val_contrastive", "val_acc"}``: image-weighted means over
            the batches (``val_acc``: top-1 of the classifier over all views), or None
            without validation images.
        """
        if self.val_loader is None:
            return None
        net, dev = self.eval_net, self.ctx.device
        n_classes = int(net.classifier.num_classes)
        was_training = net.training
        net.eval()
        # total, ce, contrastive (each x images), correct rows, images, rows
        sums = torch.zeros(6, dtype=torch.float64, device=dev)
        with reuse_freed_memory_on(dev):
            try:
                for batch in self.val_loader:
                    if batch is None:
                        logits = torch.zeros(0, n_classes, device=dev)
                        z = torch.zeros(0, net.embed_dim, device=dev)
                        y = ids = torch.zeros(0, dtype=torch.int64, device=dev)
                        views = 2
                    else:
                        views_t, labels, instance_ids = (t.to(dev, non_blocking=True) for t in batch)
                        views_t = normalize_views(views_t, self.mean, self.std)
                        views = views_t.shape[1]
                        x = views_t.flatten(0, 1)
                        if self.channels_last and x.ndim == 4:
                            x = x.contiguous(memory_format=torch.channels_last)
                        with self.autocast():
                            logits, z = net(x)
                        logits, z = logits.float(), z.float()
                        y, ids = labels.repeat_interleave(views), instance_ids.repeat_interleave(views)
                    if self.ctx.distributed:
                        logits, z, y, ids = (all_gather_varlen(t) for t in (logits, z, y, ids))
                    images = y.shape[0] / views
                    out = self.objective(logits, z, y, ids)
                    correct = (logits.argmax(dim=1) == y).sum()
                    sums += torch.stack(
                        [
                            out.total.double() * images,
                            out.ce.double() * images,
                            out.contrastive.double() * images,
                            correct.double(),
                            torch.tensor(float(images), dtype=torch.float64, device=dev),
                            torch.tensor(float(y.shape[0]), dtype=torch.float64, device=dev),
                        ]
                    )
            finally:
                net.train(was_training)
        total, ce, con, correct, images, rows = sums.tolist()
        return {
            "val_loss": total / images,
            "val_ce": ce / images,
            "val_contrastive": con / images,
            "val_acc": correct / rows,
        }
