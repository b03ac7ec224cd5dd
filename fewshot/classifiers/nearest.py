"""Nearest-centroid and nearest-neighbour episode classifiers, batched over episodes.

Registry names (see :mod:`fewshot.classifiers`):

``simpleshot``
    SimpleShot (Wang et al. 2019, arXiv 1911.04623) with CL2N features: subtract the mean
    feature of the *base* classes, L2-normalise, classify by the nearest class centroid of the
    support set (Euclidean distance as in the paper, or cosine as in easyfsl's ``SimpleShot``).
``nn``
    1-nearest neighbour over the support items (cosine or Euclidean), RFS's ``NN`` / ``Cosine``
    baselines (Tian et al. 2020).

Both take the batched contract of :mod:`fewshot.classifiers`: ``fit(support (E, n, d),
labels (E, n) | (n,))`` then ``predict(query (E', m, d), start)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fewshot.classifiers._tensors import as_batch, as_labels, class_means, episode_slice, l2_normalize, safe_norm

__all__ = ["METRICS", "NearestNeighbor", "SimpleShot"]

#: Distances accepted by ``metric``.
METRICS = ("euclidean", "cosine")


def _check_metric(metric: Any) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")


def _float(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def _scores(Q: torch.Tensor, R: torch.Tensor, metric: str) -> torch.Tensor:
    """``(E, m, r)`` similarity of queries ``Q`` ``(E, m, d)`` to references ``R`` ``(E, r, d)``:
    cosine, or minus the squared Euclidean distance (up to a per-query constant)."""
    if metric == "cosine":
        return l2_normalize(Q) @ l2_normalize(R).transpose(1, 2)
    # -||q - r||^2 = 2 q.r - ||r||^2 - ||q||^2; the last term does not change the argmax
    return 2 * (Q @ R.transpose(1, 2)) - R.square().sum(-1).unsqueeze(1)


class SimpleShot:
    """SimpleShot with CL2N features (registry: ``simpleshot``).

    ``x -> (x - base_mean) / ||x - base_mean||``, then the nearest centroid of the transformed
    support features of each class.

    Args:
        base_mean: ``(d,)`` mean feature of the base (training) classes, e.g.
            ``load_features("base.npz").features.mean(0)`` (the CLI's ``--base-features``).
            ``None``: no centring (the paper's "L2N" variant).
        metric: ``"euclidean"`` (default, the paper: distance to the unnormalised centroid) or
            ``"cosine"`` (easyfsl's ``SimpleShot``: cosine to the centroid). Identical for 1-shot.
        device: torch device (default: that of the inputs).

    Attributes (after ``fit``): ``prototypes_`` ``(E, K, d)`` centroids of the CL2N features.

    Raises:
        ValueError: unknown ``metric``; ``base_mean`` not a finite ``(d,)`` vector matching the
            features.
    """

    transductive = False

    def __init__(
        self, base_mean: Any = None, metric: str = "euclidean", device: str | torch.device | None = None
    ) -> None:
        self.base_mean = base_mean
        self.metric = metric
        self.device = device

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        x = _float(x)
        if self.base_mean is not None:
            mean = torch.as_tensor(np.asarray(self.base_mean), device=x.device)
            if (
                mean.ndim != 1
                or mean.shape[0] != x.shape[-1]
                or not mean.is_floating_point()
                or not bool(torch.isfinite(mean).all())
            ):
                raise ValueError(
                    f"base_mean must be a finite float vector of length {x.shape[-1]} (the feature dimension), "
                    f"got shape {tuple(mean.shape)}"
                )
            x = x - mean.to(x.dtype)
        return l2_normalize(x)

    def fit(self, support: Any, support_labels: Any) -> SimpleShot:
        """Centroids of the CL2N support features, per episode."""
        _check_metric(self.metric)
        X = self._transform(as_batch(support, "support", self.device))
        y, K = as_labels(support_labels, X.shape[0], X.shape[1], X.device)
        self._protos = class_means(X, y, K)
        self.prototypes_ = self._protos.cpu().numpy()
        return self

    def decision_function(self, query: Any, start: int = 0) -> np.ndarray:
        """``(E', m, K)`` scores (cosine, or minus squared distance up to a per-query constant)."""
        return self._decision(query, start).cpu().numpy()

    def _decision(self, query: Any, start: int) -> torch.Tensor:
        if not hasattr(self, "_protos"):
            raise RuntimeError("call fit() before predict()")
        Q = _float(as_batch(query, "query", self._protos.device)).to(self._protos.dtype)
        protos, _ = episode_slice(self._protos, None, start, Q)
        # The CL2N query x^ = (q - mu) / ||q - mu|| is never written out: x^.c and ||x^|| follow
        # from q.c, q.mu and ||q||^2, so the (E', m, d) queries are read, not rewritten.
        qc = Q @ protos.transpose(1, 2)  # (E', m, K)
        sq = torch.linalg.vector_norm(Q, dim=-1, keepdim=True).square()
        if self.base_mean is not None:
            self._transform(Q[:1, :1])  # validates base_mean against d
            mu = torch.as_tensor(np.asarray(self.base_mean), device=Q.device).to(Q.dtype)
            qc = qc - (protos @ mu).unsqueeze(1)
            qmu = Q @ mu
            sq = sq - 2 * qmu.unsqueeze(-1) + mu.square().sum()
        dot = qc / safe_norm(sq.clamp_min(0).sqrt())  # x^ . c
        if self.metric == "cosine":
            return dot / safe_norm(protos.norm(dim=-1)).unsqueeze(1)
        return 2 * dot - protos.square().sum(-1).unsqueeze(1)

    def predict(self, query: Any, start: int = 0) -> np.ndarray:
        """Predicted labels ``(E', m)`` int64."""
        return self._decision(query, start).argmax(-1).cpu().numpy()


class NearestNeighbor:
    """1-nearest neighbour among the support items (registry: ``nn``).

    Args:
        metric: ``"cosine"`` (default; RFS's ``Cosine``) or ``"euclidean"`` (RFS's ``NN``).
        normalize: L2-normalise features first (default False; RFS normalises, which makes the
            two metrics agree).
        device: torch device (default: that of the inputs).

    Ties (equal distances) go to the support item listed first.
    """

    transductive = False

    def __init__(
        self, metric: str = "cosine", normalize: bool = False, device: str | torch.device | None = None
    ) -> None:
        self.metric = metric
        self.normalize = normalize
        self.device = device

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        x = _float(x)
        return l2_normalize(x) if self.normalize else x

    def fit(self, support: Any, support_labels: Any) -> NearestNeighbor:
        """Store the support set of every episode."""
        _check_metric(self.metric)
        self._support = self._prep(as_batch(support, "support", self.device))
        self._labels, _ = as_labels(
            support_labels, self._support.shape[0], self._support.shape[1], self._support.device
        )
        return self

    def predict(self, query: Any, start: int = 0) -> np.ndarray:
        """Label of the nearest support item, ``(E', m)`` int64."""
        if not hasattr(self, "_support"):
            raise RuntimeError("call fit() before predict()")
        Q = self._prep(as_batch(query, "query", self._support.device)).to(self._support.dtype)
        S, _ = episode_slice(self._support, None, start, Q)
        y = self._labels[start : start + Q.shape[0]]
        if self.metric == "cosine":  # the query's norm does not change its nearest neighbour
            nearest = (Q @ l2_normalize(S).transpose(1, 2)).argmax(-1)
        else:
            nearest = _scores(Q, S, self.metric).argmax(-1)  # (E', m) support index
        return torch.gather(y, 1, nearest).cpu().numpy()
