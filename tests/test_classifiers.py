import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression as SkLR

from fewshot.classifiers import (
    CLASSIFIERS,
    ConvergenceWarning,
    LogisticRegression,
    classifier_class,
    create_classifier,
    fit_logistic_regression,
    list_classifiers,
)
from fewshot.episodes import sample_episodes


def _synthetic(n_classes=10, per_class=40, d=64, spread=0.6, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, d))
    labels = np.repeat(np.arange(n_classes), per_class)
    feats = np.maximum(spread * centers[labels] + rng.normal(size=(labels.size, d)), 0)
    return feats.astype(dtype), labels


def _sklearn_reference(Xs, ys, C=1.0):
    """Per-episode scikit-learn fits to a tight tolerance, on L2-normalised rows."""
    coefs, intercepts, models = [], [], []
    for X in Xs:
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        m = SkLR(C=C, tol=1e-10, max_iter=10_000).fit(Xn, ys)
        coefs.append(m.coef_)
        intercepts.append(m.intercept_ - m.intercept_.mean())
        models.append(m)
    return np.stack(coefs), np.stack(intercepts), models


@pytest.mark.parametrize("n_shot", [1, 5])
def test_logreg_matches_sklearn_float64(n_shot):
    feats, labels = _synthetic()
    ep = sample_episodes(labels, 5, n_shot, 15, 200, seed=1)
    Xs, Xq = feats[ep.support], feats[ep.query]
    ours = LogisticRegression().fit(Xs, ep.support_labels)
    coef, intercept, models = _sklearn_reference(Xs, ep.support_labels)
    scale = np.abs(coef).max(axis=(1, 2), keepdims=True)
    assert np.max(np.abs(ours.coef_ - coef) / scale) < 1e-4
    assert np.max(np.abs(ours.intercept_ - intercept)) < 1e-4 * scale.max()
    assert ours.converged_.all()
    pred = ours.predict(Xq)
    ref = np.stack([m.predict(q / np.linalg.norm(q, axis=1, keepdims=True)) for m, q in zip(models, Xq)])
    assert (pred == ref).mean() >= 0.99


def test_logreg_float32_features_agree_in_accuracy():
    feats, labels = _synthetic(seed=4, dtype=np.float32)
    ep = sample_episodes(labels, 5, 5, 15, 100, seed=0)
    Xs, Xq = feats[ep.support], feats[ep.query]
    ours = LogisticRegression().fit(Xs, ep.support_labels)
    assert ours.coef_.dtype == np.float32
    _, _, models = _sklearn_reference(Xs.astype(np.float64), ep.support_labels)
    ref = np.stack(
        [m.predict(q / np.linalg.norm(q, axis=1, keepdims=True)) for m, q in zip(models, Xq.astype(np.float64))]
    )
    same_episode = (ours.predict(Xq) == ref).all(axis=1)
    assert same_episode.mean() >= 0.99


@pytest.mark.parametrize("C", [0.1, 10.0])
def test_logreg_other_C_and_without_normalisation(C):
    feats, labels = _synthetic(d=16, seed=2)
    ep = sample_episodes(labels, 5, 2, 5, 30, seed=0)
    Xs = feats[ep.support]
    ours = LogisticRegression(C=C, normalize=False).fit(Xs, ep.support_labels)
    for e in range(30):
        m = SkLR(C=C, tol=1e-10, max_iter=10_000).fit(Xs[e], ep.support_labels)
        np.testing.assert_allclose(ours.coef_[e], m.coef_, rtol=1e-4, atol=1e-6 * np.abs(m.coef_).max())


def test_duplicate_support_rows_and_low_dimension():
    # rank-deficient Gram matrices (duplicated rows; d < n) still give sklearn's optimum
    rng = np.random.default_rng(5)
    X = rng.normal(size=(3, 10, 4))
    X[:, 1] = X[:, 0]
    y = np.repeat(np.arange(5), 2)
    ours = LogisticRegression().fit(X, y)
    coef, _, _ = _sklearn_reference(X, y)
    np.testing.assert_allclose(ours.coef_, coef, rtol=1e-4, atol=1e-6)


