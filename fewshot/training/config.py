"""The settings of one fine-tuning run: :class:`FinetuneConfig`, read from TOML and checked up front.

The defaults follow what the SCHaNe / CLCE papers state where they state it (lr ``1e-4``, weight
decay ``0.05``, dropout ``0.1``, a global batch of ``1024`` images, ``100`` epochs, early
stopping after ``10`` epochs without a lower validation loss, AutoAugment) and are our choices
elsewhere (AdamW where the papers say "Adam", a per-step cosine schedule, the flip, the
AutoAugment policy, the 10 % hold-out, where dropout sits); the README tables which is which,
and ``configs/papers.toml`` / ``configs/beit3-base.toml`` hold the two recipes as files.

The optimiser, its parameter groups (no weight decay on 1-D parameters and on the model's
``no_weight_decay()``; layer-wise lr decay), the warm-up + cosine schedule, Mixup/CutMix and
the model EMA are timm's (``timm.optim.create_optimizer_v2``, ``timm.scheduler``,
``timm.data.Mixup``, ``timm.utils.ModelEmaV3``).

A config file is TOML (``tomllib``): the keys of :class:`FinetuneConfig` at the top level or in
a ``[finetune]`` table, ``-`` and ``_`` interchangeable. YAML (``.yaml``/``.yml``) is read only
when PyYAML is installed; it is not a dependency of fewshot.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fewshot._validate import check_int, check_real
from fewshot.runs import check_run_name, seed_run_name

__all__ = ["FinetuneConfig", "load_config", "config_diff", "RESUME_FREE_KEYS", "SCHEDULERS", "OPTIMIZERS"]

#: Learning-rate schedules: ``"cosine"`` decays from ``lr`` to 0 over all steps of ``epochs``
#: epochs (after an optional linear warm-up); ``"constant"`` keeps ``lr`` (after the warm-up).
SCHEDULERS: tuple[str, ...] = ("cosine", "constant")

#: Optimisers (timm's ``create_optimizer_v2`` names): ``"adamw"`` (decoupled weight decay),
#: ``"adam"`` (L2 weight decay, added to the gradient), ``"sgd"`` (Nesterov momentum 0.9, timm's
#: default), ``"lamb"``.
OPTIMIZERS: tuple[str, ...] = ("adamw", "adam", "sgd", "lamb")

#: Settings that may change when a run is resumed: they decide where and how fast the run
#: goes, not what it computes.
RESUME_FREE_KEYS: frozenset[str] = frozenset(
    {"out", "save_every_steps", "num_workers", "device", "compile", "threads", "progress", "channels_last", "bf16"}
)

_REQUIRED = ("backbone", "dataset", "out")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Everything that defines a fine-tuning run (see :func:`fewshot.training.finetune`).

    Model and data:
        backbone: timm model name (``timm.list_models()``, plus ``conv4``, ``resnet12``, ...).
        dataset: benchmark name (``fewshot data``); its ``split`` holds the base classes.
        out: the run directory (``best/``, ``last/``, ``log.jsonl``, ``manifest.json``).
        pretrained: None (random init), ``"hub"`` (timm's weights, needs internet) or a
            ``.safetensors``/``.pth`` state dict.
        backbone_kwargs: further ``timm.create_model`` arguments (e.g. ``{"width": 32}``).
        data_root: directory of the dataset files (not needed for ``digits``).
        split: the split with the base classes (``"train"``).
        img_size: input size ``N`` (N×N) instead of the backbone's default.

    Objective:
        objective: ``"ce"``, ``"schane"``, ``"supcon"``, ``"supcon-in"``, ``"simclr"`` or ``"hscl"``
            (:data:`fewshot.losses.OBJECTIVES`).
        lam: weight of the contrastive term, ``(1 - lam) CE + lam contrastive``, in [0, 1] (0.9).
        temperature: ``tau > 0`` of the contrastive term (0.5).
        objective_options: further options of the contrastive loss (``beta`` for hscl,
            ``detach_weights``).
        projection_dim: 0 (default): the contrastive term sees the backbone's pooled
            embedding, as in the papers; ``> 0``: it sees a 2-layer MLP projection of that
            size (:class:`fewshot.heads.ProjectionHead`), saved as head ``"projection"``.
        freeze_backbone: train with the backbone frozen (eval mode, no gradients; its
            BatchNorm statistics stay as loaded); only the neck, the classifier (and a
            projection) learn. Needs ``neck_dims``. With ``augment="none"``, ``hflip=0`` and
            no ``crop_scale`` the images have one fixed view, so the backbone's features of
            the training images come from the feature cache
            (:func:`fewshot.features.extract_cached`, ``$FEWSHOT_CACHE_DIR``) and an epoch
            never runs the backbone; otherwise the backbone runs on every view.
        neck_dims: sizes of a trainable MLP neck on the backbone's pooled features
            (:class:`fewshot.heads.NeckHead`: linear layers with ReLU between, none after
            the last); its output is the embedding: the classifier, the contrastive term and
            ``fewshot extract --checkpoint`` (saved as head ``"neck"``) all see it. Empty
            (default): no neck.

    Optimisation:
        epochs: maximum number of epochs (100).
        batch_size: **global** images per optimiser step, over all processes (1024); each
            image gives two views, so the contrastive term sees ``2 * batch_size`` rows.
        optimizer: ``"adamw"`` (default), ``"adam"``, ``"sgd"`` or ``"lamb"``
            (:data:`OPTIMIZERS`), from ``timm.optim.create_optimizer_v2``.
        lr: peak learning rate (1e-4).
        weight_decay: weight decay (0.05; decoupled for AdamW), not applied to 1-D parameters
            (biases, normalisation weights) nor to the backbone's ``no_weight_decay()`` set
            (ViT ``cls_token``, ``pos_embed``, ...).
        layer_decay: layer-wise lr decay (BEiT): parameter group ``g`` of ``L`` (timm's
            ``group_matcher``; heads in the last) gets ``lr * layer_decay ** (L - 1 - g)``;
            None (default): off.
        dropout: dropout before the linear classifier (0.1); the contrastive embedding is
            not dropped out.
        drop_path: stochastic depth rate of the backbone (timm's ``drop_path_rate``; 0).
        scheduler: ``"cosine"`` (default; per step, from ``lr`` to ``min_lr`` over the epochs
            after the warm-up) or ``"constant"``; timm's schedulers.
        warmup_epochs: epochs of linear warm-up, from ``warmup_lr`` to ``lr`` (0), inside
            ``epochs``.
        warmup_lr: learning rate at the start of the warm-up (1e-6, as BEiT-3).
        min_lr: learning rate the cosine schedule ends at (0).
        patience: stop after this many epochs without a lower validation loss (10); 0
            never stops early.
        val_fraction: fraction of every base class's images held out for validation (0.1,
            seeded and stratified; at least one image per class). 0: no validation, no early
            stopping, ``best/`` is the last epoch.
        seed: seeds the held-out split, the initialisation, the data order, augmentation and
            dropout (0).
        run: the training run's name, recorded in its checkpoints and copied into feature
            files and results (:mod:`fewshot.runs`); None (default): ``seed-<seed>``. Runs of
            one objective with distinct names are its training replicates.

    Augmentation (two views per image, :func:`fewshot.transforms.train_transform`):
        augment: AutoAugment policy, ``"imagenet"``, ``"cifar10"`` or ``"svhn"``; ``"none"``:
            no AutoAugment (the framing, the flip and a ``crop_scale`` crop still apply).
        hflip: probability of a horizontal flip (0.5).
        crop_scale: area range ``[lo, hi]`` of a random resized crop, or None (default) to
            frame the image as extraction does (timm's resize + centre crop at ``crop_pct``).
        crop_pct: centre-crop fraction of the training *and* extraction framing instead of
            the backbone's ``pretrained_cfg`` value (1.0: the whole image); recorded in the
            checkpoint's preprocessing, which ``fewshot extract --checkpoint`` reuses.
        mixup, cutmix: Mixup / CutMix alpha (``timm.data.Mixup``, batch mode; 0: off). They
            mix the images of the **cross-entropy** term only (soft targets); the contrastive
            term sees the un-mixed views, computed in the same forward pass (the batch is fed
            twice, clean and mixed, so a step costs about twice as much).
        mixup_prob: probability of mixing a batch (1.0).
        mixup_switch_prob: probability of CutMix instead of Mixup when both are on (0.5).
        smoothing: label smoothing of the mixed targets (0; needs mixup or cutmix).
        ema_decay: decay of timm's model EMA (``ModelEmaV3``); 0 (default): off. With EMA the
            validation loss, early stopping and ``best/`` use the EMA weights; ``last/`` holds
            the trained weights and the EMA state.

    Execution (may change on resume, see :data:`RESUME_FREE_KEYS`):
        save_every_steps: also write ``last/`` every this many steps inside an epoch (0: at
            the end of each epoch only).
        num_workers: ``DataLoader`` workers per process; None: the cores this process may
            run on (``os.sched_getaffinity``) divided among the processes of the node, less
            one for the training process itself (at least 0), on the CPU and on CUDA alike
            (:func:`fewshot.training.distributed.default_num_workers`). Workers emit uint8
            views; they become float and are normalised on the device.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``; None: CUDA when available. Under
            ``torchrun`` each process takes ``cuda:LOCAL_RANK``.
        compile: ``torch.compile`` the model.
        channels_last: feed the model (and keep its weights) in channels-last memory
            format; None (default): on CUDA always, on the CPU for the backbone families
            measured to train faster that way (:func:`fewshot.training.loop.use_channels_last`).
            The loss equals the contiguous path's within float tolerance, not bitwise.
        bf16: bfloat16 autocast of the forward pass (the loss is computed in float32); None
            (default): on CUDA, off on the CPU. ``True`` on the CPU is worth it only on CPUs with
            bf16 units (AMX, AVX512-BF16: 1.6x the Conv-4 and 2.2x the ResNet-12 step measured
            here, with channels-last); results then differ from float32 beyond rounding.
        threads: CPU threads per process; None: torch's default, divided among the
            processes of a node.
        progress: show tqdm bars.
        sync_batchnorm: with several CUDA processes, use ``SyncBatchNorm`` so that batch
            statistics are global too (ignored on the CPU, where torch has no SyncBatchNorm).
    """

    backbone: str
    dataset: str
    out: str
    pretrained: str | None = None
    backbone_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    data_root: str | None = None
    split: str = "train"
    img_size: int | None = None
    objective: str = "schane"
    lam: float = 0.9
    temperature: float = 0.5
    objective_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    projection_dim: int = 0
    freeze_backbone: bool = dataclasses.field(
        default=False,
        metadata={"help": "backbone frozen (eval mode, no gradients); train the neck and heads (needs --neck-dims)"},
    )
    neck_dims: tuple[int, ...] = dataclasses.field(
        default=(),
        metadata={
            "help": "MLP neck sizes on the backbone features, e.g. 1024 512; its output is the embedding (default: none)",
            "type": int,
            "nargs": "+",
            "metavar": "D",
        },
    )
    epochs: int = 100
    batch_size: int = 1024
    optimizer: str = dataclasses.field(default="adamw", metadata={"help": "adamw (default), adam, sgd or lamb (timm)"})
    lr: float = 1e-4
    weight_decay: float = 0.05
    layer_decay: float | None = dataclasses.field(
        default=None, metadata={"help": "layer-wise lr decay in (0, 1] (BEiT: 0.65); default off"}
    )
    dropout: float = 0.1
    drop_path: float = dataclasses.field(
        default=0.0, metadata={"help": "backbone stochastic depth rate (timm drop_path_rate)"}
    )
    scheduler: str = "cosine"
    warmup_epochs: int = 0
    warmup_lr: float = dataclasses.field(
        default=1e-6, metadata={"help": "lr at the start of the warm-up (default 1e-6)"}
    )
    min_lr: float = dataclasses.field(
        default=0.0, metadata={"help": "lr at the end of the cosine schedule (default 0)"}
    )
    patience: int = 10
    val_fraction: float = 0.1
    seed: int = 0
    run: str | None = None
    augment: str = "imagenet"
    hflip: float = 0.5
    crop_scale: tuple[float, float] | None = None
    crop_pct: float | None = dataclasses.field(
        default=None,
        metadata={"help": "centre-crop fraction of training and extraction framing (default: the backbone's)"},
    )
    mixup: float = dataclasses.field(
        default=0.0, metadata={"help": "Mixup alpha on the CE term (timm; default 0: off)"}
    )
    cutmix: float = dataclasses.field(
        default=0.0, metadata={"help": "CutMix alpha on the CE term (timm; default 0: off)"}
    )
    mixup_prob: float = dataclasses.field(default=1.0, metadata={"help": "probability of mixing a batch (default 1)"})
    mixup_switch_prob: float = dataclasses.field(
        default=0.5, metadata={"help": "probability of CutMix instead of Mixup when both are on (default 0.5)"}
    )
    smoothing: float = dataclasses.field(
        default=0.0, metadata={"help": "label smoothing of the mixed targets (default 0)"}
    )
    ema_decay: float = dataclasses.field(
        default=0.0, metadata={"help": "model EMA decay (timm ModelEmaV3), e.g. 0.9999; default 0: off"}
    )
    save_every_steps: int = 0
    num_workers: int | None = None
    device: str | None = None
    compile: bool = False
    channels_last: bool | None = None
    bf16: bool | None = None
    threads: int | None = None
    progress: bool = True
    sync_batchnorm: bool = True

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(f.name, getattr(self, f.name)))
        self._check_values()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> FinetuneConfig:
        """Build from a mapping of settings (``-`` or ``_`` in keys).

        Raises:
            ValueError: an unknown key (close names suggested), a missing required setting
                (``backbone``, ``dataset``, ``out``) or a bad value.
            TypeError: a value of the wrong type.
        """
        data = _normalise_keys(data, source)
        missing = [k for k in _REQUIRED if data.get(k) is None]
        if missing:
            flags = ", ".join(f"--{k.replace('_', '-')}" for k in missing)
            raise ValueError(
                f"missing required setting(s) {', '.join(missing)} (give {flags} or set them in the config file)"
            )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """JSON/TOML-friendly dict of every setting; ``from_dict`` inverts it."""
        out = dataclasses.asdict(self)
        if out["crop_scale"] is not None:
            out["crop_scale"] = list(out["crop_scale"])
        out["neck_dims"] = list(out["neck_dims"])
        return out

    @property
    def features_cached(self) -> bool:
        """Whether training reads the backbone's features from the feature cache: a frozen
        backbone and one fixed view per image (``augment="none"``, ``hflip=0``, no ``crop_scale``)."""
        return self.freeze_backbone and self.augment == "none" and self.hflip == 0.0 and self.crop_scale is None

    @property
    def run_name(self) -> str:
        """``run``, or ``seed-<seed>`` when it is None."""
        return self.run if self.run is not None else seed_run_name(self.seed)

    def replace(self, **changes: Any) -> FinetuneConfig:
        """A copy with ``changes`` applied (validated like the constructor)."""
        return dataclasses.replace(self, **_normalise_keys(changes, "arguments"))

    # ------------------------------------------------------------------ validation

    def _check_values(self) -> None:
        """Cheap checks that need no import of torch, timm or the data."""
        check_int("epochs", self.epochs)
        if self.batch_size < 2:
            raise ValueError(
                f"batch_size must be >= 2 (the contrastive term needs pairs of images), got {self.batch_size}"
            )
        check_real("lr", self.lr, low=0, closed="neither")
        check_real("weight_decay", self.weight_decay, low=0.0)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(f"layer_decay must be in (0, 1] or None, got {self.layer_decay}")
        if not 0.0 <= self.drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {self.drop_path}")
        check_real("warmup_lr", self.warmup_lr, low=0.0)
        check_real("min_lr", self.min_lr, low=0.0)
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr must be <= lr={self.lr}, got {self.min_lr}")
        if self.crop_pct is not None and not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        check_real("mixup", self.mixup, low=0.0)
        check_real("cutmix", self.cutmix, low=0.0)
        for key in ("mixup_prob", "mixup_switch_prob"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"{key} must be a probability in [0, 1], got {getattr(self, key)}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing}")
        if self.smoothing and not (self.mixup or self.cutmix):
            raise ValueError(f"smoothing={self.smoothing} applies to the Mixup/CutMix targets; set mixup or cutmix > 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if "drop_path_rate" in self.backbone_kwargs:
            raise ValueError("set drop_path instead of backbone_kwargs.drop_path_rate")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {self.lam}")
        check_real("temperature", self.temperature, low=0, closed="neither")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {self.scheduler!r}; expected one of {', '.join(SCHEDULERS)}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs={self.epochs}), got {self.warmup_epochs}")
        check_int("patience", self.patience, low=0)
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        check_int("seed", self.seed, low=0)
        if self.run is not None:
            check_run_name(self.run, "run")
        if not 0.0 <= self.hflip <= 1.0:
            raise ValueError(f"hflip must be a probability in [0, 1], got {self.hflip}")
        if self.crop_scale is not None:
            lo, hi = self.crop_scale
            if not 0.0 < lo <= hi <= 1.0:
                raise ValueError(f"crop_scale must be [lo, hi] with 0 < lo <= hi <= 1, got {list(self.crop_scale)}")
        check_int("projection_dim", self.projection_dim, low=0)
        if any(d < 1 for d in self.neck_dims):
            raise ValueError(f"neck_dims must be positive sizes, got {list(self.neck_dims)}")
        if self.freeze_backbone and not self.neck_dims:
            raise ValueError(
                "freeze_backbone needs neck_dims (a trainable neck); a frozen backbone alone learns no embedding"
            )
        if self.freeze_backbone and self.features_cached and (self.mixup or self.cutmix):
            raise ValueError(
                "mixup/cutmix mix images, but a frozen backbone without augmentation trains on cached "
                "features; set augment, hflip or crop_scale to run the backbone per view"
            )
        check_int("save_every_steps", self.save_every_steps, low=0)
        if self.img_size is not None:
            check_int("img_size", self.img_size)
        if self.num_workers is not None:
            check_int("num_workers", self.num_workers, low=0)
        if self.threads is not None:
            check_int("threads", self.threads)
        for key in ("backbone", "dataset", "out", "split", "augment"):
            if not getattr(self, key):
                raise ValueError(f"{key} must be a non-empty string")
        if "num_classes" in self.backbone_kwargs or "pretrained" in self.backbone_kwargs:
            raise ValueError("backbone_kwargs must not set num_classes or pretrained (use the pretrained setting)")

    def validate(self, *, check_data: bool = True) -> None:
        """Check everything that can be checked before training starts.

        Beyond the constructor's checks: the backbone name is in timm's registry (close names
        suggested), the objective exists and takes ``lam``, ``temperature`` and
        ``objective_options``, the dataset defines ``split`` and its data root exists
        (skipped with ``check_data=False``), the AutoAugment policy exists, and a
        ``pretrained`` path is a readable file.

        Raises:
            ValueError: the first problem found, in one line.
            FileNotFoundError: ``pretrained`` or ``data_root`` does not exist.
            TypeError: an option the objective does not take.
        """
        import timm

        from fewshot.backbones import suggest_models
        from fewshot.data import get_dataset
        from fewshot.losses import create_objective

        arch = self.backbone.split(".", 1)[0]
        if not timm.is_model(arch):
            close = suggest_models(arch)
            hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
            raise ValueError(f"unknown backbone {self.backbone!r}{hint}")
        create_objective(self.objective, lam=self.lam, temperature=self.temperature, **self.objective_options)
        spec = get_dataset(self.dataset) if check_data else None
        if spec is not None and self.split not in spec.splits:
            raise ValueError(f"dataset {self.dataset!r} has no split {self.split!r}; it has {', '.join(spec.splits)}")
        if spec is not None and spec.needs_root:
            if self.data_root is None:
                raise ValueError(f"dataset {self.dataset!r} needs data_root (--data-root DIR)")
            if not Path(self.data_root).is_dir():
                raise FileNotFoundError(f"data root not found: {self.data_root}")
        policies = ("imagenet", "cifar10", "svhn", "none")
        if self.augment not in policies:
            raise ValueError(f"unknown AutoAugment policy {self.augment!r}; expected one of {', '.join(policies)}")
        if self.pretrained not in (None, "hub"):
            path = Path(self.pretrained)
            if not path.is_file():
                raise FileNotFoundError(f"pretrained weights file not found: {path}")
            if not os.access(path, os.R_OK):
                raise ValueError(f"pretrained weights file is not readable: {path}")


