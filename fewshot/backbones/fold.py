"""Folding eval-mode BatchNorm into the convolution that feeds it, for frozen-feature extraction.

In eval mode a ``BatchNorm2d`` is a fixed affine map per channel of its input: for the output
``z = W * x + b`` of a convolution, ``γ (z - μ) / sqrt(σ² + ε) + β`` is the output of one
convolution with ``W' = s·W`` and ``b' = s·(b - μ) + β``, ``s = γ / sqrt(σ² + ε)`` per output
channel. The folded network computes the same function (up to float rounding) without the
BatchNorm's pass over every activation: 20 % of EfficientNet-Lite0's CPU forward at 84 px
(``benchmarks/bench_features.py`` measures what it gives each family).

A BatchNorm is folded only when the profile of one forward pass shows that its input *is* the
output tensor of a plain convolution (``nn.Conv2d`` or timm's ``Conv2dSame``, each called once),
and the folded copy is then checked against the original on that pass: a network that uses a
convolution's raw output elsewhere too (which hooks cannot see) fails the check and is returned
unfolded, with a warning in the log. Weight-standardising convolutions (timm's ``StdConv2d``)
and BatchNorms without running statistics are never folded, and a model with forward hooks
is left as it is (its hooks see what they saw).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import torch
from timm.layers import BatchNormAct2d, Conv2dSame
from torch import nn

__all__ = ["fold_batchnorm", "foldable_pairs"]

logger = logging.getLogger(__name__)

#: Convolution classes whose forward is ``conv2d(x, weight, bias)`` (after padding), so
#: scaling the weight and shifting the bias folds a BatchNorm into them.
_CONVS: tuple[type, ...] = (nn.Conv2d, Conv2dSame)
#: BatchNorm classes: plain (replaced by ``Identity``) and timm's BatchNorm + drop + activation
#: (replaced by its drop and activation).
_NORMS: tuple[type, ...] = (nn.BatchNorm2d, BatchNormAct2d)


def _hooked(model: nn.Module) -> bool:
    """Whether someone watches the input or output of ``model`` or one of its modules (folding
    would change what they see, and the probing passes would reach them)."""
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def _is_conv(module: nn.Module) -> bool:
    return type(module) in _CONVS and module.padding_mode == "zeros"


def _is_norm(module: nn.Module) -> bool:
    return type(module) in _NORMS and module.running_mean is not None and module.running_var is not None


Forward = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _call(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def foldable_pairs(model: nn.Module, example: torch.Tensor, *, forward: Forward = _call) -> list[tuple[str, str]]:
    """``(conv name, batchnorm name)`` of every BatchNorm in ``model`` whose input, in a forward
    pass of ``example``, is the output of a convolution, each called once in the pass.

    Args:
        model: a network in eval mode.
        example: one input batch ``(B, C, H, W)`` on the model's device.
        forward: how the model is run, ``forward(model, x) -> tensor``; default ``model(x)``.

    Returns:
        The pairs in the order the BatchNorms ran.
    """
    return _probe(model, example, forward)[0]


def _probe(model: nn.Module, example: torch.Tensor, forward: Forward) -> tuple[list[tuple[str, str]], torch.Tensor]:
    """:func:`foldable_pairs` and the model's output, from one forward pass."""
    outputs: dict[int, tuple[str, torch.Tensor]] = {}  # id of a conv's output -> (name, the tensor)
    calls: dict[str, int] = {}
    norm_inputs: list[tuple[str, torch.Tensor]] = []
    handles = []

    def conv_hook(name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            calls[name] = calls.get(name, 0) + 1
            outputs[id(output)] = (name, output)  # the tensor is kept, so its id is not reused

        return hook

    def norm_hook(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            calls[name] = calls.get(name, 0) + 1
            norm_inputs.append((name, args[0]))

        return hook

    for name, module in model.named_modules():
        if _is_conv(module):
            handles.append(module.register_forward_hook(conv_hook(name)))
        elif _is_norm(module):
            handles.append(module.register_forward_pre_hook(norm_hook(name)))
    try:
        with torch.inference_mode():
            output = forward(model, example)
    finally:
        for handle in handles:
            handle.remove()
    pairs, used = [], set()
    for norm, tensor in norm_inputs:
        conv, out = outputs.get(id(tensor), (None, None))
        if conv is None or out is not tensor or conv in used or calls[conv] != 1 or calls[norm] != 1:
            continue
        used.add(conv)
        pairs.append((conv, norm))
    return pairs, output


@torch.no_grad()
def _fold(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    """Scale ``conv``'s weight and set its bias so that it computes ``norm(conv(x))`` (the
    per-channel scale and bias in float64, the weight scaled in place in its own dtype)."""
    mean, var = norm.running_mean.double(), norm.running_var.double()
    gamma = norm.weight.double() if norm.weight is not None else torch.ones_like(mean)
    beta = norm.bias.double() if norm.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + norm.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
    weight = conv.weight
    weight.mul_(scale.to(weight.dtype).view(-1, *([1] * (weight.ndim - 1))))
    folded = ((bias - mean) * scale + beta).to(weight.dtype)
    if conv.bias is None:
        conv.bias = nn.Parameter(folded, requires_grad=weight.requires_grad)
    else:
        conv.bias.copy_(folded)


def _replacement(norm: nn.Module) -> nn.Module:
    if type(norm) is BatchNormAct2d:  # batch_norm, then self.drop, then self.act
        return nn.Sequential(norm.drop, norm.act)
    return nn.Identity()


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


def fold_batchnorm(
    model: nn.Module, example: torch.Tensor, *, forward: Forward = _call, rtol: float = 1e-4
) -> nn.Module:
    """A copy of eval-mode ``model`` with every foldable BatchNorm (:func:`foldable_pairs`)
    folded into its convolution, or ``model`` itself when there is none, when the check fails
    or when a module of ``model`` has forward (pre-)hooks (nothing is run then).

    The copy's output for ``example`` must match the original's within
    ``rtol · max|original output|`` (float32 folding moves it by about 1e-6 of that); when it
    does not, a warning is logged and ``model`` is returned unchanged. ``model`` is never
    modified. The copy has its own modules and its own tensors for the folded convolutions;
    every other parameter and buffer is shared with ``model`` (no second copy of the weights
    in memory), so it is meant for inference: training either one changes the other.

    Args:
        model: a network in eval mode, e.g. a backbone ``(B, 3, H, W) -> (B, d)``.
        example: one input batch on the model's device (a random one of the input size will do).
        forward: how the model is run, ``forward(model, x) -> tensor``; default ``model(x)``.
        rtol: the check's tolerance, relative to the largest output magnitude. Default 1e-4.

    Returns:
        The folded copy (same device, dtype and memory format), or ``model``.

    Raises:
        ValueError: ``model`` in training mode (its BatchNorms then use batch statistics and
            cannot be folded).
    """
    if model.training:
        raise ValueError(f"fold_batchnorm needs a model in eval mode, got {type(model).__name__} in training mode")
    if _hooked(model):
        logger.info("not folding BatchNorm in %s: it has forward hooks", type(model).__name__)
        return model
    pairs, want = _probe(model, example, forward)
    if not pairs:
        return model
    changed = {id(t) for conv, _ in pairs for t in model.get_submodule(conv).parameters()}
    shared = {id(t): t for t in (*model.parameters(), *model.buffers()) if id(t) not in changed}
    folded = copy.deepcopy(model, shared)  # new modules; only the folded convolutions' tensors copied
    for conv, norm in pairs:
        _fold(folded.get_submodule(conv), folded.get_submodule(norm))
        _set(folded, norm, _replacement(folded.get_submodule(norm)))
    with torch.inference_mode():
        want, got = want.float(), forward(folded, example).float()
    scale = float(want.abs().max()) or 1.0
    err = float((got - want).abs().max()) / scale if got.shape == want.shape else float("inf")
    if not err <= rtol:
        logger.warning(
            "not folding BatchNorm into %d convolutions of %s: the folded network's output differs by "
            "%.2g of its largest value (tolerance %.0e); is a convolution's raw output used elsewhere?",
            len(pairs),
            type(model).__name__,
            err,
            rtol,
        )
        return model
    logger.info("folded %d BatchNorm layers of %s into their convolutions", len(pairs), type(model).__name__)
    return folded
