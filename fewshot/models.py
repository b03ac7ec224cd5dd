"""Backbones, their preprocessing, and the heads used for fine-tuning.

A *backbone* is any timm model created with ``num_classes=0``: ``backbone(x)`` maps a
normalised ``(B, 3, H, W)`` float batch to timm's pooled pre-logits features
``(B, backbone.num_features)``. :func:`create_backbone` builds one from timm's registry
(which also holds this package's ``conv4``, ``resnet12``, ``resnet12_narrow`` and
``resnet12_fsl``, see :mod:`fewshot.backbones`) and optionally loads weights from the hub or a
local file (through :func:`fewshot.weights.load_weights`, which converts published layouts).

The input pipeline comes from the backbone itself: :func:`resolve_preprocessing` reads timm's
data config (input size, interpolation, crop, mean/std) into a JSON-serialisable
:class:`Preprocessing`, which a checkpoint records so that feature extraction reproduces it.
:func:`eval_transform` and :func:`train_transform` turn it into torchvision transforms.

Heads (:class:`ClassificationHead`, :class:`ProjectionHead`) are separate modules, so a
checkpoint's backbone loads without them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import os
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
from torch import nn

from fewshot import backbones as _backbones  # noqa: F401  (registers conv4, resnet12, ...)
from fewshot.weights import WEIGHT_SUFFIXES, LoadReport, load_weights, read_state_dict

__all__ = [
    "Preprocessing",
    "resolve_preprocessing",
    "eval_transform",
    "frame_transform",
    "train_transform",
    "MultiView",
    "create_backbone",
    "load_weights",
    "read_state_dict",
    "LoadReport",
    "suggest_models",
    "state_dict_sha256",
    "ClassificationHead",
    "ProjectionHead",
    "NeckHead",
    "NeckedBackbone",
    "HEADS",
    "head_from_config",
    "WEIGHT_SUFFIXES",
]


_OFFLINE_VALUES = {"1", "true", "yes", "on"}


# --------------------------------------------------------------------------- preprocessing


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How images are turned into a backbone's input (timm's eval data config).

    Attributes:
        input_size: ``(channels, height, width)`` the backbone is fed.
        interpolation: resize interpolation (``"bilinear"``, ``"bicubic"``, ...).
        mean: per-channel normalisation mean (on [0, 1] pixel values).
        std: per-channel normalisation standard deviation.
        crop_pct: the image is resized to ``input_size / crop_pct`` and centre-cropped to
            ``input_size`` (1.0: resized straight to the input size, nothing cropped).
        crop_mode: timm's crop mode (``"center"``, ``"squash"`` or ``"border"``).

    Images of any size go through the same pipeline, so 8×8 digits or 32×32 CIFAR images
    are resized up to the input size; override ``input_size`` to run at another size.
    """

    input_size: tuple[int, int, int]
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float = 1.0
    crop_mode: str = "center"

    def __post_init__(self) -> None:
        size = tuple(int(v) for v in self.input_size)
        if len(size) != 3 or min(size) < 1:
            raise ValueError(f"input_size must be (channels, height, width), got {self.input_size}")
        mean = tuple(float(v) for v in self.mean)
        std = tuple(float(v) for v in self.std)
        if len(mean) != size[0] or len(std) != size[0]:
            raise ValueError(
                f"mean and std need {size[0]} values for input_size {size}, "
                f"got mean={mean}, std={std}"
            )
        if min(std) <= 0:
            raise ValueError(f"std must be positive, got {std}")
        if not 0 < float(self.crop_pct) <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        object.__setattr__(self, "input_size", size)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "crop_pct", float(self.crop_pct))
        object.__setattr__(self, "interpolation", str(self.interpolation))
        object.__setattr__(self, "crop_mode", str(self.crop_mode))

    @property
    def img_size(self) -> tuple[int, int]:
        """``(height, width)`` of the backbone's input."""
        return self.input_size[1], self.input_size[2]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; :meth:`from_dict` inverts it exactly."""
        return {
            "input_size": list(self.input_size),
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
            "crop_pct": self.crop_pct,
            "crop_mode": self.crop_mode,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` on missing or unknown keys."""
        fields = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        unknown = set(data) - fields
        missing = required - set(data)
        if unknown or missing:
            raise ValueError(
                f"preprocessing needs keys {sorted(required)} (optional: "
                f"{sorted(fields - required)}); missing {sorted(missing)}, unknown {sorted(unknown)}"
            )
        return cls(**dict(data))


