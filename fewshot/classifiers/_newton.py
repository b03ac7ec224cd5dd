"""The batched Newton solver behind :func:`fewshot.classifiers.logreg.fit_logistic_regression`.

Helpers for the reduced ``n``-dimensional multinomial logistic regression of each episode: the
Gram-matrix factor that reduces it, its objective, a scoped torch thread count and a batched
inner product.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

__all__ = ["bdot", "cpu_threads", "gram_factor", "objective"]


def gram_factor(G: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Factor Gram matrices ``G = Z Z^T`` (``(E, n, n)``, float64) for the reduced problem.

    Returns ``Z`` and ``T`` with ``X = Z V^T`` for orthonormal ``V`` and ``V^T = T X``, so a
    solution ``W'`` on ``Z`` maps back to ``W = W' T X``. Well-conditioned episodes use the
    Cholesky factor (``Z = L``, ``T = L^-1``); the others (duplicated support rows: ``G``
    singular to working precision) use the eigendecomposition with eigenvalues below
    ``n * eps * max(lam)`` dropped (``Z = U sqrt(lam)``, ``T = diag(1/sqrt(lam)) U^T``).
    """
    E, n, _ = G.shape
    L, info = torch.linalg.cholesky_ex(G)
    pivots = L.diagonal(dim1=-2, dim2=-1).square()
    scale = G.diagonal(dim1=-2, dim2=-1).amax(-1).clamp_min(1e-300)
    ok = (info == 0) & (pivots.amin(-1) > 1e3 * n * eps * scale)
    eye = torch.eye(n, dtype=G.dtype, device=G.device).expand(E, n, n)
    Z = torch.where(ok[:, None, None], L, 0.0)
    T = torch.where(ok[:, None, None], torch.linalg.solve_triangular(torch.where(ok[:, None, None], L, eye), eye, upper=False), 0.0)
    bad = torch.nonzero(~ok).squeeze(-1)
    if bad.numel():
        lam, U = torch.linalg.eigh(G[bad])
        keep = lam > (n * eps) * lam.amax(-1, keepdim=True).clamp_min(1e-300)
        sq = torch.where(keep, lam.clamp_min(0).sqrt(), 0.0)
        inv = torch.where(keep, 1.0 / torch.where(keep, sq, 1.0), 0.0)
        Z[bad] = U * sq.unsqueeze(1)
        T[bad] = inv.unsqueeze(-1) * U.transpose(1, 2)
    return Z, T


def objective(logits: torch.Tensor, theta: torch.Tensor, y: torch.Tensor, C: float, pen: torch.Tensor) -> torch.Tensor:
    """Per-episode objective from the support logits ``(E, n, K)`` of parameters ``theta``."""
    nll = torch.logsumexp(logits, dim=-1) - logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    return C * nll.sum(-1) + 0.5 * (theta.square() * pen).sum((-2, -1))


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Any:
    """Run the block with ``n`` torch CPU threads (None: unchanged), restoring the count."""
    if n is None or torch.get_num_threads() == n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def bdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum((-2, -1))
