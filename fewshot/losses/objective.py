"""The training objective: cross-entropy blended with a contrastive term, and its registry."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fewshot.losses._validate import check_beta, check_lam, check_temperature
from fewshot.losses.hscl import hscl_loss
from fewshot.losses.schane import schane_loss
from fewshot.losses.simclr import simclr_loss
from fewshot.losses.supcon import supcon_in_loss, supcon_loss

__all__ = ["Objective", "ObjectiveOutput", "ObjectiveSpec", "OBJECTIVES", "create_objective", "list_objectives"]


@dataclass(frozen=True)
class ObjectiveSpec:
    """What a registered objective is made of.

    Attributes:
        name: registry name (``"ce"``, ``"schane"``, ...).
        loss: the contrastive loss function, ``None`` for plain cross-entropy.
        target: what defines positives: ``"labels"`` or ``"instance_ids"``.
        options: keyword arguments of ``loss`` besides ``temperature`` that
            :class:`Objective` accepts as ``**loss_kwargs``.
        summary: one line for ``--help`` texts and tables.
    """

    name: str
    loss: Callable[..., Tensor] | None
    target: str = "labels"
    options: tuple[str, ...] = ()
    summary: str = ""


#: Objectives by name, for the CLI and the fine-tuning stage.
OBJECTIVES: dict[str, ObjectiveSpec] = {
    "ce": ObjectiveSpec("ce", None, summary="cross-entropy alone"),
    "schane": ObjectiveSpec(
        "schane",
        schane_loss,
        options=("detach_weights",),
        summary="CE + SCHaNe (supervised contrastive with hard-negative weights)",
    ),
    "supcon": ObjectiveSpec("supcon", supcon_loss, summary="CE + SupCon (Khosla et al. 2020, L_out)"),
    "supcon-in": ObjectiveSpec(
        "supcon-in",
        supcon_in_loss,
        summary="CE + SupCon L_in (= SCHaNe with beta = 1: label-aware CL without hard negatives)",
    ),
    "simclr": ObjectiveSpec(
        "simclr",
        simclr_loss,
        target="instance_ids",
        summary="CE + NT-Xent over views of the same image (SimCLR)",
    ),
    "hscl": ObjectiveSpec(
        "hscl",
        hscl_loss,
        options=("beta", "detach_weights"),
        summary="CE + H-SCL (Jiang et al. 2022, hard negatives for SCL)",
    ),
}


def list_objectives(pattern: str = "*") -> list[str]:
    """Registered objective names matching the shell-style ``pattern`` (``"supcon*"``), in
    registry order (the CE baseline first), like :func:`fewshot.list_classifiers`."""
    return [name for name in OBJECTIVES if fnmatch.fnmatchcase(name, pattern)]


def _spec(name: Any) -> ObjectiveSpec:
    spec = OBJECTIVES.get(name) if isinstance(name, str) else None
    if spec is None:
        names = ", ".join(sorted(OBJECTIVES))
        raise ValueError(f"unknown objective {name!r}; choose one of: {names}")
    return spec


class ObjectiveOutput(NamedTuple):
    """The value of an :class:`Objective`: the total to optimise and its unweighted parts."""

    total: Tensor
    ce: Tensor
    contrastive: Tensor


class Objective(nn.Module):
    r"""``(1 - lam) * CE(logits, labels) + lam * contrastive(embeddings, ...)``.

    Args:
        contrastive: a name from :data:`OBJECTIVES` (``"schane"``, ``"supcon"``,
            ``"supcon-in"``, ``"simclr"``, ``"hscl"``), or ``None``/``"ce"`` for plain cross-entropy. Default ``"schane"``.
        lam: weight of the contrastive term, in ``[0, 1]``. Default 0.9. ``lam = 0`` (or no
            contrastive term) is plain cross-entropy, and the contrastive term is not computed;
            ``lam = 1`` is the contrastive term alone (CE is then computed without gradient,
            for logging only).
        temperature: ``tau > 0`` of the contrastive term. Default 0.5.
        **loss_kwargs: options of the contrastive loss: ``detach_weights`` (schane, hscl),
            ``beta`` (hscl).

    Raises:
        ValueError: unknown ``contrastive`` name, ``lam`` outside [0, 1], ``temperature <= 0``,
            ``beta < 0``.
        TypeError: an option the contrastive loss does not take.

    Example:
        >>> objective = Objective("schane", lam=0.9, temperature=0.5)
        >>> out = objective(logits, embeddings, labels)      # doctest: +SKIP
        >>> out.total.backward()                              # doctest: +SKIP
        >>> print(out.ce.item(), out.contrastive.item())      # doctest: +SKIP
    """

    def __init__(
        self,
        contrastive: str | None = "schane",
        lam: float = 0.9,
        temperature: float = 0.5,
        **loss_kwargs: Any,
    ) -> None:
        super().__init__()
        spec = _spec("ce" if contrastive is None else contrastive)
        unknown = sorted(set(loss_kwargs) - set(spec.options))
        if unknown:
            accepted = ", ".join(spec.options) or "none"
            raise TypeError(
                f"objective {spec.name!r} got unexpected option(s) {', '.join(unknown)}; accepted: {accepted}"
            )
        if "beta" in loss_kwargs:
            loss_kwargs["beta"] = check_beta(loss_kwargs["beta"])
        self.contrastive = None if spec.loss is None else spec.name
        self.lam = check_lam(lam)
        self.temperature = check_temperature(temperature)
        self.loss_kwargs = dict(loss_kwargs)
        self._spec = spec

    @property
    def uses_contrastive(self) -> bool:
        """Whether :meth:`forward` computes the contrastive term (a loss is set and ``lam > 0``)."""
        return self.contrastive is not None and self.lam > 0

    def forward(
        self,
        logits: Tensor,
        embeddings: Tensor | None,
        labels: Tensor,
        instance_ids: Tensor | None = None,
        *,
        embedding_labels: Tensor | None = None,
        embedding_instance_ids: Tensor | None = None,
        ce_targets: Tensor | None = None,
    ) -> ObjectiveOutput:
        """Compute the objective.

        Args:
            logits: ``(N, C)`` class scores of the local batch.
            embeddings: ``(B, d)`` projections fed to the contrastive term. ``B`` may exceed
                ``N``: the fine-tuning stage all-gathers embeddings across processes for global
                negatives while logits stay local. May be ``None`` when the contrastive term is
                not computed.
            labels: ``(N,)`` integer class labels of ``logits``.
            instance_ids: ``(N,)`` integer source-image ids (needed by ``"simclr"``).
            embedding_labels: ``(B,)`` labels of the rows of ``embeddings``; defaults to
                ``labels`` (so pass it whenever ``B != N``).
            embedding_instance_ids: ``(B,)`` instance ids of the rows of ``embeddings``;
                defaults to ``instance_ids``.
            ce_targets: ``(N, C)`` soft targets (Mixup/CutMix, label smoothing) for the
                cross-entropy term instead of ``labels``; ``labels`` still define the
                contrastive positives.

        Returns:
            :class:`ObjectiveOutput` ``(total, ce, contrastive)``: ``ce`` and ``contrastive``
            are the unweighted parts (``contrastive`` is a zero tensor when not computed).

        Raises:
            ValueError: shapes that do not match, a missing ``instance_ids`` for ``"simclr"``,
                and every input error of the contrastive loss.
            TypeError: non-integer labels or ids, non-float embeddings.
        """
        labels = self._check_logits(logits, labels)
        if ce_targets is not None and tuple(ce_targets.shape) != tuple(logits.shape):
            raise ValueError(
                f"ce_targets must have the shape of logits {tuple(logits.shape)}, got {tuple(ce_targets.shape)}"
            )
        ce_target = labels if ce_targets is None else ce_targets.to(logits.dtype)
        if not self.uses_contrastive:
            ce = F.cross_entropy(logits, ce_target)
            return ObjectiveOutput(ce, ce, ce.new_zeros(()))

        target = self._target(embeddings, labels, instance_ids, embedding_labels, embedding_instance_ids)
        loss = self._spec.loss
        contrastive = loss(embeddings, target, temperature=self.temperature, **self.loss_kwargs)
        if self.lam == 1.0:
            with torch.no_grad():
                ce = F.cross_entropy(logits, ce_target)
            return ObjectiveOutput(contrastive, ce, contrastive)
        ce = F.cross_entropy(logits, ce_target)
        total = (1.0 - self.lam) * ce + self.lam * contrastive
        return ObjectiveOutput(total, ce, contrastive)

    def _target(
        self,
        embeddings: Tensor | None,
        labels: Tensor,
        instance_ids: Tensor | None,
        embedding_labels: Tensor | None,
        embedding_instance_ids: Tensor | None,
    ) -> Tensor:
        """The labels or ids that define the positives among the rows of ``embeddings``."""
        if self._spec.target == "instance_ids":
            target, name = embedding_instance_ids, "embedding_instance_ids"
            if target is None:
                target, name = instance_ids, "instance_ids"
            if target is None:
                raise ValueError(
                    f"objective {self.contrastive!r} needs instance_ids (or embedding_instance_ids), got None"
                )
        else:
            target, name = embedding_labels, "embedding_labels"
            if target is None:
                target, name = labels, "labels"
        if embeddings is None:
            raise ValueError(f"objective {self.contrastive!r} with lam={self.lam} needs embeddings, got None")
        n_rows, n_targets = _length(embeddings), _length(target)
        if n_rows is not None and n_targets is not None and n_rows != n_targets:
            hint = "" if name.startswith("embedding_") else (f"; pass embedding_{name} for all-gathered embeddings")
            raise ValueError(f"embeddings has {n_rows} rows but {name} has {n_targets} entries{hint}")
        return target

    @staticmethod
    def _check_logits(logits: Any, labels: Any) -> Tensor:
        if not isinstance(logits, Tensor) or not logits.is_floating_point():
            got = getattr(logits, "dtype", type(logits).__name__)
            raise TypeError(f"logits must be a floating-point tensor, got {got}")
        if logits.dim() != 2:
            raise ValueError(f"logits must be 2-D (N, C), got shape {tuple(logits.shape)}")
        if not isinstance(labels, Tensor):
            labels = torch.as_tensor(labels)
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TypeError(f"labels must have an integer dtype, got {labels.dtype}")
        if labels.dim() != 1:
            raise ValueError(f"labels must be 1-D (N,), got shape {tuple(labels.shape)}")
        if labels.shape[0] != logits.shape[0]:
            raise ValueError(f"logits has {logits.shape[0]} rows but labels has {labels.shape[0]} entries")
        return labels.to(device=logits.device, dtype=torch.long)

    def extra_repr(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self.loss_kwargs.items())
        return f"contrastive={self.contrastive!r}, lam={self.lam}, temperature={self.temperature}{options}"


def _length(x: Any) -> int | None:
    """Leading dimension of a tensor with at least one dimension, else None (checked later)."""
    return int(x.shape[0]) if isinstance(x, Tensor) and x.dim() >= 1 else None


def create_objective(name: str, lam: float = 0.9, temperature: float = 0.5, **kwargs: Any) -> Objective:
    """Build the registered objective ``name`` (see :data:`OBJECTIVES`).

    ``"ce"`` is plain cross-entropy whatever ``lam``; other names give
    ``Objective(name, lam, temperature, **kwargs)``.

    Raises:
        ValueError: ``name`` not in :data:`OBJECTIVES` (the message lists the valid names), and
            every error of :class:`Objective`.
    """
    spec = _spec(name)
    contrastive = None if spec.loss is None else spec.name
    return Objective(contrastive, lam=lam, temperature=temperature, **kwargs)