# ---------------------------------------------------------------------------- files


def load_config(path: str | os.PathLike | None = None, **overrides: Any) -> FinetuneConfig:
    """A :class:`FinetuneConfig` from a TOML (or YAML) file, with ``overrides`` applied on top.

    Args:
        path: a ``.toml`` file (or ``.yaml``/``.yml`` when PyYAML is installed); None reads
            the settings from ``overrides`` alone.
        **overrides: settings that take precedence over the file (e.g. command-line flags).

    Raises:
        FileNotFoundError: no such file.
        ValueError: unparsable file, unknown keys, missing required settings, bad values.
    """
    data: dict[str, Any] = {}
    source = "arguments"
    if path is not None:
        data = read_config_file(path)
        source = str(path)
    data = {**_normalise_keys(data, source), **_normalise_keys(overrides, "arguments")}
    return FinetuneConfig.from_dict(data, source=source)


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The settings in a TOML/YAML config file, as a dict (keys not yet checked).

    Raises:
        FileNotFoundError: no such file.
        ValueError: unparsable file, a top level that is not a table, or YAML without PyYAML.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError(
                f"reading {path.name} needs PyYAML, which is not a dependency of fewshot; "
                f"install it (pip install pyyaml) or write the config as TOML"
            ) from None
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ValueError(f"cannot parse {path}: {str(exc).splitlines()[0]}") from None
    else:
        import tomllib

        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot parse {path} as TOML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a table of settings at the top level, got {type(data).__name__}")
    if set(data) == {"finetune"} and isinstance(data["finetune"], dict):
        data = data["finetune"]
    return data


