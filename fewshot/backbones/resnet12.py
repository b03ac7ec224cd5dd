"""The few-shot ResNet-12, registered in timm's model registry in two layouts.

- ``resnet12``: the few-shot ResNet-12 (Lee et al., 2019, MetaOptNet; Oreshkin et al., 2018,
  TADAM): four residual stages of three 3×3 convs with BatchNorm and LeakyReLU(0.1), a 1×1
  convolution shortcut, and 2×2 max-pooling after each stage; widths (64, 160, 320, 640) →
  640 dims. ``resnet12_narrow`` uses widths (32, 64, 128, 256) → 256 dims; any widths can be
  passed as ``widths=(...)``. DropBlock from the original is not included. No pretrained
  weights: trained from scratch on the base classes of a benchmark.
- ``resnet12_fsl``: the same network in the layout of the few-shot libraries whose weights
  people share — FEAT (Ye et al., 2020, ``model/networks/res12.py``), RFS (Tian et al., 2020),
  easyfsl (``feat_resnet12``) and LibFewShot: stages named ``layer1..layer4``, each one block
  with ``conv1..3``/``bn1..3`` and a ``downsample`` shortcut, LeakyReLU(0.1), max-pool 2 after
  each stage, dropout (layers 1-2) and DropBlock (block size 5, layers 3-4) at
  ``drop_block_rate`` (0.1, as FEAT/RFS) in training. Their published files load strictly
  after the wrapper/prefix removal of :func:`fewshot.backbones.weights.load_weights`
  (``params`` + ``encoder.`` for FEAT, ``model`` for RFS, ``emb_func.`` for LibFewShot); eval
  outputs are theirs. Not reproduced: FEAT/RFS ramp the DropBlock rate up over the first 40k
  batches; here it is constant.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from timm.models import generate_default_cfgs, register_model
from torch import nn

from fewshot.backbones._common import TimmLikeHead, build, default_cfg, init_weights, move_to

__all__ = ["ResNet12", "FewShotResNet12"]


default_cfgs = generate_default_cfgs(
    {
        "resnet12": default_cfg(first_conv="stages.0.conv1"),
        "resnet12_narrow": default_cfg(first_conv="stages.0.conv1"),
        "resnet12_fsl": default_cfg(first_conv="layer1.0.conv1", pool_size=(5, 5)),
    }
)


class _ResBlock12(nn.Module):
    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.conv3 = nn.Conv2d(out_chs, out_chs, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)
        self.act = nn.LeakyReLU(0.1, inplace=True)
        self.shortcut = nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, bias=False), nn.BatchNorm2d(out_chs))
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.pool(self.act(out + self.shortcut(x)))


class ResNet12(TimmLikeHead, nn.Module):
    """The few-shot ResNet-12: four residual stages, each followed by max-pool 2.

    Args:
        num_classes: classifier outputs; 0 returns the pooled ``(B, widths[-1])`` features.
        in_chans: input channels.
        widths: output channels of the four stages ((64, 160, 320, 640)).
        global_pool: timm pooling type (``"avg"``).
        drop_rate: dropout on the pooled features before the classifier.
    """

    _stage_pattern = r"^stages\.(\d+)"

    def __init__(
        self,
        num_classes: int = 0,
        in_chans: int = 3,
        widths: Sequence[int] = (64, 160, 320, 640),
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) != 4 or min(widths) < 1:
            raise ValueError(f"widths must be 4 positive ints, got {widths}")
        chs = (in_chans, *widths)
        self.stages = nn.Sequential(*[_ResBlock12(chs[i], chs[i + 1]) for i in range(4)])
        self.num_features = widths[-1]
        self._init_head(num_classes, global_pool, drop_rate)
        init_weights(self, "leaky_relu")
        move_to(self, **kwargs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, widths[-1], H/16, W/16)``."""
        return self.stages(x)


class _FSLBlock(nn.Module):
    """One FEAT/RFS ResNet-12 stage: 3 convs, ``downsample`` shortcut, LeakyReLU, max-pool, drop."""

    def __init__(self, in_chs: int, out_chs: int, drop: nn.Module) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.conv3 = nn.Conv2d(out_chs, out_chs, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)
        self.relu = nn.LeakyReLU(0.1)
        self.downsample = nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, bias=False), nn.BatchNorm2d(out_chs))
        self.maxpool = nn.MaxPool2d(2)
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = self.maxpool(self.relu(out + self.downsample(x)))
        return self.drop(out)


class FewShotResNet12(TimmLikeHead, nn.Module):
    """ResNet-12 in the FEAT / RFS / easyfsl / LibFewShot layout (``layer1..layerN``).

    Args:
        num_classes: classifier outputs; 0 returns the pooled ``(B, widths[-1])`` features.
        in_chans: input channels.
        widths: output channels of the stages ((64, 160, 320, 640); any number >= 1).
        drop_block_rate: training-time regularisation after each stage: dropout in the first
            two stages, DropBlock (``block_size`` 5) in the others, as FEAT and RFS (0.1).
        global_pool: timm pooling type (``"avg"``).
        drop_rate: dropout on the pooled features before the classifier.
    """

    _stage_pattern = r"^layer(\d+)"

    def __init__(
        self,
        num_classes: int = 0,
        in_chans: int = 3,
        widths: Sequence[int] = (64, 160, 320, 640),
        drop_block_rate: float = 0.1,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        from timm.layers import DropBlock2d

        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be positive ints, got {widths}")
        if not 0.0 <= float(drop_block_rate) < 1.0:
            raise ValueError(f"drop_block_rate must be in [0, 1), got {drop_block_rate}")
        chs = (in_chans, *widths)
        for i in range(len(widths)):
            if not drop_block_rate:
                drop: nn.Module = nn.Identity()
            elif i < 2:
                drop = nn.Dropout(float(drop_block_rate))
            else:
                drop = DropBlock2d(float(drop_block_rate), block_size=5)
            self.add_module(f"layer{i + 1}", nn.Sequential(_FSLBlock(chs[i], chs[i + 1], drop)))
        self.num_stages = len(widths)
        self.num_features = widths[-1]
        self._init_head(num_classes, global_pool, drop_rate)
        init_weights(self, "leaky_relu")
        move_to(self, **kwargs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, widths[-1], H / 2**stages, W / 2**stages)``."""
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x


@register_model
def resnet12(pretrained: bool = False, **kwargs: Any) -> ResNet12:
    """Few-shot ResNet-12, widths (64, 160, 320, 640), 640-d features; 84 px by default."""
    return build(ResNet12, "resnet12", pretrained, **kwargs)


@register_model
def resnet12_narrow(pretrained: bool = False, **kwargs: Any) -> ResNet12:
    """Narrow ResNet-12, widths (32, 64, 128, 256), 256-d features; 84 px by default."""
    kwargs.setdefault("widths", (32, 64, 128, 256))
    return build(ResNet12, "resnet12_narrow", pretrained, **kwargs)


@register_model
def resnet12_fsl(pretrained: bool = False, **kwargs: Any) -> FewShotResNet12:
    """ResNet-12 in FEAT/RFS/easyfsl/LibFewShot's layout (``layer1..4``), widths (64, 160, 320, 640), DropBlock."""
    return build(FewShotResNet12, "resnet12_fsl", pretrained, **kwargs)
