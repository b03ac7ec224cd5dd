"""Transductive episode classifiers: they also use the episode's unlabelled queries.

Batched over episodes, with the algorithms and default hyper-parameters of the easyfsl 1.5.0
implementations they are tested against (easyfsl's defaults come from its authors' tuning on
miniImageNet 5-way 5-shot). Features are used as given (no centring or normalisation, easyfsl's
default), in the input's dtype (float32 or float64).

``bd-cspn``  Liu et al. 2020, "Prototype Rectification for Few-Shot Learning" (ECCV).
``laplacianshot``  Ziko et al. 2020, "Laplacian Regularized Few-Shot Learning" (ICML).
``tim``  Boudiaf et al. 2020, "Transductive Information Maximization" (NeurIPS), TIM-GD.
``pt-map``  Hu et al. 2021, "Leveraging the Feature Distribution in Transfer-based Few-Shot
Learning" (ICANN).

``fit(support, labels)`` stores the support set; all the work happens in
``predict(query (E', m, d), start)``, which needs every query of an episode in one call (what
:func:`fewshot.evaluation.evaluate` passes). The class attribute ``transductive = True`` lets
tables mark the rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fewshot._validate import check_int, check_real
from fewshot.classifiers._tensors import as_batch, as_labels, class_means, episode_slice, l2_normalize

__all__ = ["BDCSPN", "LaplacianShot", "PTMAP", "TIM"]


def _cosine(x: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    return l2_normalize(x) @ l2_normalize(protos).transpose(1, 2)


def _sq_dist(x: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """``(E, m, K)`` squared Euclidean distances (``torch.cdist`` squared, as easyfsl)."""
    return torch.cdist(x, protos).square()


class _Transductive:
    """Stores the support set; subclasses implement ``_scores(S, y, K, Q)``."""

    transductive = True

    def __init__(self, device: str | torch.device | None = None) -> None:
        self.device = device

    def _validate(self) -> None:  # pragma: no cover - overridden where there are parameters
        pass

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.dtype in (torch.float32, torch.float64) else x.float()

    def fit(self, support: Any, support_labels: Any) -> _Transductive:
        """Store the support features ``(E, n, d)`` and labels of every episode."""
        self._validate()
        self._support = self._prep(as_batch(support, "support", self.device))
        self._labels, self._K = as_labels(
            support_labels, self._support.shape[0], self._support.shape[1], self._support.device
        )
        return self

    def decision_function(self, query: Any, start: int = 0) -> np.ndarray:
        """``(E', m, K)`` final scores of every query (higher: more likely)."""
        if not hasattr(self, "_support"):
            raise RuntimeError("call fit() before predict()")
        Q = self._prep(as_batch(query, "query", self._support.device)).to(self._support.dtype)
        S, _ = episode_slice(self._support, None, start, Q)
        y = self._labels[start : start + Q.shape[0]]
        return self._scores(S, y, self._K, Q).detach().cpu().numpy()

    def predict(self, query: Any, start: int = 0) -> np.ndarray:
        """Predicted labels ``(E', m)`` int64 (every query of each episode in one call)."""
        return self.decision_function(query, start).argmax(-1)

    def _scores(self, S: torch.Tensor, y: torch.Tensor, K: int, Q: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def rectify_prototypes(S: torch.Tensor, y: torch.Tensor, K: int, Q: torch.Tensor) -> torch.Tensor:
    """BD-CSPN's rectified prototypes ``(E, K, d)`` (as in easyfsl).

    Queries are shifted by the difference of the support and query means; every support item and
    every query (with its predicted class) contributes to its class's prototype with weight
    ``exp(cos(x, p_k))``, normalised per class over both sets.
    """
    protos = class_means(S, y, K)
    Qs = Q + (S.mean(1, keepdim=True) - Q.mean(1, keepdim=True))
    ys = torch.nn.functional.one_hot(y, K).to(S.dtype)
    ws = ys * _cosine(S, protos).exp()
    lq = _cosine(Qs, protos).exp()
    yq = torch.nn.functional.one_hot(lq.argmax(-1), K).to(S.dtype)
    wq = yq * lq
    norm = (ws.sum(1) + wq.sum(1)).unsqueeze(1)  # (E, 1, K)
    return (ws / norm).transpose(1, 2) @ S + (wq / norm).transpose(1, 2) @ Qs


class BDCSPN(_Transductive):
    """BD-CSPN: prototypes rectified by the queries, then cosine to them (registry: ``bd-cspn``).

    No hyper-parameters. As in easyfsl, the shifted queries build the prototypes and the
    unshifted queries are classified.
    """

    def _scores(self, S, y, K, Q):
        return _cosine(Q, rectify_prototypes(S, y, K, Q))


class LaplacianShot(_Transductive):
    """LaplacianShot: Laplacian-regularised soft assignments (registry: ``laplacianshot``).

    Prototypes rectified as in BD-CSPN; unary costs are squared Euclidean distances to them; the
    affinity ``W[i, j] = 1`` when ``j`` is one of the ``knn - 1`` nearest other queries of ``i``
    (easyfsl's convention: ``knn`` neighbours counting the query itself; not symmetrised);
    bound updates ``Y <- softmax(-a + lambda W Y)`` until the bound changes by at most 1e-6
    relatively (checked from the third step on, per episode) or ``inference_steps``.

    Args:
        inference_steps: at most this many bound updates (default 20).
        knn: neighbourhood size including the query itself (default 3).
        lambda_regularization: weight of the Laplacian term (default 0.7).
    """

    def __init__(
        self,
        inference_steps: int = 20,
        knn: int = 3,
        lambda_regularization: float = 0.7,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__(device)
        self.inference_steps = inference_steps
        self.knn = knn
        self.lambda_regularization = lambda_regularization

    def _validate(self) -> None:
        check_int("inference_steps", self.inference_steps)
        check_int("knn", self.knn)
        check_real("lambda_regularization", self.lambda_regularization, low=0, closed="neither")

    def _scores(self, S, y, K, Q):
        E, m, _ = Q.shape
        if self.knn > m:
            raise ValueError(f"knn={self.knn} exceeds the {m} queries of an episode")
        a = _sq_dist(Q, rectify_prototypes(S, y, K, Q))
        nn = torch.cdist(Q, Q).topk(self.knn, largest=False).indices[..., 1:]  # (E, m, knn-1)
        W = torch.zeros(E, m, m, dtype=Q.dtype, device=Q.device).scatter_(2, nn, 1.0)
        lam = self.lambda_regularization
        Y = torch.softmax(-a, -1)
        active = torch.ones(E, dtype=torch.bool, device=Q.device)
        old = torch.full((E,), float("inf"), dtype=Q.dtype, device=Q.device)
        for step in range(self.inference_steps):
            WY = W @ Y
            Y = torch.where(active[:, None, None], torch.softmax(-a + lam * WY, -1), Y)
            WY = W @ Y
            bound = (Y * (Y + 1e-12).log() + a * Y - lam * WY * Y).sum((1, 2))
            if step > 1:
                active = active & ~((bound - old).abs() <= 1e-6 * old.abs())
            old = torch.where(active, bound, old)
            if not bool(active.any()):
                break
        return Y


class TIM(_Transductive):
    """TIM-GD: prototypes fine-tuned by Adam on support CE minus query mutual information
    (registry: ``tim``).

    Loss per episode: ``w_ce * CE(support) - (w_m * H(mean query prediction) - w_c *
    mean H(query prediction))`` on ``temperature * cos(x, p_k)`` logits; ``fine_tuning_steps``
    Adam steps (PyTorch's Adam, betas (0.9, 0.999)) from the class means. Episodes are
    optimised together (Adam is elementwise and the summed loss separates), so each episode
    follows exactly its own trajectory.

    Args:
        fine_tuning_steps: default 50.  fine_tuning_lr: default 1e-4.
        cross_entropy_weight: 1.0.  marginal_entropy_weight: 1.0.
        conditional_entropy_weight: 0.1.  temperature: 10.0.
    """

    def __init__(
        self,
        fine_tuning_steps: int = 50,
        fine_tuning_lr: float = 1e-4,
        cross_entropy_weight: float = 1.0,
        marginal_entropy_weight: float = 1.0,
        conditional_entropy_weight: float = 0.1,
        temperature: float = 10.0,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__(device)
        self.fine_tuning_steps = fine_tuning_steps
        self.fine_tuning_lr = fine_tuning_lr
        self.cross_entropy_weight = cross_entropy_weight
        self.marginal_entropy_weight = marginal_entropy_weight
        self.conditional_entropy_weight = conditional_entropy_weight
        self.temperature = temperature

    def _validate(self) -> None:
        check_int("fine_tuning_steps", self.fine_tuning_steps)
        check_real("fine_tuning_lr", self.fine_tuning_lr, low=0, closed="neither")
        check_real("temperature", self.temperature, low=0, closed="neither")
        for name in ("cross_entropy_weight", "marginal_entropy_weight", "conditional_entropy_weight"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a non-negative number, got {v!r}")

    def _scores(self, S, y, K, Q):
        ys = torch.nn.functional.one_hot(y, K).to(S.dtype)
        T = self.temperature
        with torch.enable_grad():
            protos = class_means(S, y, K).detach().clone().requires_grad_(True)
            opt = torch.optim.Adam([protos], lr=self.fine_tuning_lr)
            for _ in range(self.fine_tuning_steps):
                ce = -(ys * torch.log_softmax(T * _cosine(S, protos), -1)).sum(-1).mean(-1)
                pq = torch.softmax(T * _cosine(Q, protos), -1)
                cond = -(pq * torch.log(pq + 1e-12)).sum(-1).mean(-1)
                marg = pq.mean(1)
                marg_ent = -(marg * torch.log(marg)).sum(-1)
                loss = self.cross_entropy_weight * ce - (
                    self.marginal_entropy_weight * marg_ent - self.conditional_entropy_weight * cond
                )
                opt.zero_grad()
                loss.sum().backward()
                opt.step()
        return _cosine(Q, protos.detach())


class PTMAP(_Transductive):
    """PT-MAP: power transform, then prototypes refined with Sinkhorn soft assignments
    (registry: ``pt-map``).

    Features ``(relu(x) + 1e-6) ** power_factor``; prototypes start at the support means;
    each of ``fine_tuning_steps`` steps computes the optimal-transport plan of the queries
    (cost: squared distance, ``exp(-lambda_regularization * cost)``, Sinkhorn to row sums 1 and
    column sums ``m // K``, until the row sums move by < 1e-6 or 1,000 iterations, per
    episode) and moves the prototypes ``fine_tuning_lr`` of the way to the assignment-weighted
    means of support and queries. The prediction is the final plan's argmax.

    The plan is computed from ``exp(-lambda * (cost - min_k cost))``: the same plan (Sinkhorn
    is invariant to row scaling), but without the underflow to 0/0 that easyfsl's
    ``exp(-lambda * cost)`` hits when squared distances exceed about 10 (float32).
    easyfsl (and this) omit the paper's L2 normalisation and centring after the power transform.

    Args:
        fine_tuning_steps: default 10.  fine_tuning_lr: default 0.2.
        lambda_regularization: default 10.0.  power_factor: default 0.5.
    """

    def __init__(
        self,
        fine_tuning_steps: int = 10,
        fine_tuning_lr: float = 0.2,
        lambda_regularization: float = 10.0,
        power_factor: float = 0.5,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__(device)
        self.fine_tuning_steps = fine_tuning_steps
        self.fine_tuning_lr = fine_tuning_lr
        self.lambda_regularization = lambda_regularization
        self.power_factor = power_factor

    def _validate(self) -> None:
        check_int("fine_tuning_steps", self.fine_tuning_steps)
        check_real("fine_tuning_lr", self.fine_tuning_lr, low=0, closed="neither")
        check_real("lambda_regularization", self.lambda_regularization, low=0, closed="neither")
        check_real("power_factor", self.power_factor, low=0, closed="neither")

    def _plan(self, cost: torch.Tensor, K: int) -> torch.Tensor:
        E, m, _ = cost.shape
        factor = m // K
        plan = torch.exp(-self.lambda_regularization * (cost - cost.amin(-1, keepdim=True)))
        plan = plan / plan.sum((1, 2), keepdim=True)
        active = torch.ones(E, dtype=torch.bool, device=cost.device)
        for _ in range(1000):
            rows = plan.sum(2)
            new = plan / (rows + 1e-10).unsqueeze(2)
            new = new * (factor / (new.sum(1) + 1e-10)).unsqueeze(1)
            plan = torch.where(active[:, None, None], new, plan)
            done = (rows - plan.sum(2)).abs().amax(-1) < 1e-6
            active = active & ~done
            if not bool(active.any()):
                break
        return plan

    def _scores(self, S, y, K, Q):
        S = (S.relu() + 1e-6).pow(self.power_factor)
        Q = (Q.relu() + 1e-6).pow(self.power_factor)
        protos = class_means(S, y, K)
        ys = torch.nn.functional.one_hot(y, K).to(S.dtype)
        feats = torch.cat([S, Q], 1)
        for _ in range(self.fine_tuning_steps):
            assign = torch.cat([ys, self._plan(_sq_dist(Q, protos), K)], 1)
            target = (assign.transpose(1, 2) @ feats) / assign.sum(1).unsqueeze(-1)
            protos = protos + self.fine_tuning_lr * (target - protos)
        return self._plan(_sq_dist(Q, protos), K)