def test_zero_feature_row_does_not_produce_nan():
    X = np.abs(np.random.default_rng(0).normal(size=(2, 5, 8)))
    X[:, 0] = 0.0
    clf = LogisticRegression().fit(X, np.arange(5))
    assert np.isfinite(clf.coef_).all()
    assert np.isfinite(clf.decision_function(X)).all()


def test_binary_episode_matches_sklearn():
    feats, labels = _synthetic(d=8, seed=3)
    ep = sample_episodes(labels, 2, 3, 5, 10, seed=0)
    Xs = feats[ep.support]
    ours = LogisticRegression().fit(Xs, ep.support_labels)
    for e in range(10):
        Xn = Xs[e] / np.linalg.norm(Xs[e], axis=1, keepdims=True)
        m = SkLR(tol=1e-10, max_iter=10_000).fit(Xn, ep.support_labels)
        # binary scikit-learn has one vector w; the symmetric multinomial optimum is (-w/2, w/2)
        np.testing.assert_allclose(ours.coef_[e, 1] - ours.coef_[e, 0], m.coef_[0], rtol=1e-4, atol=1e-7)


def test_nonconvergence_warns_with_count():
    feats, labels = _synthetic()
    ep = sample_episodes(labels, 5, 5, 15, 20, seed=0)
    with pytest.warns(ConvergenceWarning, match=r"did not converge in 20 of 20 episodes"):
        clf = LogisticRegression(max_iter=1).fit(feats[ep.support], ep.support_labels)
    assert not clf.converged_.any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LogisticRegression().fit(feats[ep.support], ep.support_labels)


def test_functional_solver_reports_iterations():
    feats, labels = _synthetic()
    ep = sample_episodes(labels, 5, 1, 15, 10, seed=0)
    fit = fit_logistic_regression(
        torch.from_numpy(feats[ep.support]), torch.from_numpy(ep.support_labels).expand(10, -1), 5
    )
    assert fit.coef.shape == (10, 5, feats.shape[1]) and fit.intercept.shape == (10, 5)
    assert bool(fit.converged.all()) and 1 <= int(fit.n_iter.max()) <= 20
    np.testing.assert_allclose(fit.intercept.sum(1).numpy(), 0, atol=1e-12)


def test_prototype_is_nearest_normalised_mean():
    feats, labels = _synthetic(d=12)
    ep = sample_episodes(labels, 5, 5, 15, 20, seed=0)
    Xs, Xq = feats[ep.support], feats[ep.query]
    pred = create_classifier("prototype").fit(Xs, ep.support_labels).predict(Xq)
    for e in range(20):
        S = Xs[e] / np.linalg.norm(Xs[e], axis=1, keepdims=True)
        protos = np.stack([S[ep.support_labels == k].mean(0) for k in range(5)])
        protos /= np.linalg.norm(protos, axis=1, keepdims=True)
        Q = Xq[e] / np.linalg.norm(Xq[e], axis=1, keepdims=True)
        np.testing.assert_array_equal(pred[e], (Q @ protos.T).argmax(1))


