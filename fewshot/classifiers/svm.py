"""RFS's linear SVM, batched over episodes (registry: ``svm``).

Tian et al. 2020 (RFS, "Rethinking Few-Shot Image Classification") score frozen features with
``make_pipeline(StandardScaler(), SVC(kernel="linear", C=1))`` on L2-normalised rows. This module
reproduces that pipeline for many episodes at once:

1. L2-normalise the rows (``normalize=True``);
2. standardise every feature with the mean and standard deviation (``ddof=0``) of the episode's
   support set (scikit-learn's ``StandardScaler``; a constant feature keeps scale 1);
3. one binary soft-margin SVM per pair of classes (libsvm's one-vs-one scheme, which
   ``SVC.predict`` uses whatever ``decision_function_shape`` says): the dual
   ``min_a 1/2 a^T Q a - 1^T a``, ``0 <= a <= C``, ``y^T a = 0``, solved by SMO with
   libsvm's second-order working-set selection, vectorised over every (episode, pair) problem
   and run to a gap of ``tol`` (default 1e-6, tighter than libsvm's 1e-3);
4. the intercept by libsvm's rule (mean of ``y_i grad_i`` over free support vectors, else the
   midpoint of the feasible interval), then one-vs-one voting, ties to the lower class index
   (libsvm's rule).
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import numpy as np
import torch

from fewshot._validate import check_int, check_real
from fewshot.classifiers._base import ConvergenceWarning
from fewshot.classifiers._tensors import as_batch, as_labels, l2_normalize

__all__ = ["LinearSVM", "standardize"]


def standardize(support: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-episode feature mean ``(E, 1, d)`` and scale ``(E, 1, d)`` of ``support`` ``(E, n, d)``
    as scikit-learn's ``StandardScaler`` computes them (``ddof=0``; scale 1 for constant features)."""
    mean = support.mean(1, keepdim=True)
    scale = support.var(1, unbiased=False, keepdim=True).sqrt()
    scale = torch.where(scale < 10 * torch.finfo(scale.dtype).eps, torch.ones_like(scale), scale)
    return mean, scale


