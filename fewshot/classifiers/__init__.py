"""Episode classifiers fitted on frozen support features, many episodes at once.

Every classifier follows a scikit-learn-like contract over a *batch* of episodes:
``fit(support, support_labels)`` with ``support`` of shape ``(E, n, d)`` and labels ``(E, n)``
(or ``(n,)``, shared by all episodes) in ``0..K-1``, returns ``self``; ``predict(query)`` with
``query`` of shape ``(E, m, d)`` returns ``(E, m)`` int64 predictions. Learned attributes end in
``_``.

Registry (``CLASSIFIERS``; the CLI takes its choices from it):

``logreg``
    N-way multinomial logistic regression with exactly the objective of scikit-learn's
    ``LogisticRegression(C=1.0)``, ``C * sum_i logloss_i + 0.5 * ||W||_F^2`` with an unpenalised
    intercept, on L2-normalised features, solved for all episodes of a batch at once in torch.
    With ``n`` support points the optimal ``W`` lies in their span, so each episode reduces
    exactly to an ``n``-dimensional problem through one batched Gram matrix, solved by Newton's
    method (conjugate gradients preconditioned with Böhning's bound on the softmax Hessian,
    Armijo backtracking). See :func:`fit_logistic_regression`.
``logreg-sklearn``
    The scikit-learn per-episode loop; the reference the batched solver is tested against.
``prototype``
    Nearest class mean by cosine similarity (ProtoNet/SimpleShot style).
``simpleshot``, ``nn``
    SimpleShot with CL2N features (base-class mean from ``base_mean``) and 1-nearest neighbour;
    see :mod:`fewshot.classifiers.nearest`.
``svm``
    RFS's linear SVM (L2 norm, standardisation, one-vs-one linear SVC); see :mod:`fewshot.classifiers.svm`.
``ridge``
    R2D2's closed-form ridge regression; see :mod:`fewshot.classifiers.ridge`.
``bd-cspn``, ``laplacianshot``, ``tim``, ``pt-map``
    Transductive: they also use the episode's unlabelled queries; see
    :mod:`fewshot.classifiers.transductive`. :func:`is_transductive` tells them apart.

Every registered class has a ``transductive`` class attribute.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

__all__ = [
    "CLASSIFIERS",
    "ConvergenceWarning",
    "EpisodeClassifier",
    "LogisticRegression",
    "LogisticFit",
    "PrototypeClassifier",
    "SklearnLogisticRegression",
    "create_classifier",
    "fit_logistic_regression",
    "is_transductive",
    "list_classifiers",
]

try:  # reuse scikit-learn's category so filters written for it apply here too
    from sklearn.exceptions import ConvergenceWarning
except ImportError:  # pragma: no cover - scikit-learn is a dependency

    class ConvergenceWarning(UserWarning):  # type: ignore[no-redef]
        """The solver did not reach its tolerance within ``max_iter`` iterations."""


class EpisodeClassifier(Protocol):
    """What :func:`fewshot.evaluation.evaluate` needs from a classifier."""

    def fit(self, support: Any, support_labels: Any) -> EpisodeClassifier: ...

    def predict(self, query: Any, start: int = 0) -> np.ndarray: ...


# --------------------------------------------------------------------------- helpers

from fewshot.classifiers._tensors import as_batch as _as_batch  # noqa: E402
from fewshot.classifiers._tensors import as_labels as _as_labels  # noqa: E402
from fewshot.classifiers._tensors import check_positive as _check_positive  # noqa: E402
from fewshot.classifiers._tensors import episode_slice as _episode_slice  # noqa: E402
from fewshot.classifiers._tensors import l2_normalize as _l2_normalize  # noqa: E402
from fewshot.classifiers._tensors import safe_norm as _safe_norm  # noqa: E402


# --------------------------------------------------------------------------- logistic regression


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


def _gram_factor(G: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
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


def _objective(logits: torch.Tensor, theta: torch.Tensor, y: torch.Tensor, C: float, pen: torch.Tensor) -> torch.Tensor:
    """Per-episode objective from the support logits ``(E, n, K)`` of parameters ``theta``."""
    nll = torch.logsumexp(logits, dim=-1) - logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    return C * nll.sum(-1) + 0.5 * (theta.square() * pen).sum((-2, -1))


@contextlib.contextmanager
def _cpu_threads(n: int | None) -> Any:
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


def _bdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum((-2, -1))


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
    iterations. Each Newton system is solved by conjugate
    gradients preconditioned with Böhning's bound ``H <= (C/2)(I - 11^T/K) (x) Z~^T Z~ + R``,
    whose inverse needs one small factorisation per episode. For a singular ``G`` (duplicated
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
    E, n, d = X.shape
    K = int(n_classes)
    dev = X.device

    # The O(E n d) work runs in the input's precision, the small n-dimensional problem in
    # float64. Normalisation is applied to the Gram matrix (its diagonal holds the squared
    # norms) and folded into the coefficients, so the big support tensor is never rewritten.
    G = (X @ X.transpose(1, 2)).to(torch.float64)
    if normalize:
        norms = _safe_norm(G.diagonal(dim1=-2, dim2=-1).sqrt())
        G = G / (norms.unsqueeze(-1) * norms.unsqueeze(-2))
    # The n-dimensional solve below is hundreds of small ops per batch (the CG loop of 5-shot
    # runs up to K * (n + 1) = 130 iterations per Newton step). Each is just large enough to
    # become an OpenMP parallel region, and on a loaded machine every region waits for its
    # worker thread to be scheduled: 5-shot ran 3-4x slower under load. One thread does
    # them no slower on a quiet machine; the large ops (Gram matrix, gathers) stay parallel.
    with _cpu_threads(1 if dev.type == "cpu" else None):
        Z, T = _gram_factor(G, torch.finfo(X.dtype).eps)  # G = Z Z^T; back-transform A = W' T
        f64 = torch.float64
        Zt = torch.cat([Z, torch.ones(E, n, 1, dtype=f64, device=dev)], dim=-1)  # (E,n,n+1)
        p = n + 1
        pen = torch.ones(p, dtype=f64, device=dev)
        pen[-1] = 0.0  # intercept not penalised
        Y = torch.nn.functional.one_hot(labels, K).to(f64)  # (E, n, K)

        # Böhning preconditioner on the class-centred subspace: ((C/2) Z~^T Z~ + R)^-1
        B = 0.5 * C * (Zt.transpose(1, 2) @ Zt) + torch.diag(pen)
        Binv = torch.cholesky_inverse(torch.linalg.cholesky(B))

        def precondition(v: torch.Tensor) -> torch.Tensor:
            mean = v.mean(dim=1, keepdim=True)
            return (v - mean) @ Binv + mean * pen

        theta = torch.zeros(E, K, p, dtype=f64, device=dev)
        n_iter = torch.zeros(E, dtype=torch.long, device=dev)
        scale = C * n
        active = torch.ones(E, dtype=torch.bool, device=dev)
        logits = Zt @ theta.transpose(1, 2)  # (E, n, K), kept in step with theta
        f = _objective(logits, theta, labels, C, pen)
        for _ in range(max_iter + 1):
            P = torch.softmax(logits, dim=-1)
            grad = C * (P - Y).transpose(1, 2) @ Zt + theta * pen
            gmax = grad.abs().amax((-2, -1)) / scale
            active = active & (gmax > tol)
            if not bool(active.any()) or int(n_iter.max()) >= max_iter:
                break

            # --- Newton direction by preconditioned CG on H dx = -grad (inactive episodes frozen)
            def hvp(v: torch.Tensor) -> torch.Tensor:
                u = Zt @ v.transpose(1, 2)  # (E, n, K)
                su = P * u - P * (P * u).sum(-1, keepdim=True)
                return C * su.transpose(1, 2) @ Zt + v * pen

            forcing = torch.clamp(gmax.sqrt(), max=0.1)
            r = -grad * active[:, None, None]
            x = torch.zeros_like(theta)
            z = precondition(r)
            dirn = z
            rz = _bdot(r, z)
            r0 = r.norm(dim=(-2, -1))
            for _cg in range(K * p):
                cg_active = r.norm(dim=(-2, -1)) > forcing * r0
                if not bool(cg_active.any()):
                    break
                Hd = hvp(dirn)
                dHd = _bdot(dirn, Hd)
                alpha = torch.where(cg_active & (dHd > 0), rz / torch.where(dHd > 0, dHd, 1.0), 0.0)
                x = x + alpha[:, None, None] * dirn
                r = r - alpha[:, None, None] * Hd
                z = precondition(r)
                rz_new = _bdot(r, z)
                beta = torch.where(rz > 0, rz_new / torch.where(rz > 0, rz, 1.0), 0.0)
                dirn = z + beta[:, None, None] * dirn
                rz = rz_new

            # --- Armijo backtracking, per episode (the full Newton step is almost always taken)
            slope = _bdot(grad, x)
            step = torch.ones(E, dtype=f64, device=dev)
            accepted = ~active
            for _ls in range(40):
                cand = theta + step[:, None, None] * x
                cand_logits = Zt @ cand.transpose(1, 2)
                fc = _objective(cand_logits, cand, labels, C, pen)
                ok = (~accepted) & (fc <= f + 1e-4 * step * slope + 1e-12 * f.abs())
                theta = torch.where(ok[:, None, None], cand, theta)
                logits = torch.where(ok[:, None, None], cand_logits, logits)
                f = torch.where(ok, fc, f)
                accepted = accepted | ok
                if bool(accepted.all()):
                    break
                step = torch.where(accepted, step, 0.5 * step)
            n_iter = n_iter + active.long()

    converged = ~active
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
        _check_positive("C", self.C)
        _check_positive("max_iter", self.max_iter, integer=True)
        _check_positive("tol", self.tol)

    def fit(self, support: Any, support_labels: Any) -> LogisticRegression:
        """Fit every episode of ``support`` ``(E, n, d)`` with labels ``(E, n)`` or ``(n,)``."""
        self._validate_params()
        X = _as_batch(support, "support", self.device)
        y, K = _as_labels(support_labels, X.shape[0], X.shape[1], X.device)
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
        Q = _as_batch(query, "query", self._coef.device).to(self._coef.dtype)
        coef, intercept = _episode_slice(self._coef, self._intercept, start, Q)
        with torch.no_grad():
            logits = (Q @ coef.transpose(1, 2)).to(torch.float64)
            if self.normalize:  # scale the (E, m, K) logits rather than rewrite the query rows
                logits = logits / _safe_norm(Q.norm(dim=-1, keepdim=True).to(torch.float64))
            return logits + intercept.unsqueeze(1)

    def predict(self, query: Any, start: int = 0) -> np.ndarray:
        """Predicted labels ``(E', m)`` int64 of fitted episodes ``start..start+E'``."""
        return self._logits(query, start).argmax(-1).cpu().numpy()


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
        t = _as_batch(x, name).to(torch.float64)
        return (_l2_normalize(t) if self.normalize else t).cpu().numpy()

    def fit(self, support: Any, support_labels: Any) -> SklearnLogisticRegression:
        from sklearn.linear_model import LogisticRegression as SkLR

        _check_positive("C", self.C)
        _check_positive("max_iter", self.max_iter, integer=True)
        _check_positive("tol", self.tol)
        X = self._prep(support, "support")
        y, K = _as_labels(support_labels, X.shape[0], X.shape[1], torch.device("cpu"))
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
        X = _as_batch(support, "support", self.device)
        X = _l2_normalize(X if X.dtype == torch.float64 else X.float())
        y, K = _as_labels(support_labels, X.shape[0], X.shape[1], X.device)
        onehot = torch.nn.functional.one_hot(y, K).to(X.dtype)  # (E, n, K)
        sums = onehot.transpose(1, 2) @ X
        counts = onehot.sum(1).clamp_min(1).unsqueeze(-1)
        self._protos = _l2_normalize(sums / counts)
        self.prototypes_ = self._protos.cpu().numpy()
        return self

    def predict(self, query: Any, start: int = 0) -> np.ndarray:
        if not hasattr(self, "_protos"):
            raise RuntimeError("call fit() before predict()")
        Q = _l2_normalize(_as_batch(query, "query", self._protos.device).to(self._protos.dtype))
        protos, _ = _episode_slice(self._protos, None, start, Q)
        return (Q @ protos.transpose(1, 2)).argmax(-1).cpu().numpy()


from fewshot.classifiers.nearest import NearestNeighbor, SimpleShot  # noqa: E402
from fewshot.classifiers.ridge import RidgeClassifier  # noqa: E402
from fewshot.classifiers.svm import LinearSVM  # noqa: E402
from fewshot.classifiers.transductive import BDCSPN, PTMAP, TIM, LaplacianShot  # noqa: E402

#: Registry: classifier name -> class. ``create_classifier(name, **kwargs)`` instantiates one.
CLASSIFIERS: dict[str, type] = {
    "logreg": LogisticRegression,
    "logreg-sklearn": SklearnLogisticRegression,
    "prototype": PrototypeClassifier,
    "simpleshot": SimpleShot,
    "nn": NearestNeighbor,
    "svm": LinearSVM,
    "ridge": RidgeClassifier,
    "bd-cspn": BDCSPN,
    "laplacianshot": LaplacianShot,
    "tim": TIM,
    "pt-map": PTMAP,
}


def is_transductive(name: str) -> bool:
    """Whether the registered classifier ``name`` uses the episode's unlabelled queries.

    Raises:
        ValueError: unknown ``name``.
    """
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; expected one of {', '.join(CLASSIFIERS)}")
    return bool(getattr(CLASSIFIERS[name], "transductive", False))


def list_classifiers() -> list[str]:
    """Names accepted by :func:`create_classifier`."""
    return list(CLASSIFIERS)


def create_classifier(name: str, **kwargs: Any) -> EpisodeClassifier:
    """Instantiate a registered classifier.

    Raises:
        ValueError: unknown ``name`` (the message lists the registered names) or an argument
            the classifier does not take.
    """
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; expected one of {', '.join(CLASSIFIERS)}")
    try:
        return CLASSIFIERS[name](**kwargs)
    except TypeError as exc:
        raise ValueError(f"classifier {name!r}: {exc}") from None