def resolve_preprocessing(
    model: nn.Module,
    *,
    img_size: int | Sequence[int] | None = None,
    crop_pct: float | None = None,
    interpolation: str | None = None,
    use_test_size: bool = False,
) -> Preprocessing:
    """The backbone's preprocessing, from ``timm.data.resolve_data_config``.

    Args:
        model: a timm model (its ``pretrained_cfg`` is read; other modules get timm's defaults).
        img_size: override the input size: ``N`` for N×N or ``(H, W)`` (e.g. 32 to run a
            CIFAR backbone at native size). Default: the model's.
        crop_pct: override the centre-crop fraction (1.0: no crop). Default: the model's.
        interpolation: override the resize interpolation. Default: the model's.
        use_test_size: use the model's ``test_input_size``/``test_crop_pct`` when it has them.

    Raises:
        ValueError: a non-positive ``img_size`` or ``crop_pct`` outside (0, 1].
    """
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model, use_test_size=use_test_size)
    input_size = tuple(int(v) for v in cfg["input_size"])
    if img_size is not None:
        hw = (int(img_size), int(img_size)) if isinstance(img_size, int) else tuple(img_size)
        if len(hw) != 2 or min(int(v) for v in hw) < 1:
            raise ValueError(f"img_size must be a positive int or (height, width), got {img_size}")
        input_size = (input_size[0], int(hw[0]), int(hw[1]))
    return Preprocessing(
        input_size=input_size,  # type: ignore[arg-type]
        interpolation=interpolation or cfg["interpolation"],
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        crop_pct=cfg["crop_pct"] if crop_pct is None else crop_pct,
        crop_mode=cfg.get("crop_mode", "center"),
    )


def eval_transform(preprocessing: Preprocessing, *, normalize: bool = True) -> Callable[[Any], torch.Tensor]:
    """timm's eval transform: resize, centre-crop, to tensor and normalise.

    Returns a callable mapping an RGB ``PIL.Image`` to a ``(3, H, W)`` float32 tensor, or,
    with ``normalize=False``, to the un-normalised ``(3, H, W)`` uint8 tensor (batches are
    then normalised on the device: ``(x / 255 - mean) / std``, bit-identical).
    """
    from timm.data import create_transform

    p = preprocessing
    return create_transform(
        input_size=p.input_size,
        is_training=False,
        interpolation=p.interpolation,
        mean=p.mean,
        std=p.std,
        crop_pct=p.crop_pct,
        crop_mode=p.crop_mode,
        use_prefetcher=not normalize,
    )


def frame_transform(preprocessing: Preprocessing) -> Callable[[Any], Any]:
    """How extraction frames an image: timm's eval resize and centre crop, PIL in, PIL out.

    The resize and crop of :func:`eval_transform` (``input_size / crop_pct`` on the shorter
    side, or both sides with ``crop_mode="squash"``, then a centre crop to ``input_size``), so
    that training views (:func:`train_transform`) see the image framed as extraction does.
    """
    from timm.data import create_transform
    from torchvision import transforms as T

    p = preprocessing
    full = create_transform(
        input_size=p.input_size, is_training=False, interpolation=p.interpolation,
        crop_pct=p.crop_pct, crop_mode=p.crop_mode, use_prefetcher=True,
    )
    return T.Compose(list(full.transforms[:-1]))  # drop the final to-tensor step


class MultiView:
    """Apply a random transform ``views`` times to one image; returns a tuple of the views."""

    def __init__(self, transform: Callable[[Any], Any], views: int = 2) -> None:
        if views < 1:
            raise ValueError(f"views must be >= 1, got {views}")
        self.transform = transform
        self.views = int(views)

    def __call__(self, image: Any) -> tuple[Any, ...]:
        return tuple(self.transform(image) for _ in range(self.views))

    def __repr__(self) -> str:
        return f"MultiView(views={self.views}, transform={self.transform!r})"


