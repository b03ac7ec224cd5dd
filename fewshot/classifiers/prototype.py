"""Nearest class mean by cosine similarity, batched over episodes (registry: ``prototype``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fewshot.classifiers._tensors import as_batch, as_labels, episode_slice, l2_normalize

__all__ = ["PrototypeClassifier"]


class PrototypeClassifier:
    """Nearest class mean by cosine similarity (registry: ``prototype``).

    Prototypes are the means of the L2-normalised support features of each class; a query is
    assigned to the prototype with the highest cosine similarity (Snell et al. 2017 with cosine
    distance; Wang et al. 2019, SimpleShot).
    """

    transductive = False

    def __init__(self, device: str | torch.device | None = None) -> None:
        self.device = device

    def fit(self, support: Any, support_labels: Any) -> PrototypeClassifier:
        X = as_batch(support, "support", self.device)
        X = l2_normalize(X if X.dtype == torch.float64 else X.float())
        y, K = as_labels(support_labels, X.shape[0], X.shape[1], X.device)
        onehot = torch.nn.functional.one_hot(y, K).to(X.dtype)  # (E, n, K)
        sums = onehot.transpose(1, 2) @ X
        counts = onehot.sum(1).clamp_min(1).unsqueeze(-1)
        self._protos = l2_normalize(sums / counts)
        self.prototypes_ = self._protos.cpu().numpy()
        return self

    def predict(self, query: Any, start: int = 0) -> np.ndarray:
        if not hasattr(self, "_protos"):
            raise RuntimeError("call fit() before predict()")
        Q = l2_normalize(as_batch(query, "query", self._protos.device).to(self._protos.dtype))
        protos, _ = episode_slice(self._protos, None, start, Q)
        return (Q @ protos.transpose(1, 2)).argmax(-1).cpu().numpy()
