"""The batched Newton solver behind :func:`fewshot.classifiers.logreg.fit_logistic_regression`.

Every function works on a batch of ``E`` independent episodes at once, in float64:

- :func:`gram_factor` reduces each episode to ``n`` dimensions through its Gram matrix;
- :func:`newton_solve` minimises the multinomial logistic objective (:func:`objective`) on the
  reduced features by Newton's method, with
- :func:`conjugate_gradient` for each Newton system (preconditioned CG, stopped per episode) and
- :func:`armijo_backtracking` for the step length (per episode);
- :func:`cpu_threads` scopes torch's CPU thread count, :func:`bdot` is the batched inner product.

Batched vectors are ``(E, a, b)`` tensors (the solver's ``(E, K, n + 1)`` parameter blocks; a
plain vector is ``(E, a, 1)``) with the Frobenius inner product :func:`bdot`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

__all__ = [
    "armijo_backtracking",
    "bdot",
    "conjugate_gradient",
    "cpu_threads",
    "gram_factor",
    "newton_solve",
    "objective",
]


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
    T = torch.where(
        ok[:, None, None], torch.linalg.solve_triangular(torch.where(ok[:, None, None], L, eye), eye, upper=False), 0.0
    )
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
    """Per-episode objective ``C * sum_i -log softmax(logits_i)[y_i] + 0.5 * sum(pen * theta^2)``.

    Args:
        logits: ``(E, n, K)`` support logits of the parameters ``theta`` ``(E, K, p)``.
        y: ``(E, n)`` int64 labels.
        C: weight of the log-loss.
        pen: ``(p,)`` penalty weight of each parameter column (0 for the intercept).

    Returns:
        ``(E,)`` objective values.
    """
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
    """``(E,)`` Frobenius inner products of the ``(E, a, b)`` blocks of ``a`` and ``b``."""
    return (a * b).sum((-2, -1))


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    precondition: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    rtol: torch.Tensor | float,
    max_iter: int,
) -> torch.Tensor:
    """Solve ``A x = b`` for every episode by preconditioned conjugate gradients.

    ``A`` (given by ``matvec``) and the preconditioner ``M^-1`` (``precondition``) must be
    symmetric positive (semi)definite per episode. Each episode stops on its own once its
    residual satisfies ``||r|| <= rtol * ||b||`` (its step sizes are then zero); the loop ends
    when all have or after ``max_iter`` iterations. A zero ``b`` gives ``x = 0``. A direction of
    non-positive curvature ``d^T A d <= 0`` is not taken (step zero).

    Args:
        matvec: ``v (E, a, b) -> A v`` per episode.
        precondition: ``r (E, a, b) -> M^-1 r`` per episode.
        b: ``(E, a, b)`` right-hand sides.
        rtol: relative residual tolerance, a float or ``(E,)`` per episode.
        max_iter: maximum iterations (``a * b`` is enough in exact arithmetic).

    Returns:
        ``x`` ``(E, a, b)``, starting from zero.
    """
    r = b
    x = torch.zeros_like(b)
    z = precondition(r)
    dirn = z
    rz = bdot(r, z)
    r0 = r.norm(dim=(-2, -1))
    for _ in range(max_iter):
        active = r.norm(dim=(-2, -1)) > rtol * r0
        if not bool(active.any()):
            break
        Hd = matvec(dirn)
        dHd = bdot(dirn, Hd)
        alpha = torch.where(active & (dHd > 0), rz / torch.where(dHd > 0, dHd, 1.0), 0.0)
        x = x + alpha[:, None, None] * dirn
        r = r - alpha[:, None, None] * Hd
        z = precondition(r)
        rz_new = bdot(r, z)
        beta = torch.where(rz > 0, rz_new / torch.where(rz > 0, rz, 1.0), 0.0)
        dirn = z + beta[:, None, None] * dirn
        rz = rz_new
    return x


def armijo_backtracking(
    evaluate: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    theta: torch.Tensor,
    state: torch.Tensor,
    f: torch.Tensor,
    direction: torch.Tensor,
    slope: torch.Tensor,
    done: torch.Tensor,
    c1: float = 1e-4,
    slack: float = 1e-12,
    max_halvings: int = 40,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backtracking line search with Armijo's condition, per episode.

    For every episode not ``done``, tries the steps ``t = 1, 1/2, 1/4, ...`` (at most
    ``max_halvings`` of them) and takes the first with
    ``f(theta + t d) <= f(theta) + c1 * t * slope + slack * |f(theta)|``, where ``slope`` is
    the directional derivative ``grad . d`` (negative for a descent direction) and ``slack``
    absorbs rounding near the optimum. An episode with no acceptable step keeps ``theta``.

    Args:
        evaluate: ``cand (E, a, b) -> (state, f)``: the objective ``(E,)`` at candidate
            parameters together with a per-episode ``(E, ...)`` by-product carried along (the
            solver's support logits, so they need not be recomputed).
        theta: ``(E, a, b)`` current parameters; ``state``, ``f`` ``(E,)`` their by-product
            and objective.
        direction: ``(E, a, b)`` search directions ``d``; ``slope`` ``(E,)`` is ``grad . d``.
        done: ``(E,)`` bool, episodes left unchanged.
        c1: Armijo's sufficient-decrease constant (default 1e-4).
        slack: relative slack on ``|f|`` (default 1e-12).
        max_halvings: steps tried (default 40).

    Returns:
        The new ``theta``, ``state`` and ``f``.
    """
    step = torch.ones_like(f)
    accepted = done
    for _ in range(max_halvings):
        cand = theta + step[:, None, None] * direction
        cand_state, fc = evaluate(cand)
        ok = (~accepted) & (fc <= f + c1 * step * slope + slack * f.abs())
        theta = torch.where(ok[:, None, None], cand, theta)
        state = torch.where(ok.view(-1, *[1] * (state.ndim - 1)), cand_state, state)
        f = torch.where(ok, fc, f)
        accepted = accepted | ok
        if bool(accepted.all()):
            break
        step = torch.where(accepted, step, 0.5 * step)
    return theta, state, f


