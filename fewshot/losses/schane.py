"""SCHaNe: supervised contrastive learning with hard negatives (the objective under study)."""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from fewshot.losses._pairwise import (
    Block,
    masked_logits,
    pairwise_loss,
    safe_reciprocal,
    segment_exp,
)
from fewshot.losses._validate import check_embeddings, check_labels, check_temperature

__all__ = ["schane_loss"]


def schane_loss(
    embeddings: Tensor,
    labels: Tensor,
    temperature: float = 0.5,
    detach_weights: bool = False,
) -> Tensor:
    r"""SCHaNe loss ``L_SCLN`` (SCHaNe paper, Eq. 3-4; identical to ``L_LACLN``, CLCE paper, Eq. 3).

    The rows of ``embeddings`` are L2-normalised and ``s_ij = z_i . z_j / tau``. A positive of
    anchor ``i`` is a row ``j != i`` with the same label (set ``P(i)``), a negative a row with a
    different label (set ``N(i)``). For each anchor with at least one positive:

    - ``pos_i = sum_{p in P(i)} exp(s_ip)``
    - ``beta_ik = |N(i)| exp(s_ik) / sum_{k' in N(i)} exp(s_ik')`` for each negative ``k``
    - ``neg_i = sum_{k in N(i)} beta_ik exp(s_ik)``, and ``neg_i = 0`` if ``N(i)`` is empty
    - ``L_i = -log( (1/|P(i)|) pos_i / (pos_i + neg_i) )`` (``1/|P(i)|`` inside the log, as printed)

    The loss is the **mean** of ``L_i`` over anchors with a positive. The papers write a sum; the
    mean keeps the lambda-balance with the cross-entropy term, which is itself a batch mean.

    It is computed in log space, ``log neg_i = log|N(i)| + LSE_k(2 s_ik) - LSE_k(s_ik)``, in
    float32 at least (float64 for float64 input, float32 for half/bf16 input and under autocast):
    finite and accurate for any temperature and embedding norm, ``O(B^2)`` memory, ``O(B^2 d)``
    time.

    Args:
        embeddings: ``(B, d)`` floating-point tensor (any norm, any float dtype).
        labels: ``(B,)`` integer class labels.
        temperature: ``tau > 0``. Default 0.5.
        detach_weights: if True, ``beta_ik`` is treated as a constant (no gradient flows through
            it); the default lets the gradient flow through it, as the formula is written.

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
    kernel = partial(_schane_rows, detach_weights=bool(detach_weights))
    return pairwise_loss(embeddings, labels, temperature, kernel, "schane_loss")


def _schane_rows(
    sim: Tensor, block: Block, row_weight: Tensor | None, *, detach_weights: bool
) -> tuple[Tensor, Tensor | None]:
    """Per-anchor SCHaNe losses and weighted ``dL_i/ds_ij`` (see ``fewshot.losses._pairwise``)."""
    b = sim.shape[0]
    e_pos, m_pos, sum_pos = segment_exp(sim.view(-1)[block.flat], block.rows, b)
    e_neg, m_neg = masked_logits(sim, block)  # overwrites sim
    e_neg.exp_()  # exp(s_ik - m_i) on N(i), 0 elsewhere
    sum_neg = e_neg.sum(dim=1)
    sum_neg2 = torch.linalg.vecdot(e_neg, e_neg)  # sum_k exp(2 (s_ik - m_i))
    has_neg = block.n_neg > 0

    log_pos = m_pos + sum_pos.log()
    log_neg = torch.where(has_neg, block.n_neg.log() + m_neg + sum_neg2.log() - sum_neg.log(), float("-inf"))
    gap = log_neg - log_pos  # L_i = log|P(i)| + softplus(gap_i)
    losses = block.n_pos.log() + torch.logaddexp(gap, torch.zeros_like(gap))
    if row_weight is None:
        return losses, None

    # dL_i/dlog neg_i = sigmoid(gap_i) = -dL_i/dlog pos_i; 0 on rows lacking positives or negatives.
    w = torch.where((block.n_pos > 0) & has_neg, torch.sigmoid(gap), 0.0) * row_weight
    # dlog pos_i/ds_ip = softmax over P(i); dlog neg_i/ds_ik = 2 softmax(2s)_k - softmax(s)_k over
    # N(i), or softmax(2s)_k alone when the weights beta_ik are constants.
    if detach_weights:
        grad = e_neg.square_().mul_((w * safe_reciprocal(sum_neg2))[:, None])
    else:
        grad = e_neg.mul((2.0 * w * safe_reciprocal(sum_neg2))[:, None])
        grad.sub_((w * safe_reciprocal(sum_neg))[:, None]).mul_(e_neg)
    grad.view(-1)[block.flat] = e_pos.mul_((w * safe_reciprocal(sum_pos)).neg_()[block.rows])
    return losses, grad