def config_diff(a: Mapping[str, Any], b: Mapping[str, Any], *, ignore: frozenset[str] = RESUME_FREE_KEYS) -> list[str]:
    """The keys whose values differ between two config dicts (``to_dict()`` form), sorted."""
    keys = (set(a) | set(b)) - set(ignore)

    def value(d: Mapping[str, Any], k: str) -> Any:
        if k in d or k not in _FIELDS:
            return _jsonish(d.get(k))
        f = _FIELDS[k]  # a setting added after the run was written: its default
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        return _jsonish(None if default is dataclasses.MISSING else default)

    return sorted(k for k in keys if value(a, k) != value(b, k))


# ---------------------------------------------------------------------------- helpers

_FIELDS = {f.name: f for f in dataclasses.fields(FinetuneConfig)}
_INT = {"epochs", "batch_size", "warmup_epochs", "patience", "seed", "projection_dim", "save_every_steps"}
_OPT_INT = {"img_size", "num_workers", "threads"}
_FLOAT = {
    "lam",
    "temperature",
    "lr",
    "weight_decay",
    "dropout",
    "val_fraction",
    "hflip",
    "drop_path",
    "warmup_lr",
    "min_lr",
    "mixup",
    "cutmix",
    "mixup_prob",
    "mixup_switch_prob",
    "smoothing",
    "ema_decay",
}
_OPT_FLOAT = {"layer_decay", "crop_pct"}
_STR = {"backbone", "dataset", "out", "split", "objective", "scheduler", "augment", "optimizer"}
_OPT_STR = {"pretrained", "data_root", "device", "run"}
_BOOL = {"compile", "progress", "sync_batchnorm", "freeze_backbone"}
_OPT_BOOL = {"channels_last", "bf16"}
_DICT = {"backbone_kwargs", "objective_options"}


