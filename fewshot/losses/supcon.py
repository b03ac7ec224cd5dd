"""SupCon: the supervised contrastive losses of Khosla et al. (2020), L_out and L_in forms."""

from __future__ import annotations

import torch
from torch import Tensor

from fewshot.losses._pairwise import (
    Block,
    masked_logits,
    pairwise_loss,
    safe_reciprocal,
    segment_exp,
    segment_sum,
)
from fewshot.losses._validate import check_embeddings, check_labels, check_temperature

__all__ = ["supcon_loss", "supcon_in_loss"]


def supcon_loss(embeddings: Tensor, labels: Tensor, temperature: float = 0.5) -> Tensor:
    r"""Supervised contrastive loss, ``L_out`` form (Khosla et al., NeurIPS 2020, Eq. 2).

    With L2-normalised rows and ``s_ij = z_i . z_j / tau``, for each anchor ``i`` with a
    non-empty set ``P(i)`` of positives (rows ``j != i`` with the same label)::

        L_i = -(1/|P(i)|) sum_{p in P(i)} log( exp(s_ip) / sum_{a != i} exp(s_ia) )

    The loss is the mean of ``L_i`` over anchors with a positive; anchors without one are
    excluded. The paper's extra factor ``tau / tau_base`` is not applied.

    Args:
        embeddings: ``(B, d)`` floating-point tensor (any norm, any float dtype).
        labels: ``(B,)`` integer class labels.
        temperature: ``tau > 0``. Default 0.5.

    Returns:
        A scalar tensor, float32 (float64 for float64 input). If no anchor has a positive it
        is a zero still connected to the graph, and a ``NoPositivePairsWarning`` is issued.

    Raises:
        TypeError: ``embeddings`` not a floating-point tensor, ``labels`` not integers.
        ValueError: ``embeddings`` not 2-D, containing NaN/Inf or an all-zero row; ``labels``
            not 1-D or of a different length; ``temperature <= 0``.
    """
    embeddings = check_embeddings(embeddings)
    labels = check_labels(labels, embeddings)
    temperature = check_temperature(temperature)
    return pairwise_loss(embeddings, labels, temperature, supcon_rows, "supcon_loss")


def supcon_rows(sim: Tensor, block: Block, row_weight: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Per-anchor SupCon losses and weighted ``dL_i/ds_ij`` (see ``fewshot.losses._pairwise``)."""
    b = sim.shape[0]
    inv_pos = safe_reciprocal(block.n_pos)
    mean_pos = segment_sum(sim.view(-1)[block.flat], block.rows, b).mul_(inv_pos)
    e_all, m_all = masked_logits(sim, block, negatives_only=False)  # overwrites sim
    e_all.exp_()  # exp(s_ia - m_i) for a != i
    sum_all = e_all.sum(dim=1)
    losses = m_all + sum_all.log() - mean_pos
    if row_weight is None:
        return losses, None
    # dL_i/ds_ij = softmax_{a != i}(s_i)_j - [j in P(i)] / |P(i)|
    grad = e_all.mul_((row_weight * safe_reciprocal(sum_all))[:, None])
    flat = grad.view(-1)
    flat[block.flat] = flat[block.flat] - (row_weight * inv_pos)[block.rows]
    return losses, grad


def supcon_in_loss(embeddings: Tensor, labels: Tensor, temperature: float = 0.5) -> Tensor:
    r"""Supervised contrastive loss, ``L_in`` form (Khosla et al., NeurIPS 2020, Eq. 3).

    With L2-normalised rows and ``s_ij = z_i . z_j / tau``, for each anchor ``i`` with a
    non-empty set ``P(i)`` of positives::

        L_i = -log( (1/|P(i)|) sum_{p in P(i)} exp(s_ip) / sum_{a != i} exp(s_ia) )

    This is SCHaNe (:func:`~fewshot.losses.schane_loss`) with every hard-negative weight
    ``beta_ik`` fixed to 1: ``pos_i + neg_i`` is then the sum over all ``a != i``. It is the
    "CE + label-aware CL, no hard-negative mining" row of CLCE's Table 4 (objective
    ``"supcon-in"``), so SCHaNe vs ``supcon-in`` isolates the hard-negative weighting, while
    SCHaNe vs ``supcon`` (``L_out``) also changes where the positives' average is taken.

    The loss is the mean of ``L_i`` over anchors with a positive; anchors without one are
    excluded.

    Args:
        embeddings: ``(B, d)`` floating-point tensor (any norm, any float dtype).
        labels: ``(B,)`` integer class labels.
        temperature: ``tau > 0``. Default 0.5.

    Returns:
        A scalar tensor, float32 (float64 for float64 input). If no anchor has a positive it
        is a zero still connected to the graph, and a ``NoPositivePairsWarning`` is issued.

    Raises:
        TypeError: ``embeddings`` not a floating-point tensor, ``labels`` not integers.
        ValueError: ``embeddings`` not 2-D, containing NaN/Inf or an all-zero row; ``labels``
            not 1-D or of a different length; ``temperature <= 0``.
    """
    embeddings = check_embeddings(embeddings)
    labels = check_labels(labels, embeddings)
    temperature = check_temperature(temperature)
    return pairwise_loss(embeddings, labels, temperature, supcon_in_rows, "supcon_in_loss")


def supcon_in_rows(sim: Tensor, block: Block, row_weight: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Per-anchor SupCon ``L_in`` losses and weighted ``dL_i/ds_ij``."""
    b = sim.shape[0]
    e_pos, m_pos, sum_pos = segment_exp(sim.view(-1)[block.flat], block.rows, b)
    e_all, m_all = masked_logits(sim, block, negatives_only=False)  # overwrites sim
    e_all.exp_()  # exp(s_ia - m_i) for a != i
    sum_all = e_all.sum(dim=1)
    has_pos = block.n_pos > 0
    # L_i = log|P(i)| + LSE_{a != i} s_ia - LSE_{p in P(i)} s_ip
    losses = torch.where(
        has_pos,
        block.n_pos.clamp_min(1).log()
        + m_all
        + sum_all.log()
        - m_pos
        - sum_pos.clamp_min(torch.finfo(sum_pos.dtype).tiny).log(),
        0.0,
    )
    if row_weight is None:
        return losses, None
    # dL_i/ds_ij = softmax_{a != i}(s_i)_j - [j in P(i)] softmax_{P(i)}(s_i)_j
    grad = e_all.mul_((row_weight * safe_reciprocal(sum_all))[:, None])
    flat = grad.view(-1)
    flat[block.flat] = flat[block.flat] - e_pos.mul_((row_weight * safe_reciprocal(sum_pos))[block.rows])
    return losses, grad
