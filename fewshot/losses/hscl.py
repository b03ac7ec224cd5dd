"""H-SCL: supervised contrastive learning with hard negative samples (Jiang et al., 2022)."""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from fewshot.losses._pairwise import (
    Block,
    masked_logits,
    pairwise_loss,
    safe_reciprocal,
    segment_sum,
)
from fewshot.losses._validate import check_beta, check_embeddings, check_labels, check_temperature

__all__ = ["hscl_loss"]


def hscl_loss(
    embeddings: Tensor,
    labels: Tensor,
    temperature: float = 0.5,
    beta: float = 1.0,
    detach_weights: bool = False,
) -> Tensor:
    r"""H-SCL loss of Jiang, Nguyen, Ishwar & Aeron, "Supervised Contrastive Learning with Hard
    Negative Samples", arXiv:2209.00078 (2022); official code github.com/rjiang03/H-SCL.

    H-SCL draws the negatives of an anchor from its *class-conditional* negative distribution
    (rows with a different label) tilted by the hardening function ``eta(t) = exp(beta t)``, and
    estimates the tilted expectation inside a batch with self-normalised importance weights, as
    Robinson et al. (ICLR 2021, "Contrastive Learning with Hard Negative Samples") do for the
    unsupervised case. With L2-normalised rows and ``s_ij = z_i . z_j / tau``, for anchor ``i``
    with positives ``P(i)`` (same label, ``j != i``) and negatives ``N(i)`` (other labels)::

        w_ik  = exp(beta s_ik) / sum_{k' in N(i)} exp(beta s_ik')             (k in N(i))
        neg_i = |N(i)| sum_{k in N(i)} w_ik exp(s_ik)
        L_ip  = -log( exp(s_ip) / (exp(s_ip) + neg_i) )                       (p in P(i))
        L_i   = (1/|P(i)|) sum_{p in P(i)} L_ip

    and the loss is the mean of ``L_i`` over anchors with a positive.

    Choices where the paper leaves room, each set beside what the authors' code does:

    - *How beta enters*: the importance weight is ``exp(beta s_ik)`` with ``s`` already divided
      by ``tau`` (the official code raises ``exp(s)`` to the power ``beta``; Robinson et al. do
      the same). ``beta = 0`` gives uniform weights: the un-hardened supervised loss (SCL in
      the paper), with one positive and the negatives in each denominator.
    - *Default beta = 1.0*: the ``--beta`` default of the official ``main/main.py`` as first
      uploaded (commit 29c6ff5, 2022-08-15); a later commit that day (f06c6e6) set it to 5,
      and the current version (commit 3e3d883, 2022-08-20) defaults to 0.5. The paper tunes
      beta per data set; so should you.
    - *Normalisation*: the tilted mean of ``exp(s_ik)`` is multiplied by ``|N(i)|``, the number of
      negatives of the anchor (the ``Q`` of Robinson et al. with ``Q = N``), so beta = 0 recovers
      ``sum_k exp(s_ik)`` exactly. The official code multiplies by the constant ``B - 2`` for
      ``B`` rows (every row but the anchor and one positive), which equals ``|N(i)|`` only when
      each anchor has a single positive.
    - *Positives*: one positive per term (the paper's loss is defined on an
      (anchor, positive, negatives) tuple), so other positives appear in neither the numerator
      nor the denominator: the ``L_out``-like form, not the ``L_in`` form. Terms are averaged per
      anchor, then over anchors (the official code averages over all pairs, which weighs an
      anchor by its number of positives; the two agree when every anchor has as many
      positives, as in batches with the same number of rows per class).
    - *No debiasing*: labels are known, so Robinson et al.'s positive-prior correction is not
      used (their ``tau_plus = 0``).
    - *Gradient through the weights*: it flows by default, as in the official code's default
      (``--gradient_imp True``); ``detach_weights=True`` treats ``w_ik`` as constants, as its
      ``gradient_imp=False``. The current official ``main/main.py`` (commit 3e3d883) has no
      switch on beta; only its first two versions (29c6ff5, f06c6e6) also detached the weights
      whenever ``beta < 1``, which is not copied here.
    - An anchor without negatives has ``neg_i = 0`` (its terms are 0), as in
      :func:`~fewshot.losses.schane_loss`.

    With ``beta = 1`` and a single positive per anchor this coincides with
    :func:`~fewshot.losses.schane_loss`.

    Args:
        embeddings: ``(B, d)`` floating-point tensor (any norm, any float dtype).
        labels: ``(B,)`` integer class labels.
        temperature: ``tau > 0``. Default 0.5 (the value the official code hard-codes).
        beta: hardness ``>= 0``. Default 1.0.
        detach_weights: stop the gradient through the importance weights. Default False.

    Returns:
        A scalar tensor, float32 (float64 for float64 input). If no anchor has a positive it
        is a zero still connected to the graph, and a ``NoPositivePairsWarning`` is issued.

    Raises:
        TypeError: ``embeddings`` not a floating-point tensor, ``labels`` not integers.
        ValueError: ``embeddings`` not 2-D, containing NaN/Inf or an all-zero row; ``labels``
            not 1-D or of a different length; ``temperature <= 0``; ``beta < 0``.
    """
    embeddings = check_embeddings(embeddings)
    labels = check_labels(labels, embeddings)
    temperature = check_temperature(temperature)
    beta = check_beta(beta)
    kernel = partial(_hscl_rows, beta=beta, detach_weights=bool(detach_weights))
    return pairwise_loss(embeddings, labels, temperature, kernel, "hscl_loss")