def _jsonish(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonish(v) for v in value]
    if isinstance(value, list):
        return [_jsonish(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonish(v) for k, v in sorted(value.items())}
    return value


def _normalise_keys(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in dict(data).items():
        name = str(key).replace("-", "_")
        if name not in _FIELDS:
            close = difflib.get_close_matches(name, list(_FIELDS), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(_FIELDS)}"
            raise ValueError(f"unknown setting {key!r} in {source}{hint}")
        out[name] = value
    return out


def _type_error(name: str, expected: str, value: Any) -> TypeError:
    return TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")


def _coerce(name: str, value: Any) -> Any:
    if name in _OPT_INT or name in _OPT_STR or name in _OPT_FLOAT or name in _OPT_BOOL or name in ("crop_scale",):
        if value is None:
            return None
    if name in _INT or name in _OPT_INT:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise _type_error(name, "an integer", value)
        return int(value)
    if name in _FLOAT or name in _OPT_FLOAT:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _type_error(name, "a finite number", value)
        return float(value)
    if name in _STR or name in _OPT_STR:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise _type_error(name, "a string", value)
        return value
    if name in _BOOL or name in _OPT_BOOL:
        if not isinstance(value, bool):
            raise _type_error(name, "true or false", value)
        return value
    if name in _DICT:
        if value is None:
            return {}
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise _type_error(name, "a table of settings", value)
        return dict(value)
    if name == "neck_dims":
        if value is None:
            return ()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and int(v) == v for v in value
        ):
            raise _type_error(name, "a list of integers", value)
        return tuple(int(v) for v in value)
    if name == "crop_scale":
        if (
            not isinstance(value, (list, tuple))
            or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            raise _type_error(name, "[lo, hi] or None", value)
        return (float(value[0]), float(value[1]))
    raise AssertionError(f"unhandled config field {name}")  # pragma: no cover - programming error