def _smo(
    K: torch.Tensor, y: torch.Tensor, C: float, tol: float, max_iter: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Solve ``B`` binary SVM duals at once.

    Args:
        K: ``(B, n, n)`` float64 kernel (Gram) matrices.
        y: ``(B, n)`` float64 targets in {+1, -1}, 0 for items not in the problem.
    Returns:
        ``alpha`` ``(B, n)``, ``rho`` ``(B,)`` (decision ``sum a_t y_t K(x_t, x) - rho``) and
        ``converged`` ``(B,)``.
    """
    B, n, _ = K.shape
    valid = y != 0
    alpha = torch.zeros_like(y)
    G = torch.where(valid, -1.0, 0.0).to(y.dtype)  # gradient of the dual: Q a - 1
    diag = K.diagonal(dim1=-2, dim2=-1)
    rows = torch.arange(B, device=K.device)
    inf = torch.tensor(float("inf"), dtype=y.dtype, device=K.device)
    active = torch.ones(B, dtype=torch.bool, device=K.device)
    for _ in range(max_iter):
        v = -y * G
        up = valid & (((y > 0) & (alpha < C)) | ((y < 0) & (alpha > 0)))
        low = valid & (((y < 0) & (alpha < C)) | ((y > 0) & (alpha > 0)))
        m_val, i = torch.where(up, v, -inf).max(-1)
        M_val = torch.where(low, v, inf).amin(-1)
        active = active & (m_val - M_val > tol)
        if not bool(active.any()):
            break
        Ki = K[rows, i]  # (B, n)
        a = (diag[rows, i].unsqueeze(-1) + diag - 2 * Ki).clamp_min(1e-12)
        b = m_val.unsqueeze(-1) - v
        cand = low & (v < m_val.unsqueeze(-1))
        j = torch.where(cand, -(b * b) / a, inf).argmin(-1)
        lam = b[rows, j] / a[rows, j]
        yi, yj = y[rows, i], y[rows, j]
        ai, aj = alpha[rows, i], alpha[rows, j]
        lam = torch.minimum(lam, torch.where(yi > 0, C - ai, ai))
        lam = torch.minimum(lam, torch.where(yj > 0, aj, C - aj))
        lam = torch.where(active, lam.clamp_min(0), 0.0)
        new_i = (ai + yi * lam).clamp(0, C)
        new_j = (aj - yj * lam).clamp(0, C)
        alpha[rows, i] = new_i
        alpha[rows, j] = new_j
        G = G + lam.unsqueeze(-1) * y * (Ki - K[rows, j])
    # libsvm's intercept
    yG = y * G
    at_upper = valid & (alpha >= C)
    at_lower = valid & (alpha <= 0)
    free = valid & ~at_upper & ~at_lower
    to_ub = (at_upper & (y < 0)) | (at_lower & (y > 0))
    to_lb = (at_upper & (y > 0)) | (at_lower & (y < 0))
    ub = torch.where(to_ub, yG, inf).amin(-1)
    lb = torch.where(to_lb, yG, -inf).amax(-1)
    n_free = free.sum(-1)
    rho = torch.where(n_free > 0, torch.where(free, yG, 0.0).sum(-1) / n_free.clamp_min(1), (ub + lb) / 2)
    return alpha, rho, ~active


class LinearSVM:
    """RFS's linear SVM: L2 norm, standardisation, one-vs-one linear SVC (registry: ``svm``).

    Args:
        C: soft-margin penalty (default 1.0, RFS's and scikit-learn's).
        normalize: L2-normalise rows before standardising (default True, RFS's ``is_norm``).
        tol: SMO stopping gap ``max_up(-y g) - min_low(-y g)`` (default 1e-6).
        max_iter: SMO iterations at most (default 10,000); problems that have not converged by
            then emit one ``ConvergenceWarning`` with their count.
        device: torch device (default: that of the inputs).

    Attributes (after ``fit``): ``coef_`` ``(E, P, d)`` weight vectors of the ``P = K(K-1)/2``
    pairwise SVMs (pairs ``(i, j)``, ``i < j``, in ``pairs_`` order, positive side class
    ``i``) in standardised feature space, ``intercept_`` ``(E, P)`` (``= -rho``),
    ``converged_`` ``(E, P)``.
    """

    transductive = False

    def __init__(
        self,
        C: float = 1.0,
        normalize: bool = True,
        tol: float = 1e-6,
        max_iter: int = 10_000,
        device: str | torch.device | None = None,
    ) -> None:
        self.C = C
        self.normalize = normalize
        self.tol = tol
        self.max_iter = max_iter
        self.device = device

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float64)
        return l2_normalize(x) if self.normalize else x

    def fit(self, support: Any, support_labels: Any) -> LinearSVM:
        """Fit the ``K(K-1)/2`` pairwise SVMs of every episode."""
        check_real("C", self.C, low=0, closed="neither")
        check_real("tol", self.tol, low=0, closed="neither")
        check_int("max_iter", self.max_iter)
        X = self._prep(as_batch(support, "support", self.device))
        E, n, d = X.shape
        y, K = as_labels(support_labels, E, n, X.device)
        self._mean, self._scale = standardize(X)
        Xs = (X - self._mean) / self._scale
        pairs = list(itertools.combinations(range(K), 2))
        if not pairs:
            raise ValueError(f"an SVM needs at least 2 classes per episode, got {K}")
        pi = torch.tensor([p[0] for p in pairs], device=X.device)
        pj = torch.tensor([p[1] for p in pairs], device=X.device)
        P = len(pairs)
        target = (y.unsqueeze(1) == pi[None, :, None]).double() - (
            y.unsqueeze(1) == pj[None, :, None]
        ).double()  # (E, P, n)
        gram = Xs @ Xs.transpose(1, 2)  # (E, n, n)
        alpha, rho, conv = _smo(
            gram.unsqueeze(1).expand(E, P, n, n).reshape(E * P, n, n),
            target.reshape(E * P, n),
            float(self.C),
            float(self.tol),
            int(self.max_iter),
        )
        self._coef = (alpha.view(E, P, n) * target) @ Xs  # (E, P, d)
        self._intercept = -rho.view(E, P)
        self._pairs = (pi, pj, K)
        self.pairs_ = pairs
        self.coef_ = self._coef.cpu().numpy()
        self.intercept_ = self._intercept.cpu().numpy()
        self.converged_ = conv.view(E, P).cpu().numpy()
        failed = int((~self.converged_).sum())
        if failed:
            warnings.warn(
                f"SVM (SMO) did not converge in {failed} of {self.converged_.size} pairwise problems "
                f"within max_iter={self.max_iter} (tol={self.tol})",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def decision_function(self, query: Any, start: int = 0) -> np.ndarray:
        """``(E', m, P)`` pairwise decision values (positive: vote for the pair's first class)."""
        return self._decision(query, start).cpu().numpy()

    def _decision(self, query: Any, start: int) -> torch.Tensor:
        if not hasattr(self, "_coef"):
            raise RuntimeError("call fit() before predict()")
        Q = self._prep(as_batch(query, "query", self._coef.device))
        E, _, d = self._coef.shape
        if not 0 <= start <= E - Q.shape[0] or Q.shape[2] != d:
            raise ValueError(
                f"query shape {tuple(Q.shape)} from episode {start} does not match the fitted batch (E={E}, d={d})"
            )
        sl = slice(start, start + Q.shape[0])
        Qs = (Q - self._mean[sl]) / self._scale[sl]
        return Qs @ self._coef[sl].transpose(1, 2) + self._intercept[sl].unsqueeze(1)

    def predict(self, query: Any, start: int = 0) -> np.ndarray:
        """One-vs-one vote, ties to the lowest class index; ``(E', m)`` int64."""
        dec = self._decision(query, start)  # (E', m, P)
        pi, pj, K = self._pairs
        winner = torch.where(dec > 0, pi, pj)  # (E', m, P)
        votes = torch.nn.functional.one_hot(winner, K).sum(2)  # (E', m, K)
        return votes.argmax(-1).cpu().numpy()
