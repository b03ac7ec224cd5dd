"""Small few-shot backbones, registered in timm's model registry.

Importing this module (``fewshot.models`` does) makes ``timm.create_model("conv4")``,
``"resnet12"`` and ``"resnet12_narrow"`` work like any timm model: ``num_classes=0`` gives
pooled features of ``model.num_features`` dims, ``forward_features`` returns the final feature
map, ``forward_head(x, pre_logits=True)`` pools it, and ``resolve_data_config`` reads the
pretrained config below (84 px, ImageNet mean/std, bilinear, ``crop_pct=1.0``).

These networks have no pretrained weights: they are meant to be trained from scratch on the
base classes of a benchmark (the demo and the CPU miniImageNet run).

- ``conv4``: four blocks of [3×3 conv (64 channels), BatchNorm, ReLU, 2×2 max-pool], then
  global average pooling → 64 dims (Vinyals et al., 2016; Snell et al., 2017 — here pooled
  rather than flattened, so any input size ≥ 16 px works).
- ``resnet12``: the few-shot ResNet-12 (Lee et al., 2019, MetaOptNet; Oreshkin et al., 2018,
  TADAM): four residual stages of three 3×3 convs with BatchNorm and LeakyReLU(0.1), a 1×1
  convolution shortcut, and 2×2 max-pooling after each stage; widths (64, 160, 320, 640) →
  640 dims. ``resnet12_narrow`` uses widths (32, 64, 128, 256) → 256 dims; any widths can be
  passed as ``widths=(...)``. DropBlock from the original is not included.
- ``resnet12_fsl``: the same network in the layout of the few-shot libraries whose weights
  people share — FEAT (Ye et al., 2020, ``model/networks/res12.py``), RFS (Tian et al., 2020),
  easyfsl (``feat_resnet12``) and LibFewShot: stages named ``layer1..layer4``, each one block
  with ``conv1..3``/``bn1..3`` and a ``downsample`` shortcut, LeakyReLU(0.1), max-pool 2 after
  each stage, dropout (layers 1-2) and DropBlock (block size 5, layers 3-4) at
  ``drop_block_rate`` (0.1, as FEAT/RFS) in training. Their published files load strictly
  after the wrapper/prefix removal of :func:`fewshot.weights.load_weights` (``params`` +
  ``encoder.`` for FEAT, ``model`` for RFS, ``emb_func.`` for LibFewShot); eval outputs are
  theirs. Not reproduced: FEAT/RFS ramp the DropBlock rate up over the first 40k batches; here
  it is constant.

Every backbone here has ``group_matcher`` (one group per stage) for timm's layer-wise lr decay.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import create_classifier
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

__all__ = ["Conv4", "ResNet12", "FewShotResNet12"]


def _cfg(**overrides: Any) -> dict[str, Any]:
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


default_cfgs = generate_default_cfgs(
    {
        "conv4": _cfg(),
        "resnet12": _cfg(first_conv="stages.0.conv1"),
        "resnet12_narrow": _cfg(first_conv="stages.0.conv1"),
        "resnet12_fsl": _cfg(first_conv="layer1.0.conv1", pool_size=(5, 5)),
    }
)


class _TimmLikeHead:
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
        self.global_pool, self.fc = create_classifier(
            self.num_features, num_classes, pool_type=global_pool
        )
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
        self.global_pool, self.fc = create_classifier(
            self.num_features, num_classes, pool_type=global_pool
        )
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()


def _init_weights(module: nn.Module, nonlinearity: str) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity=nonlinearity)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class _ConvBlock(nn.Module):
    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.bn(self.conv(x))))


class Conv4(_TimmLikeHead, nn.Module):
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
        _init_weights(self, "relu")
        _to(self, **kwargs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, width, H/16, W/16)``."""
        return self.stages(x)


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
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_chs, out_chs, 1, bias=False), nn.BatchNorm2d(out_chs)
        )
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.pool(self.act(out + self.shortcut(x)))


class ResNet12(_TimmLikeHead, nn.Module):
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
        _init_weights(self, "leaky_relu")
        _to(self, **kwargs)

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


class FewShotResNet12(_TimmLikeHead, nn.Module):
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
        _init_weights(self, "leaky_relu")
        _to(self, **kwargs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, widths[-1], H / 2**stages, W / 2**stages)``."""
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x


def _to(module: nn.Module, device: Any = None, dtype: Any = None, **unused: Any) -> None:
    if unused:
        raise TypeError(f"{type(module).__name__} got unexpected arguments: {sorted(unused)}")
    if device is not None or dtype is not None:
        module.to(device=device, dtype=dtype)


def _create(cls: type[nn.Module], variant: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    return build_model_with_cfg(cls, variant, pretrained, **kwargs)


@register_model
def conv4(pretrained: bool = False, **kwargs: Any) -> Conv4:
    """Conv-4, 64 channels, 64-d pooled features; 84 px by default."""
    return _create(Conv4, "conv4", pretrained, **kwargs)


@register_model
def resnet12(pretrained: bool = False, **kwargs: Any) -> ResNet12:
    """Few-shot ResNet-12, widths (64, 160, 320, 640), 640-d features; 84 px by default."""
    return _create(ResNet12, "resnet12", pretrained, **kwargs)


@register_model
def resnet12_narrow(pretrained: bool = False, **kwargs: Any) -> ResNet12:
    """Narrow ResNet-12, widths (32, 64, 128, 256), 256-d features; 84 px by default."""
    kwargs.setdefault("widths", (32, 64, 128, 256))
    return _create(ResNet12, "resnet12_narrow", pretrained, **kwargs)


@register_model
def resnet12_fsl(pretrained: bool = False, **kwargs: Any) -> FewShotResNet12:
    """ResNet-12 in FEAT/RFS/easyfsl/LibFewShot's layout (``layer1..4``), widths (64, 160, 320, 640), DropBlock."""
    return _create(FewShotResNet12, "resnet12_fsl", pretrained, **kwargs)