def _old_prototype_path(Xs, ys, Xq):
    """The former implementation: normalise every support and query row, then dot products."""

    def norm(t):
        return t / t.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(t.dtype).tiny ** 0.5)

    onehot = torch.nn.functional.one_hot(ys, int(ys.max()) + 1).to(Xs.dtype)
    protos = norm((onehot.transpose(1, 2) @ norm(Xs)) / onehot.sum(1).clamp_min(1).unsqueeze(-1))
    return protos, norm(Xq) @ protos.transpose(1, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prototype_scaled_logits_equal_the_normalise_then_dot_path(dtype):
    feats, labels = _synthetic(d=40, seed=6, dtype=dtype)
    feats *= np.random.default_rng(0).uniform(0.1, 10.0, size=(len(feats), 1)).astype(dtype)  # varied norms
    ep = sample_episodes(labels, 5, 3, 15, 30, seed=2)
    Xs, Xq, ys = feats[ep.support], feats[ep.query], np.tile(ep.support_labels, (30, 1))
    Xs[0, 0] = 0.0  # an all-zero support row
    Xq[1, :2] = 0.0  # all-zero queries
    ys[2][ys[2] == 4] = 3  # an episode without class 4: a zero prototype
    clf = create_classifier("prototype").fit(Xs, ys)
    protos, scores = _old_prototype_path(torch.from_numpy(Xs), torch.from_numpy(ys), torch.from_numpy(Xq))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(clf.prototypes_, protos.numpy(), rtol=tol, atol=tol)
    got = clf.decision_function(Xq)
    assert got.shape == (30, 75, 5) and got.dtype == dtype
    np.testing.assert_allclose(got, scores.numpy(), rtol=tol, atol=tol)
    np.testing.assert_array_equal(got[1, :2], 0.0)
    np.testing.assert_array_equal(clf.predict(Xq), scores.argmax(-1).numpy())
    np.testing.assert_array_equal(clf.predict(Xq[10:20], start=10), scores[10:20].argmax(-1).numpy())


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_registry_classifiers_learn(name):
    feats, labels = _synthetic(spread=1.5)
    ep = sample_episodes(labels, 5, 5, 15, 8, seed=0)
    clf = create_classifier(name).fit(feats[ep.support], ep.support_labels)
    pred = clf.predict(feats[ep.query])
    assert pred.shape == (8, 75) and pred.dtype == np.int64
    assert (pred == ep.query_labels).mean() > 0.8


def test_registry_errors():
    assert list_classifiers()[:3] == ["logreg", "logreg-sklearn", "prototype"]
    with pytest.raises(
        ValueError, match="unknown classifier 'knn'; expected one of logreg, logreg-sklearn, prototype, simpleshot"
    ):
        create_classifier("knn")
    with pytest.raises(ValueError, match="classifier 'prototype'"):
        create_classifier("prototype", C=2.0)
    with pytest.raises(ValueError, match=r"unknown classifier \['logreg'\]"):
        classifier_class(["logreg"])


def test_list_classifiers_filters_by_pattern():
    assert list_classifiers() == list(CLASSIFIERS) == list_classifiers("*")
    assert list_classifiers("logreg*") == ["logreg", "logreg-sklearn"]
    assert list_classifiers("*-*") == ["logreg-sklearn", "bd-cspn", "pt-map"]
    assert list_classifiers("knn") == []


def test_registry_resolves_lazily_to_the_classes():
    import fewshot
    import fewshot.classifiers as package
    from fewshot.classifiers.logreg import LogisticRegression as Direct

    assert classifier_class("logreg") is Direct is package.LogisticRegression is fewshot.LogisticRegression
    assert fewshot.CLASSIFIERS is CLASSIFIERS and all(CLASSIFIERS[n] is classifier_class(n) for n in list_classifiers())
    with pytest.raises(TypeError):  # read-only: a name added here would not reach create_classifier
        CLASSIFIERS["knn"] = object
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        package.Nope  # noqa: B018  (the attribute access is what is tested)
    assert {"TIM", "fit_logistic_regression", "list_classifiers"} <= set(dir(package))


def test_registry_imports_without_torch():
    code = (
        "import sys\nimport fewshot.classifiers as c\n"
        "names = c.list_classifiers()\nassert 'logreg' in names and c.is_transductive('tim')\n"
        "assert not c.is_transductive('logreg') and c.list_classifiers('pt-*') == ['pt-map']\n"
        "from fewshot._names import CLASSIFIER_NAMES\nassert CLASSIFIER_NAMES == tuple(names)\n"
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'torch/numpy imported'\n"
        "c.create_classifier('prototype')\nassert 'torch' in sys.modules\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"C": 0}, "C must be a positive number, got 0"),
        ({"max_iter": 0}, "max_iter must be a positive integer"),
        ({"tol": -1.0}, "tol must be a positive number"),
    ],
)
def test_parameter_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LogisticRegression(**kwargs).fit(np.ones((1, 5, 3)), np.arange(5))


def test_input_validation():
    clf = LogisticRegression()
    with pytest.raises(ValueError, match=r"support must have shape \(E, n, d\)"):
        clf.fit(np.ones(5), np.arange(5))
    with pytest.raises(TypeError, match="support_labels must be integers"):
        clf.fit(np.ones((1, 5, 3)), np.arange(5.0))
    with pytest.raises(ValueError, match=r"support_labels must have shape \(1, 5\) or \(5,\)"):
        clf.fit(np.ones((1, 5, 3)), np.arange(4))
    with pytest.raises(RuntimeError, match="call fit"):
        LogisticRegression().predict(np.ones((1, 5, 3)))
