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

from typing import Any

from fewshot.classifiers._base import ConvergenceWarning, EpisodeClassifier
from fewshot.classifiers.logreg import LogisticFit, LogisticRegression, fit_logistic_regression
from fewshot.classifiers.nearest import NearestNeighbor, SimpleShot
from fewshot.classifiers.prototype import PrototypeClassifier
from fewshot.classifiers.ridge import RidgeClassifier
from fewshot.classifiers.sklearn import SklearnLogisticRegression
from fewshot.classifiers.svm import LinearSVM
from fewshot.classifiers.transductive import BDCSPN, PTMAP, TIM, LaplacianShot

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