def _hscl_rows(
    sim: Tensor, block: Block, row_weight: Tensor | None, *, beta: float, detach_weights: bool
) -> tuple[Tensor, Tensor | None]:
    """Per-anchor H-SCL losses and weighted ``dL_i/ds_ij`` (see ``fewshot.losses._pairwise``)."""
    b = sim.shape[0]
    s_pos = sim.view(-1)[block.flat]
    logits, m_neg = masked_logits(sim, block)  # s_ik - m_i on N(i), -inf elsewhere; overwrites sim
    if beta == 0.0:
        e_weight = None
        e_hard = logits.exp_()  # exp((1 + beta)(s - m)); the weights are uniform
        sum_hard = e_hard.sum(dim=1)
        log_neg = m_neg + sum_hard.log()
    else:
        e_weight = torch.mul(logits, beta).exp_()  # exp(beta (s - m))
        e_hard = logits.mul_(1.0 + beta).exp_()  # exp((1 + beta)(s - m))
        sum_weight, sum_hard = e_weight.sum(dim=1), e_hard.sum(dim=1)
        log_neg = block.n_neg.log() + m_neg + sum_hard.log() - sum_weight.log()
    log_neg = torch.where(block.n_neg > 0, log_neg, float("-inf"))

    inv_pos = safe_reciprocal(block.n_pos)
    gap = log_neg[block.rows] - s_pos  # L_ip = softplus(gap_ip)
    softplus = torch.logaddexp(gap, gap.new_zeros(()))
    losses = segment_sum(softplus, block.rows, b).mul_(inv_pos)
    if row_weight is None:
        return losses, None

    # dL_i/ds_ip = -sigmoid(gap_ip)/|P(i)|; dL_i/dlog neg_i = c_i = sum_p sigmoid(gap_ip)/|P(i)|
    grad_pos = torch.sigmoid(gap).mul_((row_weight * inv_pos)[block.rows])
    c = segment_sum(grad_pos, block.rows, b)
    # dlog neg_i/ds_ik = (1+beta) softmax((1+beta)s)_k - beta softmax(beta s)_k over N(i),
    # or softmax((1+beta)s)_k alone when the weights are constants.
    hard = 1.0 if detach_weights or beta == 0.0 else 1.0 + beta
    grad = e_hard.mul_((hard * c * safe_reciprocal(sum_hard))[:, None])
    if e_weight is not None and not detach_weights:
        grad.sub_(e_weight.mul_((beta * c * safe_reciprocal(sum_weight))[:, None]))
    grad.view(-1)[block.flat] = grad_pos.neg_()
    return losses, grad
