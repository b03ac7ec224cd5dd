"""Batched multinomial logistic regression with scikit-learn's objective (registry: ``logreg``).

:func:`fit_logistic_regression` is the functional core (all episodes of a batch at once, in
torch); :class:`LogisticRegression` is the estimator that wraps it. The Newton solver's parts
live in :mod:`fewshot.classifiers._newton`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fewshot._validate import check_int, check_real
from fewshot.classifiers._base import ConvergenceWarning
from fewshot.classifiers._newton import cpu_threads, gram_factor, newton_solve
from fewshot.classifiers._tensors import as_batch, as_labels, episode_slice, safe_norm

__all__ = ["LogisticFit", "LogisticRegression", "fit_logistic_regression"]


@dataclass(frozen=True)
class LogisticFit:
    """Result of :func:`fit_logistic_regression` for a batch of ``E`` episodes.

    Attributes:
        coef: ``(E, K, d)`` weights in feature space (on normalised features if requested), in
            the input's dtype (float32 or float64).
        intercept: ``(E, K)`` intercepts, centred to sum to zero over classes (the softmax is
            invariant to a common shift, which the unpenalised intercept leaves free).
        n_iter: ``(E,)`` Newton iterations taken.
        converged: ``(E,)`` whether the scaled gradient reached ``tol``.
    """

    coef: torch.Tensor
    intercept: torch.Tensor
    n_iter: torch.Tensor
    converged: torch.Tensor


def fit_logistic_regression(
    support: torch.Tensor,
    labels: torch.Tensor,
    n_classes: int,
    C: float = 1.0,
    max_iter: int = 100,
    tol: float = 1e-8,
    normalize: bool = True,
) -> LogisticFit:
    """Fit one multinomial logistic regression per episode, all episodes at once.

    Minimises, for every episode independently, scikit-learn's objective
    ``C * sum_i -log softmax(W x_i + b)[y_i] + 0.5 * ||W||_F^2`` (intercept ``b`` not penalised).

    The solution ``W = A X`` lies in the span of the ``n`` support rows ``X``. With a factor
    ``G = X X^T = Z Z^T`` of the Gram matrix (Cholesky; the eigendecomposition for singular
    ``G``) the problem becomes the same objective on ``n``-dimensional features ``Z``
    (``W' = W V`` with orthonormal ``V``), which Newton's method solves in a handful of
    iterations (:func:`fewshot.classifiers._newton.newton_solve`: each Newton system solved by
    conjugate gradients preconditioned with Böhning's bound on the Hessian, the step by Armijo
    backtracking). For a singular ``G`` (duplicated
    support rows), eigenvalues below ``n * eps * max(lam)`` (``eps`` of the input's dtype)
    are treated as zero.

    Args:
        support: ``(E, n, d)`` floating point support features.
        labels: ``(E, n)`` int64 labels in ``0..n_classes-1``.
        n_classes: ``K``.
        C: inverse regularisation strength (scikit-learn's ``C``), default 1.0.
        max_iter: maximum Newton iterations (default 100).
        tol: convergence when ``max|grad| / (C * n) <= tol``, i.e. the gradient of
            scikit-learn's internally scaled objective (default 1e-8, far tighter than
            scikit-learn's default 1e-4, so the result is the optimum for practical purposes).
        normalize: L2-normalise feature rows first (default True).

    Returns:
        :class:`LogisticFit` on the input's device (``coef`` in the input's dtype, float32 or
        float64; the rest float64).
    """
    X = support if support.dtype in (torch.float32, torch.float64) else support.float()
    n = X.shape[1]
    K = int(n_classes)
    dev = X.device

    # The O(E n d) work runs in the input's precision, the small n-dimensional problem in
    # float64. Normalisation is applied to the Gram matrix (its diagonal holds the squared
    # norms) and folded into the coefficients, so the big support tensor is never rewritten.
    G = (X @ X.transpose(1, 2)).to(torch.float64)
    if normalize:
        norms = safe_norm(G.diagonal(dim1=-2, dim2=-1).sqrt())
        G = G / (norms.unsqueeze(-1) * norms.unsqueeze(-2))
    # The n-dimensional solve below is hundreds of small ops per batch (the CG loop of 5-shot
    # runs up to K * (n + 1) = 130 iterations per Newton step). Each is just large enough to
    # become an OpenMP parallel region, and on a loaded machine every region waits for its
    # worker thread to be scheduled: 5-shot ran 3-4x slower under load. One thread does
    # them no slower on a quiet machine; the large ops (Gram matrix, gathers) stay parallel.
    with cpu_threads(1 if dev.type == "cpu" else None):
        Z, T = gram_factor(G, torch.finfo(X.dtype).eps)  # G = Z Z^T; back-transform A = W' T
        theta, n_iter, converged = newton_solve(Z, labels, K, C, max_iter, tol)

    # back to feature space: W = A X with A = W' T
    A = theta[..., :n] @ T  # (E, K, n)
    if normalize:
        A = A / norms.unsqueeze(1)
    coef = A.to(X.dtype) @ X
    intercept = theta[..., n] - theta[..., n].mean(dim=1, keepdim=True)
    return LogisticFit(coef=coef, intercept=intercept, n_iter=n_iter, converged=converged)


class LogisticRegression:
    """Batched N-way logistic regression with scikit-learn's objective (registry: ``logreg``).

    Args:
        C: inverse regularisation strength (default 1.0, scikit-learn's default).
        max_iter: maximum Newton iterations (default 100).
        tol: tolerance on the max-abs gradient of the objective divided by ``C * n``
            (default 1e-8).
        normalize: L2-normalise features before fitting and predicting (default True).
        device: torch device to compute on (default: that of the inputs).

    Attributes (after ``fit``): ``coef_`` ``(E, K, d)``, ``intercept_`` ``(E, K)``, ``n_iter_``
    ``(E,)``, ``converged_`` ``(E,)`` (numpy arrays).

    Two-way episodes reproduce scikit-learn's binary model (one weight vector ``w``): the
    fitted ``coef_[e, 1] - coef_[e, 0]`` equals its ``coef_``.

    Non-convergence of any episode emits one :class:`ConvergenceWarning` with the count.
    """

    transductive = False

    def __init__(
        self,
        C: float = 1.0,
        max_iter: int = 100,
        tol: float = 1e-8,
        normalize: bool = True,
        device: str | torch.device | None = None,
    ) -> None:
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.normalize = normalize
        self.device = device

    def _validate_params(self) -> None:
        check_real("C", self.C, low=0, closed="neither")
        check_int("max_iter", self.max_iter)
        check_real("tol", self.tol, low=0, closed="neither")

    def fit(self, support: Any, support_labels: Any) -> LogisticRegression:
        """Fit every episode of ``support`` ``(E, n, d)`` with labels ``(E, n)`` or ``(n,)``."""
        self._validate_params()
        X = as_batch(support, "support", self.device)
        y, K = as_labels(support_labels, X.shape[0], X.shape[1], X.device)
        # scikit-learn fits a binary problem with one weight vector w (penalty ||w||^2 / 2); the
        # symmetric two-class softmax optimum (-w/2, w/2) carries half that penalty, so C / 2
        # reproduces scikit-learn's binary solution exactly (W[1] - W[0] = w).
        C = self.C / 2 if K == 2 else self.C
        with torch.no_grad():
            fit = fit_logistic_regression(X, y, K, C, self.max_iter, self.tol, self.normalize)
        self._coef = fit.coef
        self._intercept = fit.intercept
        self.coef_ = fit.coef.cpu().numpy()
        self.intercept_ = fit.intercept.cpu().numpy()
        self.n_iter_ = fit.n_iter.cpu().numpy()
        self.converged_ = fit.converged.cpu().numpy()
        failed = int((~self.converged_).sum())
        if failed:
            warnings.warn(
                f"logistic regression did not converge in {failed} of {len(self.converged_)} "
                f"episodes within max_iter={self.max_iter} (tol={self.tol})",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def decision_function(self, query: Any, start: int = 0) -> np.ndarray:
        """Logits ``(E', m, K)`` of ``query`` ``(E', m, d)`` for fitted episodes ``start..start+E'``."""
        return self._logits(query, start).cpu().numpy()

    def _logits(self, query: Any, start: int) -> torch.Tensor:
        if not hasattr(self, "_coef"):
            raise RuntimeError("call fit() before predict()")
        Q = as_batch(query, "query", self._coef.device).to(self._coef.dtype)
        coef, intercept = episode_slice(self._coef, self._intercept, start, Q)
        with torch.no_grad():
            logits = (Q @ coef.transpose(1, 2)).to(torch.float64)
            if self.normalize:  # scale the (E, m, K) logits rather than rewrite the query rows
                logits = logits / safe_norm(Q.norm(dim=-1, keepdim=True).to(torch.float64))
            return logits + intercept.unsqueeze(1)

    def predict(self, query: Any, start: int = 0) -> np.ndarray:
        """Predicted labels ``(E', m)`` int64 of fitted episodes ``start..start+E'``."""
        return self._logits(query, start).argmax(-1).cpu().numpy()
