"""Nearest class mean by cosine similarity, batched over episodes (registry: ``prototype``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fewshot.classifiers._tensors import as_batch, as_labels, episode_slice, l2_normalize, safe_norm

__all__ = ["PrototypeClassifier"]


class PrototypeClassifier:
    """Nearest class mean by cosine similarity (registry: ``prototype``).

    Prototypes are the means of the L2-normalised support features of each class; a query is
    assigned to the prototype with the highest cosine similarity (Snell et al. 2017 with cosine
    distance; Wang et al. 2019, SimpleShot).

    Neither the support nor the query rows are rewritten: the support norms are folded into the
    averaging weights, and the cosine ``q . p / (|q| |p|)`` is the dot product with the
    unit-norm prototype divided by the query's norm, a positive per-query scale that
    :meth:`predict` does not need (it leaves the argmax unchanged) and
    :meth:`decision_function` applies to the ``(E, m, K)`` scores.

    Attributes (after ``fit``): ``prototypes_`` ``(E, K, d)``, unit norm (zero for a class
    without support items or with all-zero ones).
    """

    transductive = False

    def __init__(self, device: str | torch.device | None = None) -> None:
        self.device = device

    def fit(self, support: Any, support_labels: Any) -> PrototypeClassifier:
        """Fit the prototypes of every episode of ``support`` ``(E, n, d)`` with labels ``(E, n)`` or ``(n,)``."""
        X = as_batch(support, "support", self.device)
        X = X if X.dtype == torch.float64 else X.float()
        y, K = as_labels(support_labels, X.shape[0], X.shape[1], X.device)
        # sum_i onehot_ik x_i / |x_i|: the class sums of the normalised rows; the division by the
        # class count is a positive scale that the final normalisation removes
        weights = torch.nn.functional.one_hot(y, K).to(X.dtype) / safe_norm(X.norm(dim=-1, keepdim=True))
        self._protos = l2_normalize(weights.transpose(1, 2) @ X)  # (E, K, d)
        self.prototypes_ = self._protos.cpu().numpy()
        return self

    def _dots(self, query: Any, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not hasattr(self, "_protos"):
            raise RuntimeError("call fit() before predict()")
        Q = as_batch(query, "query", self._protos.device).to(self._protos.dtype)
        protos, _ = episode_slice(self._protos, None, start, Q)
        return Q, Q @ protos.transpose(1, 2)  # (E', m, K) = |q| * cosine

    def decision_function(self, query: Any, start: int = 0) -> np.ndarray:
        """Cosine similarities ``(E', m, K)`` of ``query`` ``(E', m, d)`` to the prototypes of
        fitted episodes ``start..start+E'`` (an all-zero query row scores 0)."""
        Q, dots = self._dots(query, start)
        return (dots / safe_norm(Q.norm(dim=-1, keepdim=True))).cpu().numpy()

    def predict(self, query: Any, start: int = 0) -> np.ndarray:
        """Predicted labels ``(E', m)`` int64 of fitted episodes ``start..start+E'``."""
        return self._dots(query, start)[1].argmax(-1).cpu().numpy()
