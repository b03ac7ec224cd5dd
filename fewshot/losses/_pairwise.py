"""Shared machinery of the contrastive losses: one similarity matrix, analytic gradients.

Every loss in this package has the same shape. The rows are L2-normalised,
``s_ij = z_i . z_j / tau`` is formed once, and each anchor ``i`` gets a loss ``L_i`` that
depends only on row ``i`` of ``s``, split into positives ``P(i)`` (same label, ``j != i``) and
negatives ``N(i)`` (other labels). The batch loss is the mean of ``L_i`` over the anchors that
have at least one positive.

Positives are handled as index lists (:class:`Pairs`, built by sorting the labels); no boolean
``(B, B)`` mask is built. The rows are processed in blocks (:class:`Block`) of ``b`` rows whose
``(b, B)`` similarity block fits in cache (4 MiB on a CPU): a block is one matmul, then the
kernel works on it in place.

A loss module supplies a *row kernel* ``kernel(sim, block, row_weight) -> (L, G)``. ``sim`` is
the ``(b, B)`` block of ``s`` (the kernel may overwrite it), ``L`` the ``(b,)`` per-anchor losses
and ``G[r, j] = row_weight[r] * dL_r / ds_rj``, or ``None`` when ``row_weight`` is ``None`` (no
gradient wanted). ``L`` and ``G`` must be finite on every row, anchors without positives
included (their ``row_weight`` is 0 and their ``L_i`` is discarded). :func:`pairwise_loss` does
the rest in one autograd node:

- similarities are computed in float32 (float64 for float64 input) with autocast disabled, so
  half/bf16 embeddings never see a low-precision exponent;
- the gradient with respect to the normalised rows, ``(G + G^T) z / tau``, is computed during
  the forward pass (``G`` is gathered block by block into one ``(B, B)`` buffer and symmetrised
  in place) and kept as a ``(B, d)`` tensor, so no ``(B, B)`` buffer outlives the call; the
  price is that this matmul is also paid when a graph is recorded but ``backward`` never runs;
- work is ``O(B^2 d)``, never ``O(B^3)``; memory is one ``(B, B)`` buffer plus a few blocks
  when a gradient is wanted, and only the blocks (``O(b B)``) when not;
- gradients are first order only (``create_graph=True`` double backward raises).

Kernels work in log space with per-row maxima taken over the subset being summed
(:func:`masked_logits`, :func:`segment_exp`), so every exponent is ``<= 0`` and the largest term
of every sum is exactly 1: no overflow for any temperature, and underflow only drops terms
below float precision relative to their sum.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = [
    "NoPositivePairsWarning",
    "Pairs",
    "Block",
    "RowKernel",
    "pairwise_loss",
    "positive_pairs",
    "row_blocks",
    "normalize_rows",
    "masked_logits",
    "segment_exp",
    "segment_sum",
    "safe_reciprocal",
]


class NoPositivePairsWarning(UserWarning):
    """A contrastive loss saw a batch in which no anchor has a positive; it returned 0."""


class Pairs(NamedTuple):
    """The positive pairs of a batch as index lists, in row order (no ``(B, B)`` mask is built).

    Attributes:
        rows: ``(P,)`` int64 anchor row ``i`` of each positive pair ``(i, j)``, non-decreasing.
        cols: ``(P,)`` int64 positive ``j`` of each pair.
        n_pos: ``(B,)`` number of positives ``|P(i)|`` of each anchor (compute dtype).
        n_neg: ``(B,)`` number of negatives ``|N(i)| = B - 1 - |P(i)|`` (compute dtype).
        offsets: ``B + 1`` ints; the pairs of anchor ``i`` are ``offsets[i]:offsets[i + 1]``.
    """

    rows: Tensor
    cols: Tensor
    n_pos: Tensor
    n_neg: Tensor
    offsets: list[int]


class Block(NamedTuple):
    """Rows ``start:start + b`` of the batch, as a kernel sees them (all indices block-local).

    Attributes:
        start: first batch row of the block (its diagonal entries sit at ``(r, start + r)``).
        rows: ``(P_b,)`` int64 block row of each positive pair of the block.
        flat: ``(P_b,)`` int64 flat index ``r * B + j`` of each pair into the ``(b, B)`` block.
        n_pos: ``(b,)`` positives per anchor; n_neg: ``(b,)`` negatives per anchor.
    """

    start: int
    rows: Tensor
    flat: Tensor
    n_pos: Tensor
    n_neg: Tensor


#: ``kernel(sim, block, row_weight) -> (losses (b,), grad (b, B) or None)``; see the module doc.
RowKernel = Callable[[Tensor, Block, "Tensor | None"], tuple[Tensor, "Tensor | None"]]

#: Entries of one ``(b, B)`` block: 2**20 float32 values (4 MiB) stay in cache on a CPU.
_BLOCK_ELEMENTS = {"cpu": 2**20}
_DEFAULT_BLOCK_ELEMENTS = 2**26


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other float dtype is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def normalize_rows(x: Tensor) -> Tensor:
    """L2-normalise the rows of ``x`` for any norm, tiny or huge.

    Each row is first divided by its largest absolute entry (a detached constant: the result
    does not depend on it), so squaring cannot overflow or underflow.
    """
    scale = x.detach().abs().amax(dim=1, keepdim=True)
    u = x / scale
    return u / torch.linalg.vector_norm(u, dim=1, keepdim=True)


def positive_pairs(labels: Tensor, dtype: torch.dtype) -> Pairs:
    """All ordered pairs ``(i, j)``, ``i != j``, ``labels[i] == labels[j]``; O(B log B + P) work."""
    n = labels.shape[0]
    device = labels.device
    order = torch.argsort(labels, stable=True)
    _, counts = torch.unique_consecutive(labels[order], return_counts=True)
    group_start = torch.empty_like(order)  # per row: sorted position where its group starts
    group_start[order] = (torch.cumsum(counts, 0) - counts).repeat_interleave(counts)
    rank = torch.empty_like(order)  # per row: its position inside its group
    rank[order] = torch.arange(n, device=device)
    rank -= group_start
    n_pos = torch.empty_like(order)
    n_pos[order] = counts.repeat_interleave(counts) - 1
    offsets = torch.cumsum(n_pos, 0)
    rows = torch.arange(n, device=device).repeat_interleave(n_pos)
    within = torch.arange(rows.shape[0], device=device) - (offsets - n_pos)[rows]
    within += within >= rank[rows]  # skip the anchor itself
    cols = order[group_start[rows] + within]
    n_pos_f = n_pos.to(dtype)
    return Pairs(rows, cols, n_pos_f, (n - 1) - n_pos_f, [0, *offsets.tolist()])


def row_blocks(pairs: Pairs, device_type: str) -> Iterator[Block]:
    """Split the batch into blocks of rows whose ``(b, B)`` similarity block fits the budget."""
    n = pairs.n_pos.shape[0]
    budget = _BLOCK_ELEMENTS.get(device_type, _DEFAULT_BLOCK_ELEMENTS)
    size = max(1, min(n, budget // max(n, 1)))
    for start in range(0, n, size):
        stop = min(n, start + size)
        lo, hi = pairs.offsets[start], pairs.offsets[stop]
        rows = pairs.rows[lo:hi] - start
        flat = rows * n + pairs.cols[lo:hi]
        yield Block(start, rows, flat, pairs.n_pos[start:stop], pairs.n_neg[start:stop])


def masked_logits(sim: Tensor, block: Block, negatives_only: bool = True) -> tuple[Tensor, Tensor]:
    """In place: ``sim_ij - m_i`` over the negatives of each row, ``-inf`` elsewhere; and ``m_i``.

    ``negatives_only=False`` keeps every entry but the diagonal. ``m_i`` is the row maximum
    over the kept entries (0 on a row with nothing kept), so after ``exp`` a row's largest kept
    term is exactly 1 and dropped entries are 0. Overwrites and returns ``sim``, and ``(b,)``.
    """
    if negatives_only:
        sim.view(-1)[block.flat] = float("-inf")
    sim.diagonal(offset=block.start).fill_(float("-inf"))
    m = sim.amax(dim=1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, 0.0)
    return sim.sub_(m), m.squeeze(1)


def segment_sum(values: Tensor, rows: Tensor, n: int) -> Tensor:
    """``out[i] = sum of values[p] over p with rows[p] == i``, shape ``(n,)``."""
    return values.new_zeros(n).index_add_(0, rows, values)


def segment_exp(values: Tensor, rows: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-row stable exponentials of pair values: ``(exp(v - m[rows]), m, per-row sums)``."""
    m = values.new_zeros(n).scatter_reduce_(0, rows, values, "amax", include_self=False)
    e = (values - m[rows]).exp_()
    return e, m, segment_sum(e, rows, n)


