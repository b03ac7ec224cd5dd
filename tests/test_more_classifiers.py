"""The classifiers added for LibFewShot / easyfsl / RFS users, each against an independent
reference on identical episodes: scikit-learn where it has one, easyfsl 1.5.0 (test-only
dependency; those tests skip without it) for SimpleShot and the transductive methods."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge
from sklearn.linear_model import RidgeClassifier as SkRidgeClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler, normalize
from sklearn.svm import SVC

from fewshot.classifiers import CLASSIFIERS, ConvergenceWarning, create_classifier, is_transductive
from fewshot.classifiers.nearest import NearestNeighbor, SimpleShot
from fewshot.classifiers.ridge import RidgeClassifier
from fewshot.classifiers.svm import LinearSVM
from fewshot.classifiers.transductive import BDCSPN, PTMAP, TIM, LaplacianShot
from fewshot.episodes import sample_episodes
from fewshot.evaluation import evaluate


def _synthetic(n_classes=10, per_class=40, d=48, spread=0.6, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, d))
    labels = np.repeat(np.arange(n_classes), per_class)
    feats = np.maximum(spread * centers[labels] + rng.normal(size=(labels.size, d)), 0)
    return feats.astype(dtype), labels


def _episodes(n_shot, n=40, seed=1, **kw):
    feats, labels = _synthetic(**kw)
    ep = sample_episodes(labels, 5, n_shot, 15, n, seed=seed)
    return feats, labels, ep, feats[ep.support], feats[ep.query]


# --------------------------------------------------------------------------- inductive, vs scikit-learn / numpy


@pytest.mark.parametrize("n_shot", [1, 5])
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_nn_matches_sklearn_1nn(n_shot, metric):
    _, _, ep, Xs, Xq = _episodes(n_shot)
    pred = NearestNeighbor(metric=metric).fit(Xs, ep.support_labels).predict(Xq)
    for e in range(len(ep)):
        ref = (
            KNeighborsClassifier(n_neighbors=1, metric=metric, algorithm="brute")
            .fit(Xs[e], ep.support_labels)
            .predict(Xq[e])
        )
        np.testing.assert_array_equal(pred[e], ref)


@pytest.mark.parametrize("n_shot", [1, 5])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_simpleshot_is_cl2n_nearest_centroid(n_shot, metric):
    feats, _, ep, Xs, Xq = _episodes(n_shot)
    base = np.random.default_rng(3).normal(size=feats.shape[1]) * 0.1 + feats.mean(0)
    clf = SimpleShot(base_mean=base, metric=metric).fit(Xs, ep.support_labels)
    pred = clf.predict(Xq)
    for e in range(len(ep)):
        S, Q = normalize(Xs[e] - base), normalize(Xq[e] - base)
        protos = np.stack([S[ep.support_labels == k].mean(0) for k in range(5)])
        np.testing.assert_allclose(clf.prototypes_[e], protos, atol=1e-12)
        if metric == "euclidean":
            ref = ((Q[:, None] - protos[None]) ** 2).sum(-1).argmin(1)
        else:
            ref = (Q @ normalize(protos).T).argmax(1)
        np.testing.assert_array_equal(pred[e], ref)


def test_simpleshot_base_mean_validation():
    with pytest.raises(ValueError, match="base_mean must be a finite float vector of length 4"):
        SimpleShot(base_mean=np.zeros(3)).fit(np.ones((1, 5, 4)), np.arange(5))
    with pytest.raises(ValueError, match="metric must be one of euclidean, cosine, got 'l1'"):
        SimpleShot(metric="l1").fit(np.ones((1, 5, 4)), np.arange(5))


@pytest.mark.parametrize("n_shot", [1, 5])
@pytest.mark.parametrize("normalize_rows", [False, True])
def test_ridge_matches_sklearn(n_shot, normalize_rows):
    _, _, ep, Xs, Xq = _episodes(n_shot)
    clf = RidgeClassifier(lam=50.0 if not normalize_rows else 0.5, normalize=normalize_rows).fit(Xs, ep.support_labels)
    pred = clf.predict(Xq)
    onehot = np.eye(5)[ep.support_labels]
    for e in range(len(ep)):
        S, Q = (normalize(Xs[e]), normalize(Xq[e])) if normalize_rows else (Xs[e], Xq[e])
        ref = Ridge(alpha=clf.lam, fit_intercept=False).fit(S, onehot)
        np.testing.assert_allclose(clf.coef_[e], ref.coef_, rtol=1e-8, atol=1e-12)
        # RidgeClassifier's {-1, 1} targets shift all class scores alike: same predictions
        np.testing.assert_array_equal(
            pred[e], SkRidgeClassifier(alpha=clf.lam, fit_intercept=False).fit(S, ep.support_labels).predict(Q)
        )


def _rfs_svm(S, y):
    return make_pipeline(StandardScaler(), SVC(kernel="linear", C=1.0, tol=1e-8, decision_function_shape="ovo")).fit(
        normalize(S), y
    )


@pytest.mark.parametrize("n_shot", [1, 5])
def test_svm_reproduces_sklearn_rfs_pipeline(n_shot):
    _, _, ep, Xs, Xq = _episodes(n_shot, n=30)
    clf = LinearSVM().fit(Xs, ep.support_labels)
    assert clf.converged_.all()
    pred, dec = clf.predict(Xq), clf.decision_function(Xq)
    for e in range(len(ep)):
        ref = _rfs_svm(Xs[e], ep.support_labels)
        np.testing.assert_array_equal(pred[e], ref.predict(normalize(Xq[e])))
        # scikit-learn's ovo decision value of pair (i, j) is positive for class i, like ours
        np.testing.assert_allclose(dec[e], ref.decision_function(normalize(Xq[e])), atol=1e-5)


def test_svm_soft_margin_with_bounded_multipliers():
    # few features, overlapping classes, small C: many multipliers at the bound C
    feats, labels = _synthetic(d=3, spread=0.3, seed=7)
    ep = sample_episodes(labels, 4, 10, 10, 10, seed=0)
    Xs, Xq = feats[ep.support], feats[ep.query]
    clf = LinearSVM(C=0.05).fit(Xs, ep.support_labels)
    same = []
    for e in range(len(ep)):
        ref = make_pipeline(
            StandardScaler(), SVC(kernel="linear", C=0.05, tol=1e-8, decision_function_shape="ovo")
        ).fit(normalize(Xs[e]), ep.support_labels)
        np.testing.assert_allclose(
            clf.decision_function(Xq[e : e + 1], start=e)[0], ref.decision_function(normalize(Xq[e])), atol=1e-4
        )
        same.append(np.mean(clf.predict(Xq[e : e + 1], start=e)[0] == ref.predict(normalize(Xq[e]))))
    assert np.mean(same) >= 0.99


def test_svm_nonconvergence_warns():
    _, _, ep, Xs, _ = _episodes(5, n=3)
    with pytest.warns(ConvergenceWarning, match=r"did not converge in \d+ of 30 pairwise problems"):
        LinearSVM(max_iter=1).fit(Xs, ep.support_labels)


# --------------------------------------------------------------------------- vs easyfsl 1.5.0


def _easyfsl_scores(model, Xs, ys, Xq):
    out = []
    for e in range(len(Xs)):
        model.process_support_set(torch.from_numpy(Xs[e]), torch.from_numpy(ys))
        out.append(model(torch.from_numpy(Xq[e])).detach().numpy())
    return np.stack(out)


def _easyfsl(name):
    methods = pytest.importorskip("easyfsl.methods", reason="easyfsl (test-only dependency) is not installed")
    return getattr(methods, name)


@pytest.mark.parametrize("n_shot", [1, 5])
def test_simpleshot_matches_easyfsl(n_shot):
    feats, _, ep, Xs, Xq = _episodes(n_shot, dtype=np.float32)
    base = feats.mean(0)
    ref = _easyfsl_scores(
        _easyfsl("SimpleShot")(feature_centering=torch.from_numpy(base), feature_normalization=2),
        Xs,
        ep.support_labels,
        Xq,
    )
    ours = SimpleShot(base_mean=base, metric="cosine").fit(Xs, ep.support_labels).decision_function(Xq)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    np.testing.assert_array_equal(ours.argmax(-1), ref.argmax(-1))


@pytest.mark.parametrize("n_shot", [1, 5])
@pytest.mark.parametrize(
    "ours, theirs, unit, atol",
    [
        (BDCSPN, "BDCSPN", False, 1e-5),
        (LaplacianShot, "LaplacianShot", False, 1e-5),
        (TIM, "TIM", False, 1e-5),
        (PTMAP, "PTMAP", True, 5e-3),
    ],
)
def test_transductive_match_easyfsl_defaults(n_shot, ours, theirs, unit, atol):
    # PT-MAP on L2-normalised rows: on raw features easyfsl's exp(-10 * cost) underflows to 0/0 (NaN)
    feats, labels = _synthetic(dtype=np.float32, d=32)
    if unit:
        feats = normalize(feats).astype(np.float32)
    ep = sample_episodes(labels, 5, n_shot, 15, 12, seed=2)
    Xs, Xq = feats[ep.support], feats[ep.query]
    ref = _easyfsl_scores(_easyfsl(theirs)(), Xs, ep.support_labels, Xq)
    got = ours().fit(Xs, ep.support_labels).decision_function(Xq)
    assert np.isfinite(ref).all()
    np.testing.assert_allclose(got, ref, atol=atol)
    np.testing.assert_array_equal(got.argmax(-1), ref.argmax(-1))


def test_ptmap_stays_finite_where_easyfsl_underflows():
    feats, labels, ep, Xs, Xq = _episodes(5, n=10, dtype=np.float32)
    got = PTMAP().fit(Xs, ep.support_labels).decision_function(Xq)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got.sum(1), 15.0, rtol=1e-4)  # Sinkhorn's last step: column sums m // K
    assert (got.argmax(-1) == ep.query_labels).mean() > 0.5


# --------------------------------------------------------------------------- registry and evaluate


def test_transductive_flags():
    assert [n for n in CLASSIFIERS if is_transductive(n)] == ["bd-cspn", "laplacianshot", "tim", "pt-map"]
    # the torch-free table agrees with every class's own attribute
    assert {n: is_transductive(n) for n in CLASSIFIERS} == {n: cls.transductive for n, cls in CLASSIFIERS.items()}
    with pytest.raises(ValueError, match="unknown classifier 'x'"):
        is_transductive("x")


@pytest.mark.parametrize("name", ["simpleshot", "nn", "svm", "ridge", "bd-cspn", "laplacianshot", "tim", "pt-map"])
def test_evaluate_batches_like_one_call(name):
    # batch_size splits fits and query chunks; the result must not depend on it
    feats, labels = _synthetic(d=24, spread=1.0)
    ep = sample_episodes(labels, 5, 2, 15, 13, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = evaluate(feats, labels, ep, name, batch_size=1000)
        b = evaluate(feats, labels, ep, name, batch_size=4)
    np.testing.assert_allclose(a, b, atol=1e-12)
    assert a.mean() > 0.5


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("svm", {"C": 0}, "C must be a positive number"),
        ("ridge", {"lam": -1.0}, "lam must be a positive number"),
        ("laplacianshot", {"knn": 0}, "knn must be a positive integer"),
        ("tim", {"fine_tuning_steps": 1.5}, "fine_tuning_steps must be a positive integer"),
        ("tim", {"marginal_entropy_weight": -1}, "marginal_entropy_weight must be a non-negative number"),
        ("pt-map", {"power_factor": 0}, "power_factor must be a positive number"),
        ("nn", {"metric": "l1"}, "metric must be one of"),
    ],
)
def test_hyper_parameter_validation(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_classifier(name, **kwargs).fit(np.ones((1, 5, 3)), np.arange(5))


def test_predict_before_fit_and_shape_mismatch():
    for name in ("simpleshot", "nn", "svm", "ridge", "bd-cspn"):
        with pytest.raises(RuntimeError, match="call fit"):
            create_classifier(name).predict(np.ones((1, 5, 3)))
        clf = create_classifier(name).fit(np.random.default_rng(0).normal(size=(2, 5, 3)), np.arange(5))
        with pytest.raises(ValueError, match="does not match the fitted batch"):
            clf.predict(np.ones((2, 5, 4)))
