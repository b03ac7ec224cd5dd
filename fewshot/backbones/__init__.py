"""Backbones: timm models with pooled features, the few-shot architectures, their weights.

:func:`create_backbone` builds any timm model with ``num_classes=0`` (``backbone(x)``:
``(B, 3, H, W)`` → ``(B, backbone.num_features)``) and loads weights from the hub or a file;
:func:`suggest_models` finds close timm names.

Importing this package makes ``timm.create_model("conv4")``, ``"resnet12"``,
``"resnet12_narrow"`` and ``"resnet12_fsl"`` work like any timm model: ``num_classes=0`` gives
pooled features of ``model.num_features`` dims, ``forward_features`` returns the final feature
map, ``forward_head(x, pre_logits=True)`` pools it, and ``resolve_data_config`` reads their
pretrained config (84 px, ImageNet mean/std, bilinear, ``crop_pct=1.0``).

- :mod:`fewshot.backbones.conv4` -- :class:`Conv4` (``conv4``);
- :mod:`fewshot.backbones.resnet12` -- :class:`ResNet12` (``resnet12``, ``resnet12_narrow``)
  and :class:`FewShotResNet12` (``resnet12_fsl``, the FEAT / RFS / easyfsl / LibFewShot layout);
- :mod:`fewshot.backbones.fold` -- :func:`fold_batchnorm`, eval-mode BatchNorm folded into the
  convolution before it (what feature extraction runs by default);
- :mod:`fewshot.backbones.weights` -- reading weight files, converting published layouts,
  loading them with a :class:`~fewshot.backbones.weights.LoadReport`, fingerprinting them
  (:func:`~fewshot.backbones.weights.state_dict_sha256`).
"""

from fewshot.backbones._factory import create_backbone, suggest_models
from fewshot.backbones.conv4 import Conv4
from fewshot.backbones.fold import fold_batchnorm, foldable_pairs
from fewshot.backbones.resnet12 import FewShotResNet12, ResNet12

__all__ = [
    "create_backbone",
    "suggest_models",
    "Conv4",
    "ResNet12",
    "FewShotResNet12",
    "fold_batchnorm",
    "foldable_pairs",
]
