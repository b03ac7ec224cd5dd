"""``create_backbone``: a timm model with pooled features, and weights from the hub or a file.

A *backbone* is any timm model created with ``num_classes=0``: ``backbone(x)`` maps a
normalised ``(B, 3, H, W)`` float batch to timm's pooled pre-logits features
``(B, backbone.num_features)``. :func:`create_backbone` builds one from timm's registry
(which also holds this package's ``conv4``, ``resnet12``, ``resnet12_narrow`` and
``resnet12_fsl``) and optionally loads weights from the hub (:mod:`fewshot.backbones._hub`) or
a local file (through :func:`fewshot.backbones.weights.load_weights`, which converts published
layouts). The input pipeline comes from the backbone itself
(:func:`fewshot.transforms.resolve_preprocessing`); the heads trained on top of it live in
:mod:`fewshot.heads`.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import timm
from torch import nn

from fewshot._rng import seeded
from fewshot.backbones._hub import create_from_hub
from fewshot.backbones.weights import load_weights

__all__ = ["create_backbone", "suggest_models"]


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
            :func:`fewshot.backbones.weights.load_weights`: wrappers and prefixes removed, community
            layouts (torchvision, lukemelas EfficientNet, FEAT/RFS ResNet-12) and timm's own
            ``checkpoint_filter_fn`` (BEiT-3, CLIP, position-embedding resampling, ...)
            applied, classifier keys dropped; the report is logged. With a pretrained tag in
            ``name`` the tag's ``pretrained_cfg`` (mean/std, input size, crop) describes the
            file's preprocessing (see :func:`fewshot.transforms.resolve_preprocessing`).
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
    with seeded(seed):
        if pretrained == "hub":
            return create_from_hub(name, kwargs)
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
