"""Episode classifiers fitted on frozen support features, many episodes at once.

Every classifier follows a scikit-learn-like contract over a *batch* of episodes:
``fit(support, support_labels)`` with ``support`` of shape ``(E, n, d)`` and labels ``(E, n)``
(or ``(n,)``, shared by all episodes) in ``0..K-1``, returns ``self``; ``predict(query)`` with
``query`` of shape ``(E, m, d)`` returns ``(E, m)`` int64 predictions. Learned attributes end in
``_``.

Registry (:func:`list_classifiers`, :func:`create_classifier`; the CLI takes its choices from
it). This module imports neither torch nor numpy: the names and the ``transductive`` flags are
plain tables here, and a class (with torch) is imported only when it is first used, by
:func:`create_classifier`, :func:`classifier_class`, ``CLASSIFIERS`` (a read-only mapping
name -> class; reading it imports every class) or an attribute such as ``fewshot.classifiers.LogisticRegression``.

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

Every registered class has a ``transductive`` class attribute, equal to
:func:`is_transductive` of its name (tested). The modules: :mod:`~fewshot.classifiers.logreg`
over the solver in :mod:`~fewshot.classifiers._newton`, :mod:`~fewshot.classifiers.sklearn`,
:mod:`~fewshot.classifiers.prototype`, :mod:`~fewshot.classifiers.nearest`,
:mod:`~fewshot.classifiers.svm`, :mod:`~fewshot.classifiers.ridge`,
:mod:`~fewshot.classifiers.transductive`; the shared contract in ``_base`` and tensor helpers
in ``_tensors``; command-line hyper-parameters in :mod:`~fewshot.classifiers.options`.
"""

from __future__ import annotations

import fnmatch
import importlib
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fewshot.classifiers._base import EpisodeClassifier

__all__ = [
    "BDCSPN",
    "CLASSIFIERS",
    "ConvergenceWarning",
    "EpisodeClassifier",
    "LaplacianShot",
    "LinearSVM",
    "LogisticFit",
    "LogisticRegression",
    "NearestNeighbor",
    "PTMAP",
    "PrototypeClassifier",
    "RidgeClassifier",
    "SimpleShot",
    "SklearnLogisticRegression",
    "TIM",
    "classifier_class",
    "create_classifier",
    "fit_logistic_regression",
    "is_transductive",
    "list_classifiers",
]

#: The registry: name -> (``"module:Class"`` within this package, transductive?), in the order
#: the CLI lists them (``logreg``, the default, first).
_REGISTRY: dict[str, tuple[str, bool]] = {
    "logreg": ("logreg:LogisticRegression", False),
    "logreg-sklearn": ("sklearn:SklearnLogisticRegression", False),
    "prototype": ("prototype:PrototypeClassifier", False),
    "simpleshot": ("nearest:SimpleShot", False),
    "nn": ("nearest:NearestNeighbor", False),
    "svm": ("svm:LinearSVM", False),
    "ridge": ("ridge:RidgeClassifier", False),
    "bd-cspn": ("transductive:BDCSPN", True),
    "laplacianshot": ("transductive:LaplacianShot", True),
    "tim": ("transductive:TIM", True),
    "pt-map": ("transductive:PTMAP", True),
}

#: Public names that are not registry entries -> their module within this package.
_LAZY: dict[str, str] = {
    "ConvergenceWarning": "_base",
    "EpisodeClassifier": "_base",
    "LogisticFit": "logreg",
    "fit_logistic_regression": "logreg",
}


def _entry(name: str) -> tuple[str, bool]:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown classifier {name!r}; expected one of {', '.join(_REGISTRY)}") from None


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), attr)


def list_classifiers(pattern: str = "*") -> list[str]:
    """Registered names matching the shell-style ``pattern`` (:func:`fnmatch.fnmatch`), in
    registry order (``logreg``, the default, first). Imports no classifier."""
    return [name for name in _REGISTRY if fnmatch.fnmatch(name, pattern)]


def is_transductive(name: str) -> bool:
    """Whether the registered classifier ``name`` uses the episode's unlabelled queries.
    Imports no classifier.

    Raises:
        ValueError: unknown ``name``.
    """
    return _entry(name)[1]


def classifier_class(name: str) -> type:
    """The class registered as ``name``, imported on first use.

    Raises:
        ValueError: unknown ``name`` (the message lists the registered names).
    """
    return _load(_entry(name)[0])


def create_classifier(name: str, **kwargs: Any) -> EpisodeClassifier:
    """Instantiate a registered classifier (importing its module on first use).

    Raises:
        ValueError: unknown ``name`` (the message lists the registered names) or an argument
            the classifier does not take.
    """
    cls = classifier_class(name)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"classifier {name!r}: {exc}") from None


def __getattr__(name: str) -> Any:
    # ``CLASSIFIERS`` (name -> class) and the classes themselves load torch, so they are
    # resolved on first access and then cached in the module's namespace.
    if name == "CLASSIFIERS":  # read-only: registering goes through _REGISTRY
        value: Any = types.MappingProxyType({n: classifier_class(n) for n in _REGISTRY})
    elif name in _LAZY:
        value = _load(f"{_LAZY[name]}:{name}")
    else:
        target = next((t for t, _ in _REGISTRY.values() if t.endswith(f":{name}")), None)
        if target is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = _load(target)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
