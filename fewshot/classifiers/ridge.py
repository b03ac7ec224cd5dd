"""Closed-form ridge regression onto one-hot labels, batched over episodes (registry: ``ridge``).

R2D2 (Bertinetto et al. 2019, "Meta-learning with differentiable closed-form solvers") as used
by MetaOptNet and LibFewShot: ``W = X^T (X X^T + lambda I)^-1 Y`` with ``Y`` the one-hot support
labels, no intercept; a query is assigned ``argmax(x W)``. R2D2's learned output scale and bias
do not change the argmax and are omitted. ``W`` equals scikit-learn's
``Ridge(alpha=lam, fit_intercept=False).fit(X, Y).coef_.T``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fewshot._validate import check_real
from fewshot.classifiers._tensors import as_batch, as_labels, episode_slice, l2_normalize

__all__ = ["RidgeClassifier"]


class RidgeClassifier:
    """R2D2's closed-form ridge classifier (registry: ``ridge``).

    Args:
        lam: ridge penalty ``lambda`` (default 50.0, MetaOptNet's R2D2 head).
        normalize: L2-normalise features first (default False, as in R2D2).
        device: torch device (default: that of the inputs).

    Attributes (after ``fit``): ``coef_`` ``(E, K, d)`` with ``scores = x @ coef_[e].T``.

    The ``n x n`` system is solved in float64 (``n`` = support size), whatever the input dtype.
    """

    transductive = False

    def __init__(self, lam: float = 50.0, normalize: bool = False, device: str | torch.device | None = None) -> None:
        self.lam = lam
        self.normalize = normalize
        self.device = device

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        x = x if x.dtype in (torch.float32, torch.float64) else x.float()
        return l2_normalize(x) if self.normalize else x

    def fit(self, support: Any, support_labels: Any) -> RidgeClassifier:
        """Solve ``(X X^T + lam I) A = Y`` per episode; ``W^T = A^T X``."""
        check_real("lam", self.lam, low=0, closed="neither")
        X = self._prep(as_batch(support, "support", self.device))
        E, n, _ = X.shape
        y, K = as_labels(support_labels, E, n, X.device)
        G = (X @ X.transpose(1, 2)).to(torch.float64)
        G = G + self.lam * torch.eye(n, dtype=torch.float64, device=X.device)
        Y = torch.nn.functional.one_hot(y, K).to(torch.float64)
        A = torch.linalg.solve(G, Y)  # (E, n, K)
        self._coef = A.transpose(1, 2).to(X.dtype) @ X  # (E, K, d)
        self.coef_ = self._coef.cpu().numpy()
        return self

    def decision_function(self, query: Any, start: int = 0) -> np.ndarray:
        """``(E', m, K)`` scores ``x W``."""
        if not hasattr(self, "_coef"):
            raise RuntimeError("call fit() before predict()")
        Q = self._prep(as_batch(query, "query", self._coef.device)).to(self._coef.dtype)
        coef, _ = episode_slice(self._coef, None, start, Q)
        return (Q @ coef.transpose(1, 2)).cpu().numpy()

    def predict(self, query: Any, start: int = 0) -> np.ndarray:
        """Predicted labels ``(E', m)`` int64."""
        return self.decision_function(query, start).argmax(-1)