def newton_solve(
    Z: torch.Tensor, labels: torch.Tensor, n_classes: int, C: float, max_iter: int, tol: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Minimise ``C * sum_i -log softmax(W z_i + b)[y_i] + 0.5 * ||W||_F^2`` per episode.

    Newton's method on features ``Z`` (the reduced ``n``-dimensional problem of
    :func:`gram_factor`; ``b`` unpenalised), from zero. Each Newton system ``H dx = -grad`` is
    solved by :func:`conjugate_gradient`, preconditioned with Böhning's bound
    ``H <= (C/2)(I - 11^T/K) (x) Z~^T Z~ + R`` (``Z~ = [Z, 1]``, ``R`` the penalty), whose
    inverse needs one small factorisation per episode, to the forcing tolerance
    ``min(0.1, sqrt(max|grad| / (C n)))``; the step length comes from
    :func:`armijo_backtracking` (the full step is almost always taken). An episode stops once
    ``max|grad| / (C n) <= tol``; converged episodes are frozen while the others go on.

    Args:
        Z: ``(E, n, r)`` float64 features.
        labels: ``(E, n)`` int64 labels in ``0..n_classes-1``.
        n_classes: ``K``.
        C: inverse regularisation strength.
        max_iter: maximum Newton iterations.
        tol: tolerance on the scaled max-abs gradient.

    Returns:
        ``theta`` ``(E, K, r + 1)`` (weights, then the intercept column), ``n_iter`` ``(E,)``
        int64 Newton iterations taken, ``converged`` ``(E,)`` bool.
    """
    E, n, r = Z.shape
    K = int(n_classes)
    dev = Z.device
    f64 = torch.float64
    Zt = torch.cat([Z, torch.ones(E, n, 1, dtype=f64, device=dev)], dim=-1)  # (E,n,r+1)
    p = r + 1
    pen = torch.ones(p, dtype=f64, device=dev)
    pen[-1] = 0.0  # intercept not penalised
    Y = torch.nn.functional.one_hot(labels, K).to(f64)  # (E, n, K)

    # Böhning preconditioner on the class-centred subspace: ((C/2) Z~^T Z~ + R)^-1
    B = 0.5 * C * (Zt.transpose(1, 2) @ Zt) + torch.diag(pen)
    Binv = torch.cholesky_inverse(torch.linalg.cholesky(B))

    def precondition(v: torch.Tensor) -> torch.Tensor:
        mean = v.mean(dim=1, keepdim=True)
        return (v - mean) @ Binv + mean * pen

    def evaluate(cand: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cand_logits = Zt @ cand.transpose(1, 2)
        return cand_logits, objective(cand_logits, cand, labels, C, pen)

    theta = torch.zeros(E, K, p, dtype=f64, device=dev)
    n_iter = torch.zeros(E, dtype=torch.long, device=dev)
    scale = C * n
    active = torch.ones(E, dtype=torch.bool, device=dev)
    logits = Zt @ theta.transpose(1, 2)  # (E, n, K), kept in step with theta
    f = objective(logits, theta, labels, C, pen)
    for _ in range(max_iter + 1):
        P = torch.softmax(logits, dim=-1)
        grad = C * (P - Y).transpose(1, 2) @ Zt + theta * pen
        gmax = grad.abs().amax((-2, -1)) / scale
        active = active & (gmax > tol)
        if not bool(active.any()) or int(n_iter.max()) >= max_iter:
            break

        def hvp(v: torch.Tensor, P: torch.Tensor = P) -> torch.Tensor:  # Hessian at this iterate
            u = Zt @ v.transpose(1, 2)  # (E, n, K)
            su = P * u - P * (P * u).sum(-1, keepdim=True)
            return C * su.transpose(1, 2) @ Zt + v * pen

        # Newton direction on H dx = -grad (inactive episodes: zero right-hand side, dx = 0)
        forcing = torch.clamp(gmax.sqrt(), max=0.1)
        x = conjugate_gradient(hvp, precondition, -grad * active[:, None, None], forcing, K * p)
        theta, logits, f = armijo_backtracking(evaluate, theta, logits, f, x, bdot(grad, x), ~active)
        n_iter = n_iter + active.long()
    return theta, n_iter, ~active
