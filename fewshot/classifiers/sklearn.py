"""scikit-learn's logistic regression fitted episode by episode (registry: ``logreg-sklearn``)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from fewshot._validate import check_int, check_real
from fewshot.classifiers._base import ConvergenceWarning
from fewshot.classifiers._tensors import as_batch, as_labels, l2_normalize

__all__ = ["SklearnLogisticRegression"]


class SklearnLogisticRegression:
    """scikit-learn's ``LogisticRegression`` fitted episode by episode (registry: ``logreg-sklearn``).

    The reference for :class:`LogisticRegression` and a fallback. Arguments are passed to
    ``sklearn.linear_model.LogisticRegression`` (defaults: ``C=1.0``, ``max_iter=100``,
    ``tol=1e-4``, i.e. scikit-learn's own defaults, the papers' protocol); ``normalize``
    L2-normalises rows first (default True).
    """

    transductive = False

    def __init__(self, C: float = 1.0, max_iter: int = 100, tol: float = 1e-4, normalize: bool = True) -> None:
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.normalize = normalize

    def _prep(self, x: Any, name: str) -> np.ndarray:
        t = as_batch(x, name).to(torch.float64)
        return (l2_normalize(t) if self.normalize else t).cpu().numpy()

    def fit(self, support: Any, support_labels: Any) -> SklearnLogisticRegression:
        from sklearn.linear_model import LogisticRegression as SkLR

        check_real("C", self.C, low=0, closed="neither")
        check_int("max_iter", self.max_iter)
        check_real("tol", self.tol, low=0, closed="neither")
        X = self._prep(support, "support")
        y, K = as_labels(support_labels, X.shape[0], X.shape[1], torch.device("cpu"))
        y = y.numpy()
        self.models_ = []
        coef = np.zeros((X.shape[0], K, X.shape[2]))
        intercept = np.zeros((X.shape[0], K))
        n_iter = np.zeros(X.shape[0], dtype=np.int64)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            for e in range(X.shape[0]):
                m = SkLR(C=self.C, max_iter=self.max_iter, tol=self.tol).fit(X[e], y[e])
                self.models_.append(m)
                coef[e][m.classes_] = m.coef_ if K > 2 else np.vstack([-m.coef_, m.coef_]) / 2
                intercept[e][m.classes_] = m.intercept_ if K > 2 else np.array([-1, 1]) * m.intercept_ / 2
                n_iter[e] = int(np.max(m.n_iter_))
        failed = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        self.coef_, self.intercept_, self.n_iter_ = coef, intercept, n_iter
        self.converged_ = n_iter < self.max_iter
        if failed:
            warnings.warn(
                f"scikit-learn logistic regression did not converge in {failed} of {X.shape[0]} episodes",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def predict(self, query: Any, start: int = 0) -> np.ndarray:
        Q = self._prep(query, "query")
        if not 0 <= start <= len(self.models_) - len(Q):
            raise ValueError(f"query has {len(Q)} episodes from {start}, the fit had {len(self.models_)}")
        return np.stack([m.predict(q) for m, q in zip(self.models_[start:], Q)]).astype(np.int64)
