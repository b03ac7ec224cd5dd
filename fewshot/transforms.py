"""Preprocessing and image transforms: how images become a backbone's input.

The input pipeline comes from the backbone itself: :func:`resolve_preprocessing` reads timm's
data config (input size, interpolation, crop, mean/std) into a JSON-serialisable
:class:`Preprocessing`, which a checkpoint records so that feature extraction reproduces it.
:func:`eval_transform` (extraction) and :func:`train_transform` (fine-tuning augmentation) turn
it into torchvision transforms; :func:`frame_transform` is the resize and crop both share, and
:class:`MultiView` draws several augmented views of one image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "Preprocessing",
    "resolve_preprocessing",
    "eval_transform",
    "frame_transform",
    "train_transform",
    "MultiView",
]


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
            raise ValueError(f"mean and std need {size[0]} values for input_size {size}, got mean={mean}, std={std}")
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
        input_size=p.input_size,
        is_training=False,
        interpolation=p.interpolation,
        crop_pct=p.crop_pct,
        crop_mode=p.crop_mode,
        use_prefetcher=True,
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
