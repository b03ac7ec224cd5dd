"""What the few-shot backbones share: their timm pretrained config, classifier plumbing, init.

Every backbone here has no pretrained weights, timm's classifier interface
(:class:`TimmLikeHead`: ``forward_features``, ``forward_head``, ``reset_classifier``,
``group_matcher`` with one group per stage for layer-wise lr decay) and the config
:func:`default_cfg` (84 px, ImageNet mean/std, bilinear, ``crop_pct=1.0``), which
``timm.data.resolve_data_config`` reads.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import create_classifier
from timm.models import build_model_with_cfg
from torch import nn

__all__ = ["default_cfg", "TimmLikeHead", "init_weights", "move_to", "build"]


def default_cfg(**overrides: Any) -> dict[str, Any]:
    """timm's pretrained config of a backbone here (no weights), with ``overrides`` applied."""
    cfg = {
        "url": "",
        "num_classes": 0,
        "input_size": (3, 84, 84),
        "min_input_size": (3, 16, 16),
        "fixed_input_size": False,
        "pool_size": (5, 5),
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "crop_mode": "center",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stages.0.conv",
        "classifier": "fc",
    }
    cfg.update(overrides)
    return cfg


class TimmLikeHead:
    """Shared classifier plumbing: ``global_pool`` + optional dropout + ``fc``."""

    num_classes: int
    num_features: int
    drop_rate: float
    global_pool: nn.Module
    fc: nn.Module

    def get_classifier(self, name_only: bool = False) -> str | nn.Module:
        return "fc" if name_only else self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier with one for ``num_classes`` (0: pooled features)."""
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        device = next(iter(self.parameters())).device  # type: ignore[attr-defined]
        self.num_classes = num_classes
        self.global_pool, self.fc = create_classifier(self.num_features, num_classes, pool_type=global_pool)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        self.fc.to(device)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool the ``(B, C, h, w)`` feature map; logits unless ``pre_logits``."""
        x = self.global_pool(x)
        if self.drop_rate:
            x = nn.functional.dropout(x, p=self.drop_rate, training=self.training)  # type: ignore[attr-defined]
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` → ``(B, num_classes)``, or ``(B, num_features)`` when 0 classes."""
        return self.forward_head(self.forward_features(x))  # type: ignore[attr-defined]

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm parameter groups: one per stage (for layer-wise lr decay)."""
        return {"blocks": self._stage_pattern}  # type: ignore[attr-defined]

    def _init_head(self, num_classes: int, global_pool: str, drop_rate: float) -> None:
        self.num_classes = num_classes
        self.drop_rate = float(drop_rate)
        self.global_pool, self.fc = create_classifier(self.num_features, num_classes, pool_type=global_pool)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()


def init_weights(module: nn.Module, nonlinearity: str) -> None:
    """Kaiming-normal convolutions (``fan_out``), BatchNorm weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity=nonlinearity)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def move_to(module: nn.Module, device: Any = None, dtype: Any = None, **unused: Any) -> None:
    """Apply the ``device``/``dtype`` timm passes; any other leftover argument is a ``TypeError``."""
    if unused:
        raise TypeError(f"{type(module).__name__} got unexpected arguments: {sorted(unused)}")
    if device is not None or dtype is not None:
        module.to(device=device, dtype=dtype)


def build(cls: type[nn.Module], variant: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    """``timm.models.build_model_with_cfg`` for a registered variant."""
    return build_model_with_cfg(cls, variant, pretrained, **kwargs)
