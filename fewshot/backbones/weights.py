"""Weight files: reading them, converting the layouts researchers publish, loading with a report.
:func:`load_weights` puts a state dict (a file or a mapping) into a timm model in four steps,
each recorded in the returned :class:`LoadReport`:

1. **wrappers**: nested containers are opened (``state_dict``, ``model``, ``model_state_dict``,
   ``params`` (FEAT), ``teacher`` (DINO; ``student`` when there is no teacher)) and prefixes
   removed: ``module.`` (DDP) and ``_orig_mod.`` (``torch.compile``) when every key has them;
   ``encoder_q.`` / ``base_encoder.`` (MoCo v1-v2 / v3), ``backbone.`` (DINO, many frameworks),
   ``encoder.`` (FEAT) and ``emb_func.`` (LibFewShot) select the keys under them when the model
   itself has no such submodule; the rest (MoCo's key encoder and queue, DINO's head, FEAT's
   attention) is *dropped*;
2. **community layouts** timm does not know, detected from the keys (:data:`CONVERTERS`):
   torchvision ResNets, lukemelas EfficientNet / EfficientNet-Lite (``_conv_stem``,
   ``_blocks.N._depthwise_conv``, ...) into timm ``tf_efficientnet*`` / ``tf_efficientnet_lite*``,
   and the few-shot ResNet-12 of FEAT / RFS / easyfsl / LibFewShot (``layer1..4``) into
   ``resnet12_fsl`` (same names, loads as is) or ``resnet12`` (``stages.*``);
3. **timm's own converter** for the model (unless the keys and shapes already match it
   exactly): the ``checkpoint_filter_fn`` of the model's timm module, as
   ``timm.models.load_checkpoint(..., filter_fn=...)`` and ``pretrained=True`` apply it: official BEiT-3 (``beit3.*``) into ``beit3_*``, OpenAI CLIP, DINOv2, ..., and position /
   patch embeddings resampled for ViT, DeiT, BEiT, Swin, ... at another resolution;
4. **classifier** keys the feature-only model lacks (``pretrained_cfg["classifier"]``) are
   dropped; missing and unexpected keys are counted, and with ``strict`` refused in one line
   that names the layouts tried.

:func:`state_dict_sha256` fingerprints a module's weights (names, dtypes, shapes and bytes);
feature files and their cache keys record it for the backbone and a neck.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import pickle
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "WEIGHT_SUFFIXES",
    "LoadReport",
    "Converter",
    "CONVERTERS",
    "read_state_dict",
    "read_weights_file",
    "unwrap_state_dict",
    "convert_state_dict",
    "timm_filter_fn",
    "load_weights",
    "state_dict_sha256",
]

_log = logging.getLogger(__name__)

#: File suffixes :func:`read_weights_file` reads: safetensors, or a torch pickle read with
#: ``torch.load(weights_only=True)``.
WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors", ".pth", ".pt", ".bin", ".ckpt", ".pth.tar")

#: Containers opened, in this order of preference, when a file holds a dict of dicts.
_CONTAINERS: tuple[str, ...] = ("state_dict", "model", "model_state_dict", "params", "teacher", "student")
#: Prefixes removed when every key carries them.
_ALL_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.", "model.")
#: Prefixes that select a sub-network (the rest of the file is dropped).
_SELECT_PREFIXES: tuple[str, ...] = ("encoder_q.", "base_encoder.", "backbone.", "encoder.", "emb_func.")


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What :func:`load_weights` did.

    Attributes:
        converted: the steps applied, in order (``"wrapper 'params'"``, ``"prefix 'encoder.'"``,
            ``"lukemelas-efficientnet"``, ``"timm vision_transformer.checkpoint_filter_fn:
            3 keys renamed, 1 resized"``, ...); empty when the file was already in the model's
            layout.
        dropped: keys of the file discarded on purpose (classifier, MoCo key encoder, DINO
            head, ...).
        missing: keys of the model the file does not provide (left at their initialisation).
        unexpected: keys of the file the model does not have (not loaded).
    """

    converted: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line: the conversions and the counts of dropped, missing and unexpected keys."""
        how = ", ".join(self.converted) if self.converted else "no conversion"
        return f"{how}; {len(self.dropped)} dropped, {len(self.missing)} missing, {len(self.unexpected)} unexpected"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for manifests)."""
        return {k: list(v) for k, v in dataclasses.asdict(self).items()}


