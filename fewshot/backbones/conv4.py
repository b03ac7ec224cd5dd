"""Conv-4, registered in timm's model registry as ``conv4``.

Four blocks of [3×3 conv (64 channels), BatchNorm, ReLU, 2×2 max-pool], then global average
pooling → 64 dims (Vinyals et al., 2016; Snell et al., 2017 — here pooled rather than
flattened, so any input size ≥ 16 px works). No pretrained weights: it is trained from scratch
on the base classes of a benchmark (the demo and the CPU miniImageNet run).
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models import generate_default_cfgs, register_model
from torch import nn

from fewshot.backbones._common import TimmLikeHead, build, default_cfg, init_weights, move_to

__all__ = ["Conv4"]


default_cfgs = generate_default_cfgs({"conv4": default_cfg()})


class _ConvBlock(nn.Module):
    """conv3×3, BatchNorm, ReLU, max-pool 2, computed as ``relu(pool(bn(conv(x))))``.

    ReLU is monotone, so the maximum of a window commutes with it: the values and the
    gradients are those of ``pool(relu(...))`` exactly (a window with a positive maximum routes
    its gradient to the same element; one without gets none either way), while ReLU and its
    backward run on a quarter of the elements.
    """

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.pool(self.bn(self.conv(x))))


class Conv4(TimmLikeHead, nn.Module):
    """Conv-4: 4 × [conv3×3-``width``, BN, ReLU, max-pool 2], global pooling.

    Args:
        num_classes: classifier outputs; 0 returns the pooled ``(B, width)`` features.
        in_chans: input channels.
        width: channels of every block (64).
        global_pool: timm pooling type (``"avg"``).
        drop_rate: dropout on the pooled features before the classifier.
    """

    _stage_pattern = r"^stages\.(\d+)"

    def __init__(
        self,
        num_classes: int = 0,
        in_chans: int = 3,
        width: int = 64,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        chs = [in_chans] + [int(width)] * 4
        self.stages = nn.Sequential(*[_ConvBlock(chs[i], chs[i + 1]) for i in range(4)])
        self.num_features = int(width)
        self._init_head(num_classes, global_pool, drop_rate)
        init_weights(self, "relu")
        move_to(self, **kwargs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, width, H/16, W/16)``."""
        return self.stages(x)


@register_model
def conv4(pretrained: bool = False, **kwargs: Any) -> Conv4:
    """Conv-4, 64 channels, 64-d pooled features; 84 px by default."""
    return build(Conv4, "conv4", pretrained, **kwargs)