def train_transform(
    preprocessing: Preprocessing,
    *,
    policy: str = "imagenet",
    hflip: float = 0.5,
    scale: tuple[float, float] | None = None,
    views: int = 1,
    normalize: bool = True,
) -> Callable[[Any], Any]:
    """Training augmentation: AutoAugment views at the backbone's input size.

    The pipeline: the image framed as extraction frames it (:func:`frame_transform`: timm's
    resize to ``input_size / crop_pct`` and centre crop; with ``crop_pct = 1`` the whole image)
    or, with ``scale``, a ``RandomResizedCrop`` of that area range; then torchvision's
    ``RandomHorizontalFlip(hflip)``, ``AutoAugment(policy)``, ``ToTensor`` and
    ``Normalize(mean, std)`` of the backbone.
    Randomness comes from torch's RNG, which a ``DataLoader`` seeds per worker from its
    ``generator``.

    Args:
        preprocessing: the backbone's :class:`Preprocessing`.
        policy: AutoAugment policy, ``"imagenet"``, ``"cifar10"`` or ``"svhn"``; ``"none"``
            leaves AutoAugment out.
        hflip: probability of a horizontal flip.
        scale: area range of a random resized crop; None resizes the whole image.
        views: with ``views > 1`` each call returns a tuple of that many independent views.
        normalize: end with ``ToTensor`` + ``Normalize``; False ends with ``PILToTensor``
            instead, the ``(3, H, W)`` uint8 view (what fine-tuning's workers emit; batches are
            normalised on the device: ``(x / 255 - mean) / std``, bitwise the same on the CPU).

    Returns:
        A callable mapping an RGB ``PIL.Image`` to a ``(3, H, W)`` float32 (uint8 with
        ``normalize=False``) tensor (or a tuple).

    Raises:
        ValueError: an unknown policy, ``hflip`` outside [0, 1], or ``views < 1``.
    """
    from torchvision import transforms as T
    from torchvision.transforms import AutoAugmentPolicy, InterpolationMode

    policies = {p.value: p for p in AutoAugmentPolicy}
    if policy not in policies and policy != "none":
        raise ValueError(f"unknown AutoAugment policy {policy!r}; expected one of {sorted(policies) + ['none']}")
    if not 0.0 <= hflip <= 1.0:
        raise ValueError(f"hflip must be a probability in [0, 1], got {hflip}")
    p = preprocessing
    modes = {m.value: m for m in InterpolationMode}
    interp = modes.get(p.interpolation, InterpolationMode.BILINEAR)
    size = p.img_size
    first = (
        frame_transform(p)
        if scale is None
        else T.RandomResizedCrop(size, scale=tuple(scale), interpolation=interp, antialias=True)
    )
    transform = T.Compose(
        [
            first,
            T.RandomHorizontalFlip(hflip),
            *([] if policy == "none" else [T.AutoAugment(policies[policy])]),
            *([T.ToTensor(), T.Normalize(p.mean, p.std)] if normalize else [T.PILToTensor()]),
        ]
    )
    return transform if views == 1 else MultiView(transform, views)


# --------------------------------------------------------------------------- backbones


def suggest_models(name: str, n: int = 5) -> list[str]:
    """Up to ``n`` timm model names close to ``name`` (``difflib`` over ``timm.list_models()``)."""
    names = timm.list_models()
    close = difflib.get_close_matches(name.lower(), names, n=n, cutoff=0.6)
    if not close:
        close = [m for m in names if name.lower() in m][:n]
    return close


