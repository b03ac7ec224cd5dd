"""The contract every episode classifier follows, and the warning the iterative ones emit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ConvergenceWarning", "EpisodeClassifier"]

try:  # reuse scikit-learn's category so filters written for it apply here too
    from sklearn.exceptions import ConvergenceWarning
except ImportError:  # pragma: no cover - scikit-learn is a dependency

    class ConvergenceWarning(UserWarning):  # type: ignore[no-redef]
        """The solver did not reach its tolerance within ``max_iter`` iterations."""


class EpisodeClassifier(Protocol):
    """What :func:`fewshot.evaluation.evaluate` needs from a classifier."""

    def fit(self, support: Any, support_labels: Any) -> EpisodeClassifier: ...

    def predict(self, query: Any, start: int = 0) -> np.ndarray: ...