# --------------------------------------------------------------------------- files


def read_weights_file(path: str | os.PathLike) -> Any:
    """The object stored in a weights file, tensors on the CPU (not yet unwrapped).

    ``.safetensors`` is read with ``safetensors.torch.load_file``; ``.pth``/``.pt``/``.bin``/
    ``.ckpt``/``.pth.tar`` with ``torch.load(weights_only=True)``, which refuses pickles that
    hold anything but tensors and plain containers.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unknown suffix, unreadable or unsafe file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    name = path.name.lower()
    if not name.endswith(WEIGHT_SUFFIXES):
        raise ValueError(f"unknown weights format {path.name!r}; expected one of {', '.join(WEIGHT_SUFFIXES)}")
    if name.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:
            raise ValueError(f"cannot read safetensors file {path}: {_first_line(exc)}") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL\s+([\w.]+)", str(exc), flags=re.IGNORECASE)
        if found is None:
            raise ValueError(f"cannot read weights file {path}: not a valid torch file") from exc
        raise ValueError(
            f"refusing to load {path}: it holds objects other than tensors and plain "
            f"containers ({found.group(1)}; read with torch.load(weights_only=True)); "
            f"save a plain state dict or .safetensors"
        ) from exc
    except Exception as exc:
        raise ValueError(f"cannot read weights file {path}: {_first_line(exc)}") from exc


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def unwrap_state_dict(
    obj: Any, model: nn.Module | None = None, *, label: str = "state dict"
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Open containers and strip / select prefixes (step 1 of :func:`load_weights`).

    Args:
        obj: what :func:`read_weights_file` returned, or a mapping of tensors.
        model: the target; a selecting prefix (``backbone.``, ``encoder.``, ...) is only
            applied when no parameter of the model starts with it. None: every rule applies.
        label: names the source in error messages.

    Returns:
        ``(state, steps, dropped)``: the flat state dict, the steps applied, the keys dropped.

    Raises:
        ValueError: no state dict inside (the message names the keys found).
    """
    steps: list[str] = []
    dropped: list[str] = []
    while isinstance(obj, Mapping) and not _is_state_dict(obj):
        key = next((k for k in _CONTAINERS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
            if tensors and len(tensors) >= len(obj) / 2:  # a state dict with a few stray scalars
                dropped.extend(sorted(str(k) for k in obj if k not in tensors))
                obj = tensors
                continue
            found = ", ".join(repr(k) for k in list(obj)[:6])
            raise ValueError(
                f"{label} holds no state dict (expected parameter names mapped to tensors, bare or "
                f"under one of {', '.join(repr(k) for k in _CONTAINERS)}; found keys {found})"
            )
        steps.append(f"wrapper {key!r}")
        obj = obj[key]
    if not _is_state_dict(obj):
        raise ValueError(f"{label} holds no state dict (expected a mapping of parameter names to tensors)")
    state = dict(obj)
    own = set(model.state_dict()) if model is not None else set()
    changed = True
    while changed:
        changed = False
        for prefix in _ALL_PREFIXES:
            if all(k.startswith(prefix) for k in state) and not any(k.startswith(prefix) for k in own):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                steps.append(f"prefix {prefix!r}")
                changed = True
        if set(state) & own and not (set(state) - own - set(_head_keys(state, model))):
            break  # already the model's layout
        for prefix in _SELECT_PREFIXES:
            inside = [k for k in state if k.startswith(prefix)]
            if inside and not any(k.startswith(prefix) for k in own):
                dropped.extend(sorted(k for k in state if not k.startswith(prefix)))
                state = {k[len(prefix) :]: state[k] for k in inside}
                steps.append(f"prefix {prefix!r}")
                changed = True
                break
    return state, steps, dropped


def _head_keys(state: Mapping[str, Any], model: nn.Module | None, extra: Sequence[str] = ()) -> list[str]:
    prefixes = (*(_classifier_prefixes(model) if model is not None else ()), *extra)
    return [k for k in state if any(k == p or k.startswith(p + ".") for p in prefixes)]


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, on the CPU, with wrappers and prefixes removed.

    See :func:`read_weights_file` (formats) and :func:`unwrap_state_dict` (the containers and
    prefixes handled).

    Raises:
        FileNotFoundError: no such file.
        ValueError: unknown suffix, unreadable or unsafe file, or no state dict inside.
    """
    state, _, _ = unwrap_state_dict(read_weights_file(path), label=str(path))
    return state


# --------------------------------------------------------------------------- community layouts


@dataclasses.dataclass(frozen=True)
class Converter:
    """A key layout timm does not know, and how to turn it into the target model's.

    Attributes:
        name: the name shown in :class:`LoadReport` and error messages.
        detect: ``detect(keys, model) -> bool``: whether a state dict with these keys is in this
            layout and the model is a target of it.
        convert: ``convert(state, model) -> state`` in the model's names (shapes not checked;
            :func:`load_weights` does).
        heads: key prefixes of the layout's own classifier, dropped when the model lacks them.
    """

    name: str
    detect: Callable[[set[str], nn.Module], bool]
    convert: Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]]
    heads: tuple[str, ...] = ()


def _arch_of(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return str(cfg.get("architecture", "")) if isinstance(cfg, Mapping) else ""


# torchvision ResNet -> timm ResNet: timm's ResNet uses torchvision's parameter names
# (conv1, bn1, layerN.M.convK / bnK / downsample.{0,1}, fc), so the conversion is the identity;
# the layout is recognised so that the report says where the file came from.


def _is_torchvision_resnet(keys: set[str], model: nn.Module) -> bool:
    return (
        type(model).__name__ == "ResNet"
        and type(model).__module__.startswith("timm.")
        and {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight"} <= keys
    )


def _torchvision_resnet(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    return dict(state)


# lukemelas EfficientNet(-Lite) (github.com/lukemelas/EfficientNet-PyTorch) -> timm tf_efficientnet*.
# Its blocks are numbered 0..N-1 across stages; timm's are blocks.S.I. A block with an expansion
# conv is timm's InvertedResidual, one without is DepthwiseSeparableConv, whose names differ.
_LM_EXPAND = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_LM_DS = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_LM_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def _is_lukemelas_efficientnet(keys: set[str], model: nn.Module) -> bool:
    return "_conv_stem.weight" in keys and "_blocks.0._depthwise_conv.weight" in keys


def _lukemelas_efficientnet(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    blocks = getattr(model, "blocks", None)
    if not hasattr(model, "conv_stem") or not isinstance(blocks, nn.Sequential):
        raise ValueError(
            f"a lukemelas EfficientNet file needs a timm EfficientNet model (tf_efficientnet_* or "
            f"tf_efficientnet_lite*), not {type(model).__name__}"
        )
    names = [f"blocks.{s}.{i}" for s, stage in enumerate(blocks) for i in range(len(stage))]
    n_file = len({k.split(".")[1] for k in state if k.startswith("_blocks.")})
    if n_file != len(names):
        raise ValueError(
            f"the lukemelas EfficientNet file has {n_file} blocks but {_arch_of(model) or 'the model'} "
            f"has {len(names)}; pick the matching tf_efficientnet variant"
        )
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            index, module, rest = int(parts[1]), parts[2], ".".join(parts[3:])
            table = _LM_EXPAND if f"_blocks.{index}._expand_conv.weight" in state else _LM_DS
            if module not in table:
                out[key] = value  # reported as unexpected
                continue
            out[f"{names[index]}.{table[module]}.{rest}"] = value
        elif parts[0] in _LM_TOP:
            out[".".join([_LM_TOP[parts[0]], *parts[1:]])] = value
        else:
            out[key] = value
    return out


# FEAT / RFS / easyfsl / LibFewShot ResNet-12: layer1..4, one block each, conv1..3 / bn1..3,
# downsample.{0,1}. resnet12_fsl has exactly these names; resnet12 names them stages.N / shortcut.
_FSL_KEY = re.compile(r"^layer(\d+)\.0\.(.*)$")


def _is_fsl_resnet12(keys: set[str], model: nn.Module) -> bool:
    return (
        "layer1.0.conv3.weight" in keys
        and "conv1.weight" not in keys
        and type(model).__name__ in ("ResNet12", "FewShotResNet12")
    )


def _fsl_resnet12(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    if type(model).__name__ == "FewShotResNet12":
        return dict(state)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = _FSL_KEY.match(key)
        if m is None:
            out[key] = value
            continue
        rest = m.group(2).replace("downsample.", "shortcut.")
        out[f"stages.{int(m.group(1)) - 1}.{rest}"] = value
    return out


#: The community layouts, tried in this order; the first whose ``detect`` is true converts.
#: Detection runs even when the keys already match the model, so that the report names the
#: layout (torchvision's ResNet and timm's share their names, so a timm ResNet file is reported
#: as ``torchvision-resnet`` too; the conversion is the identity either way).
CONVERTERS: tuple[Converter, ...] = (
    Converter("torchvision-resnet (timm's ResNet names)", _is_torchvision_resnet, _torchvision_resnet),
    Converter("lukemelas-efficientnet", _is_lukemelas_efficientnet, _lukemelas_efficientnet),
    Converter(
        "fsl-resnet12 (FEAT/RFS/easyfsl/LibFewShot)", _is_fsl_resnet12, _fsl_resnet12, heads=("classifier", "fc")
    ),
)


def timm_filter_fn(model: nn.Module) -> Callable[..., dict[str, torch.Tensor]] | None:
    """The checkpoint converter of a timm model's module (``checkpoint_filter_fn``), or None.

    timm passes this function as ``pretrained_filter_fn`` when it builds the model, and
    applies it to every checkpoint it loads (hub, URL or ``pretrained_cfg_overlay=dict(file=...)``).
    """
    module_name = type(model).__module__
    if not module_name.startswith("timm.models."):
        return None
    module = sys.modules.get(module_name)
    for name in ("checkpoint_filter_fn", "_filter_fn"):
        fn = getattr(module, name, None)
        if callable(fn):
            return fn
    return None


def convert_state_dict(
    state: dict[str, torch.Tensor], model: nn.Module, *, label: str = "state dict"
) -> tuple[dict[str, torch.Tensor], list[str], tuple[str, ...]]:
    """Steps 2 and 3 of :func:`load_weights`: a community converter, then timm's filter.

    Returns:
        ``(state, steps, heads)``: the state in the model's names, the steps applied and the
        classifier prefixes of the detected layout (dropped when the model lacks them).

    Raises:
        ValueError: a detected layout that does not fit the model, or timm's filter failing.
    """
    steps: list[str] = []
    heads: tuple[str, ...] = ()
    keys = set(state)
    for conv in CONVERTERS:
        if conv.detect(keys, model):
            state = conv.convert(state, model)
            steps.append(conv.name)
            heads = conv.heads
            break
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    native = set(state) == set(own) and all(tuple(v.shape) == own[k] for k, v in state.items())
    fn = None if native else timm_filter_fn(model)  # a file in the model's exact layout is left alone
    if fn is not None:
        before = {k: tuple(v.shape) for k, v in state.items()}
        try:
            try:
                out = fn(dict(state), model)
            except TypeError:  # filters of one argument
                out = fn(dict(state))
        except ValueError:
            raise
        except Exception as exc:
            raise ValueError(
                f"{label}: timm's {type(model).__module__}.{fn.__name__} failed: {_first_line(exc)}"
            ) from exc
        renamed = len(set(out) - set(before))
        resized = sum(1 for k, v in out.items() if k in before and tuple(v.shape) != before[k])
        removed = len(set(before) - set(out))
        if renamed or resized or removed:
            what = [
                f"{n} keys {w}" for n, w in ((renamed, "renamed/new"), (resized, "resized"), (removed, "removed")) if n
            ]
            steps.append(f"timm {type(model).__module__.rsplit('.', 1)[-1]}.{fn.__name__}: {', '.join(what)}")
        state = dict(out)
    return state, steps, heads


# --------------------------------------------------------------------------- loading


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    classifier = cfg.get("classifier") if isinstance(cfg, Mapping) else None
    if not classifier:
        return ()
    return (classifier,) if isinstance(classifier, str) else tuple(classifier)


def _tried() -> str:
    names = ["timm native", "timm checkpoint_filter_fn", *(c.name for c in CONVERTERS)]
    return ", ".join(names)


def load_weights(
    model: nn.Module,
    source: str | os.PathLike | Mapping[str, Any],
    *,
    strict: bool = True,
) -> LoadReport:
    """Load a weights file or state dict into ``model``, converting known layouts.

    The steps (wrappers and prefixes, community layouts, timm's ``checkpoint_filter_fn``,
    classifier removal) are described in the module docstring; the report lists each one
    applied. Shapes must match after conversion.

    Args:
        model: a timm model (or any module; only timm models get timm's filter).
        source: a path (see :func:`read_weights_file`) or a mapping (a state dict, or a
            checkpoint dict holding one).
        strict: raise when keys are missing or unexpected after conversion; otherwise load
            what matches and report the rest.

    Returns:
        :class:`LoadReport`.

    Raises:
        ValueError: shape mismatches, a layout that does not fit, or (``strict``) missing /
            unexpected keys; one line naming the counts, examples and the layouts tried.
        FileNotFoundError: ``source`` is a path that does not exist.
    """
    label = str(source) if isinstance(source, (str, os.PathLike)) else "state dict"
    obj = read_weights_file(source) if isinstance(source, (str, os.PathLike)) else source
    state, steps, dropped = unwrap_state_dict(obj, model, label=label)
    state, more, heads = convert_state_dict(state, model, label=label)
    steps += more
    own = model.state_dict()
    head = [k for k in _head_keys(state, model, heads) if k not in own]
    for k in head:
        del state[k]
    dropped += head
    arch = _arch_of(model) or type(model).__name__
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in state
        if k in own and state[k].shape != own[k].shape
    ]
    via = f" after {', '.join(steps)}" if steps else ""
    if mismatched:
        raise ValueError(
            f"{label} does not fit {arch}{via}: {len(mismatched)} shape mismatches "
            f"(file vs model): {_preview(mismatched)}"
        )
    missing = tuple(sorted(k for k in own if k not in state))
    unexpected = tuple(sorted(k for k in state if k not in own))
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_preview(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_preview(unexpected)})")
        known = f"converted by {', '.join(steps)}" if steps else f"no known layout matched (tried: {_tried()})"
        raise ValueError(f"{label} does not match {arch} ({known}): {'; '.join(parts)}")
    model.load_state_dict(state, strict=False)
    report = LoadReport(converted=tuple(steps), dropped=tuple(sorted(dropped)), missing=missing, unexpected=unexpected)
    _log.info("loaded %s into %s: %s", label, arch, report.summary())
    return report


def _preview(items: Sequence[str], n: int = 4) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... {len(items) - n} more" if len(items) > n else "")


# --------------------------------------------------------------------------- fingerprint


def state_dict_sha256(model: nn.Module) -> str:
    """SHA-256 of a module's state dict (names, dtypes, shapes and bytes, in sorted order)."""
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        t = value.detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