def _check_model_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"backbone name must be a non-empty string, got {name!r}")
    arch, _, tag = name.partition(".")
    if not timm.is_model(arch):
        close = suggest_models(arch)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
        raise ValueError(f"unknown backbone {name!r}{hint}")
    if tag and name not in timm.list_pretrained(name):
        tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{arch}.*")]
        known = f"; its tags: {', '.join(tags)}" if tags else f"; {arch} has no pretrained tags"
        raise ValueError(f"unknown pretrained tag {tag!r} of backbone {arch!r}{known}")


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Run the block with torch's CPU RNG seeded by ``seed``, restoring it afterwards."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def _hub_offline() -> bool:
    return any(
        os.environ.get(var, "").strip().lower() in _OFFLINE_VALUES
        for var in ("HF_HUB_OFFLINE", "TIMM_OFFLINE")
    )


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` seconds."""
    parsed = urlparse(url)
    host = parsed.hostname
    if not host:
        return False
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _hub_url(name: str) -> str:
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is not None and cfg.hf_hub_id:
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if cfg is not None and cfg.url:
        return cfg.url
    return ""


def _offline_error(name: str, reason: str) -> ConnectionError:
    return ConnectionError(
        f"cannot fetch pretrained weights for {name!r} from the hub ({reason}); "
        f"pass a local weights file instead (pretrained=PATH / --pretrained FILE.safetensors|.pth)"
    )


def _create_from_hub(name: str, kwargs: dict[str, Any]) -> nn.Module:
    if not timm.models.is_model_pretrained(name):
        raise ValueError(
            f"backbone {name!r} has no pretrained weights on the hub; "
            f"pass a weights file or pretrained=None to train from scratch"
        )
    if _hub_offline():
        raise _offline_error(name, "HF_HUB_OFFLINE is set")
    url = _hub_url(name)
    if not _reachable(url):
        raise _offline_error(name, f"{urlparse(url).hostname or url!r} is unreachable; offline?")
    try:
        return timm.create_model(name, pretrained=True, num_classes=0, **kwargs)
    except TypeError:
        raise
    except Exception as exc:  # network and hub errors come in many types
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise _offline_error(name, f"download failed: {type(exc).__name__}: {first}") from exc


def create_backbone(
    name: str,
    pretrained: str | os.PathLike | None = None,
    *,
    drop_rate: float = 0.0,
    seed: int | None = None,
    strict: bool = True,
    **kwargs: Any,
) -> nn.Module:
    """A timm backbone returning pooled pre-logits features.

    ``timm.create_model(name, num_classes=0, drop_rate=drop_rate, **kwargs)``:
    ``model(x)`` maps ``(B, 3, H, W)`` normalised images to ``(B, model.num_features)``.

    Args:
        name: a timm model name (``timm.list_models()``), optionally with a pretrained tag
            (``"resnet18.a1_in1k"``); includes ``conv4``, ``resnet12``, ``resnet12_narrow``.
        pretrained: None (random init), ``"hub"`` (timm's weights from the Hugging Face Hub;
            needs internet), or a path to a ``.safetensors`` or ``.pth``/``.pt`` file, loaded by
            :func:`fewshot.weights.load_weights`: wrappers and prefixes removed, community
            layouts (torchvision, lukemelas EfficientNet, FEAT/RFS ResNet-12) and timm's own
            ``checkpoint_filter_fn`` (BEiT-3, CLIP, position-embedding resampling, ...)
            applied, classifier keys dropped; the report is logged. With a pretrained tag in
            ``name`` the tag's ``pretrained_cfg`` (mean/std, input size, crop) describes the
            file's preprocessing (see :func:`resolve_preprocessing`).
        drop_rate: timm's dropout on the pooled features (active in train mode only).
        seed: seed the random initialisation (torch's global RNG is left untouched).
        strict: with a weights file, refuse missing or unexpected keys (see :func:`load_weights`).
        **kwargs: passed on to ``timm.create_model`` (``global_pool``, ``widths``, ...).

    Raises:
        ValueError: unknown name (close names suggested), ``num_classes`` given, a weights
            file that is not a state dict or does not match the architecture, or ``"hub"``
            for a model without pretrained weights.
        FileNotFoundError: the weights file does not exist.
        ConnectionError: ``"hub"`` while offline (``HF_HUB_OFFLINE`` set or hub unreachable).
    """
    _check_model_name(name)
    if "num_classes" in kwargs:
        raise ValueError(
            "create_backbone always builds num_classes=0 (pooled features); "
            f"got num_classes={kwargs['num_classes']!r} — add a ClassificationHead instead"
        )
    if "pretrained" in kwargs or "checkpoint_path" in kwargs:
        raise ValueError("pass weights as create_backbone(name, pretrained='hub' | PATH)")
    if drop_rate:
        kwargs["drop_rate"] = float(drop_rate)
    if pretrained is True:
        pretrained = "hub"
    if pretrained is False:
        pretrained = None
    if pretrained not in (None, "hub") and seed is None:
        seed = 0  # the file overwrites the init; leave torch's global RNG untouched
    with _seeded(seed):
        if pretrained == "hub":
            return _create_from_hub(name, kwargs)
        path = None if pretrained is None else Path(pretrained)
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path} (or pass pretrained='hub')")
        try:
            model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
        except TypeError as exc:
            raise ValueError(f"backbone {name!r} does not take these arguments ({sorted(kwargs)}): {exc}") from None
    if path is not None:
        load_weights(model, path, strict=strict)
    return model


# --------------------------------------------------------------------------- weights
# Reading weight files and converting their layouts live in fewshot.weights; re-exported here.


def state_dict_sha256(model: nn.Module) -> str:
    """SHA-256 of a module's state dict (names, dtypes, shapes and bytes, in sorted order)."""
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        t = value.detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- heads


class ClassificationHead(nn.Module):
    """Linear classifier for the cross-entropy term: dropout, then ``Linear``.

    ``(B, in_features)`` → ``(B, num_classes)`` logits.

    Args:
        in_features: embedding dims (``backbone.num_features``).
        num_classes: number of (base) classes.
        dropout: dropout probability on the embedding (active in train mode only).
        seed: seed the initialisation without touching torch's global RNG.
    """

    def __init__(
        self, in_features: int, num_classes: int, dropout: float = 0.0, *, seed: int | None = None
    ) -> None:
        super().__init__()
        if in_features < 1 or num_classes < 1:
            raise ValueError(f"in_features and num_classes must be >= 1, got {in_features}, {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_features, self.num_classes, self.dropout_p = int(in_features), int(num_classes), float(dropout)
        with _seeded(seed):
            self.dropout = nn.Dropout(self.dropout_p)
            self.fc = nn.Linear(self.in_features, self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(x))

    def config(self) -> dict[str, Any]:
        """Constructor arguments, for a checkpoint to rebuild the head."""
        return {"in_features": self.in_features, "num_classes": self.num_classes, "dropout": self.dropout_p}


class ProjectionHead(nn.Module):
    """MLP projection for the contrastive term: ``num_layers`` linear layers with ReLU between.

    ``(B, in_features)`` → ``(B, out_features)`` (not normalised; the loss normalises).

    Args:
        in_features: embedding dims (``backbone.num_features``).
        out_features: projection dims (128).
        hidden_features: width of the hidden layers (default ``in_features``).
        num_layers: number of linear layers (2; 1 is a linear projection).
        seed: seed the initialisation without touching torch's global RNG.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int = 128,
        hidden_features: int | None = None,
        num_layers: int = 2,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        hidden = int(hidden_features or in_features)
        if min(in_features, out_features, hidden) < 1 or num_layers < 1:
            raise ValueError(
                f"ProjectionHead needs positive sizes and num_layers >= 1, got in={in_features}, "
                f"out={out_features}, hidden={hidden}, num_layers={num_layers}"
            )
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.hidden_features, self.num_layers = hidden, int(num_layers)
        dims = [self.in_features] + [hidden] * (self.num_layers - 1) + [self.out_features]
        layers: list[nn.Module] = []
        with _seeded(seed):
            for i in range(self.num_layers):
                if i:
                    layers.append(nn.ReLU(inplace=True))
                layers.append(nn.Linear(dims[i], dims[i + 1]))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)

    def config(self) -> dict[str, Any]:
        """Constructor arguments, for a checkpoint to rebuild the head."""
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "hidden_features": self.hidden_features,
            "num_layers": self.num_layers,
        }


class NeckHead(nn.Module):
    """A trainable MLP neck on a backbone's pooled features; its output is the embedding.

    ``(B, in_features)`` → ``(B, dims[-1])``: ``Linear(in, dims[0])``, then ReLU and
    ``Linear(dims[i-1], dims[i])`` for each further size (no activation after the last).

    Args:
        in_features: backbone feature dims (``backbone.num_features``).
        dims: output sizes of the linear layers, at least one.
        seed: seed the initialisation without touching torch's global RNG.

    Raises:
        ValueError: no sizes, or a size < 1.
    """

    def __init__(self, in_features: int, dims: Sequence[int], *, seed: int | None = None) -> None:
        super().__init__()
        dims = [int(d) for d in dims]
        if not dims or min([int(in_features), *dims]) < 1:
            raise ValueError(f"NeckHead needs in_features >= 1 and at least one size >= 1, got {in_features}, {dims}")
        self.in_features, self.dims = int(in_features), tuple(dims)
        sizes = [self.in_features, *dims]
        layers: list[nn.Module] = []
        with _seeded(seed):
            for i in range(len(dims)):
                if i:
                    layers.append(nn.ReLU())
                layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        self.mlp = nn.Sequential(*layers)

    @property
    def out_features(self) -> int:
        return self.dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)

    def config(self) -> dict[str, Any]:
        """Constructor arguments, for a checkpoint to rebuild the head."""
        return {"in_features": self.in_features, "dims": list(self.dims)}


class NeckedBackbone(nn.Module):
    """A backbone followed by its :class:`NeckHead`: ``(B, 3, H, W)`` → ``(B, neck.out_features)``,
    what ``fewshot extract --checkpoint`` embeds with when a checkpoint has a neck."""

    def __init__(self, backbone: nn.Module, neck: nn.Module) -> None:
        super().__init__()
        self.backbone, self.neck = backbone, neck
        self.num_features = int(neck.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.backbone(x))


#: Head types a checkpoint can rebuild, by class name.
HEADS: dict[str, type[nn.Module]] = {
    "ClassificationHead": ClassificationHead, "ProjectionHead": ProjectionHead, "NeckHead": NeckHead,
}


def head_from_config(type_name: str, config: Mapping[str, Any]) -> nn.Module:
    """Rebuild a head recorded as ``{"type": type_name, "config": config}``.

    Raises:
        ValueError: an unknown head type or arguments it does not take.
    """
    if type_name not in HEADS:
        raise ValueError(f"unknown head type {type_name!r}; expected one of {sorted(HEADS)}")
    try:
        return HEADS[type_name](**dict(config))
    except TypeError as exc:
        raise ValueError(f"bad config for {type_name}: {exc}") from exc