def safe_reciprocal(x: Tensor) -> Tensor:
    """``1 / x`` where ``x > 0``, else 0 (for sums over empty sets)."""
    return torch.where(x > 0, 1.0 / x.clamp_min(torch.finfo(x.dtype).tiny), 0.0)


def _symmetrize_(g: Tensor, size: int) -> Tensor:
    """``g <- g + g^T`` in place, tile by tile (no second ``(B, B)`` buffer)."""
    n = g.shape[0]
    for i in range(0, n, size):
        a = slice(i, min(n, i + size))
        g[a, a] += g[a, a].t().clone()
        for j in range(i + size, n, size):
            b = slice(j, min(n, j + size))
            upper = g[a, b].add_(g[b, a].t())
            g[b, a] = upper.t()
    return g


class _PairwiseLoss(torch.autograd.Function):
    """Mean over valid anchors of ``kernel``'s per-anchor losses, as a function of ``z``."""

    @staticmethod
    def forward(ctx, z, pairs, temperature, kernel, want_grad):  # type: ignore[override]
        n = z.shape[0]
        valid = pairs.n_pos > 0
        weight = valid.to(z.dtype) / valid.sum().to(z.dtype)
        z_scaled = z * (1.0 / temperature)
        grad = z.new_empty(n, n) if want_grad else None
        loss = z.new_zeros(())
        for block in row_blocks(pairs, z.device.type):
            stop = block.start + block.n_pos.shape[0]
            sim = torch.mm(z_scaled[block.start : stop], z.t())
            row_weight = weight[block.start : stop]
            losses, block_grad = kernel(sim, block, row_weight if want_grad else None)
            loss += torch.where(row_weight > 0, losses, 0.0).mul_(row_weight).sum()
            if want_grad:
                grad[block.start : stop] = block_grad
        if want_grad:
            # d loss / d z = (G + G^T) z / tau, G[i, j] = d loss / d s_ij
            _symmetrize_(grad, 256)
            ctx.save_for_backward(torch.mm(grad, z_scaled))
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):  # type: ignore[override]
        (dz,) = ctx.saved_tensors
        return dz * grad_output, None, None, None, None


def _no_autocast(device_type: str) -> contextlib.AbstractContextManager:
    """A context that turns autocast off on ``device_type`` (a no-op where autocast is absent)."""
    available = getattr(torch.amp, "is_autocast_available", lambda kind: kind in ("cpu", "cuda"))
    if available(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def pairwise_loss(embeddings: Tensor, labels: Tensor, temperature: float, kernel: RowKernel, name: str) -> Tensor:
    """Run ``kernel`` on validated ``embeddings`` (B, d) and ``labels`` (B,); return a scalar.

    The result has dtype float32 (float64 for float64 input). When no anchor has a positive,
    returns ``embeddings.sum() * 0`` (still in the autograd graph, so ``backward`` runs) and
    warns with :class:`NoPositivePairsWarning`; Python shows that warning once per call site.
    """
    dtype = compute_dtype(embeddings.dtype)
    pairs = positive_pairs(labels, dtype)
    if pairs.rows.shape[0] == 0:
        warnings.warn(
            f"{name}: no anchor in the batch has a positive (every label is unique); "
            "the contrastive loss is 0 for this batch",
            NoPositivePairsWarning,
            stacklevel=3,
        )
        return (embeddings.sum() * 0).to(dtype)
    with _no_autocast(embeddings.device.type):
        z = normalize_rows(embeddings.to(dtype))
        want_grad = torch.is_grad_enabled() and z.requires_grad
        return _PairwiseLoss.apply(z, pairs, temperature, kernel, want_grad)
