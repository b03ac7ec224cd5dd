import json

import numpy as np
import pandas as pd
import pytest
from conftest import make_features

from fewshot.classifiers import create_classifier
from fewshot.episodes import load_episodes, sample_episodes
from fewshot.evaluation import evaluate, run_protocol
from fewshot.features import FeatureSet, load_features
from fewshot.results import EPISODE_COLUMNS, read_results


def test_evaluate_matches_a_plain_loop():
    feats, labels = make_features(spread=0.5)
    ep = sample_episodes(labels, 5, 5, 10, 25, seed=0)
    acc = evaluate(feats, labels, ep, "logreg", batch_size=7)  # uneven batches
    ref = create_classifier("logreg-sklearn", tol=1e-10, max_iter=10_000)
    for e in range(25):
        ref.fit(feats[ep.support[e : e + 1]], ep.support_labels)
        pred = ref.predict(feats[ep.query[e : e + 1]])[0]
        assert acc[e] == pytest.approx((pred == ep.query_labels).mean())
    assert acc.shape == (25,) and ((0 <= acc) & (acc <= 1)).all()


def test_evaluate_refuses_foreign_episodes():
    feats, labels = make_features()
    ep = sample_episodes(labels, 5, 1, 15, 5, seed=0)
    with pytest.raises(ValueError, match="episodes do not match these labels"):
        evaluate(feats, np.roll(labels, 1), ep)
    with pytest.raises(ValueError, match="only 100 labels"):
        evaluate(feats[:100], labels[:100], ep)


def test_run_protocol_tidy_rows():
    feats, labels = make_features()
    df = run_protocol(feats, labels, dataset="toy", shots=(1, 5), seeds=(0, 1), n_episodes=20, progress=False)
    assert list(df.columns) == list(EPISODE_COLUMNS)
    assert len(df) == 2 * 2 * 20
    assert set(df.n_shot) == {1, 5} and set(df.seed) == {0, 1}
    assert df.groupby(["n_shot", "seed"]).episodes_fingerprint.nunique().eq(1).all()
    assert df.episodes_fingerprint.nunique() == 4
    assert df.features_fingerprint.nunique() == 1
    # same features and protocol -> identical rows (every method sees the same tasks)
    again = run_protocol(
        FeatureSet(feats, labels, dataset="toy"), shots=(1, 5), seeds=(0, 1), n_episodes=20, progress=False
    )
    pd.testing.assert_frame_equal(df, again)


def test_run_protocol_validates_before_work():
    feats, labels = make_features(per_class=12)
    with pytest.raises(ValueError, match=r"class 0 has 12 items, fewer than n_shot \+ n_query = 1 \+ 15 = 16"):
        run_protocol(feats, labels, shots=(1, 5))
    with pytest.raises(ValueError, match="unknown classifier"):
        run_protocol(feats, labels, shots=(1,), n_query=5, classifier="knn")


def test_load_features_validation(tmp_path):
    feats, labels = make_features()
    cases = {
        "nan": (
            {"features": np.where(np.arange(feats.size).reshape(feats.shape) == 5, np.nan, feats), "labels": labels},
            "NaN or Inf in 1 row",
        ),
        "oned": ({"features": feats[:, 0], "labels": labels}, r"2-D array \(N, d\), got shape \(240,\)"),
        "count": ({"features": feats, "labels": labels[:-1]}, "239 labels for 240 feature rows"),
        "nolabels": ({"features": feats}, r"missing key\(s\) \['labels'\]"),
        "floatlabels": ({"features": feats, "labels": labels.astype(float)}, "labels must be integers"),
    }
    for name, (arrays, match) in cases.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, **arrays)
        with pytest.raises(ValueError, match=match):
            load_features(path)
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_features(tmp_path / "garbage.npz")
    with pytest.raises(FileNotFoundError, match="features file not found"):
        load_features(tmp_path / "absent.npz")


def test_cli_end_to_end(tmp_path, features_file, run_cli):
    out = tmp_path / "res"
    status, stdout, stderr = run_cli(
        "evaluate",
        "--features",
        features_file,
        "--shots",
        "1",
        "5",
        "--episodes",
        "30",
        "--seeds",
        "0",
        "1",
        "--label",
        "Toy / CE",
        "--out",
        out,
    )
    assert status == 0, stderr
    assert "mean" in stdout and "ci95" in stdout
    res = read_results(out)
    assert res.label == "Toy / CE"
    assert len(res.episodes) == 2 * 2 * 30
    assert set(res.episodes.dataset) == {"toy"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["features"]["fingerprint"] == load_features(features_file).fingerprint
    assert manifest["config"]["shots"] == [1, 5] and manifest["config"]["episodes"] == 30
    assert {"numpy", "torch", "scikit-learn"} <= set(manifest["environment"]["versions"])
    files = sorted(p.name for p in (out / "episodes").iterdir())
    assert files == sorted(manifest["episodes"])
    for f in files:
        ep = load_episodes(out / "episodes" / f)
        assert ep.fingerprint == manifest["episodes"][f]
        assert ep.fingerprint in set(res.episodes.episodes_fingerprint)
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 4
    # no temporary directories left behind
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cli_protocol_file(tmp_path, features_file, run_cli):
    proto = tmp_path / "toy.toml"
    proto.write_text(
        'dataset = "toy"\nsplit = "test"\nways = 4\nshots = [2]\nqueries = 5\nepisodes = 12\nseeds = [3]\n'
    )
    status, _, err = run_cli("evaluate", "--features", features_file, "--protocol", proto, "--out", tmp_path / "r")
    assert status == 0, err
    res = read_results(tmp_path / "r")
    assert set(res.episodes.n_way) == {4} and set(res.episodes.n_shot) == {2} and set(res.episodes.seed) == {3}
    assert res.manifest["protocol_file"]["sha256"]
    # flags override the protocol file
    status, _, err = run_cli(
        "evaluate", "--features", features_file, "--protocol", proto, "--episodes", "3", "--out", tmp_path / "r2"
    )
    assert status == 0 and len(read_results(tmp_path / "r2").episodes) == 3
    # a protocol for another dataset is refused
    other = tmp_path / "other.toml"
    other.write_text('dataset = "cifar-fs"\n')
    status, _, err = run_cli("evaluate", "--features", features_file, "--protocol", other, "--out", tmp_path / "r3")
    assert status == 2 and "dataset 'toy' but the protocol is for 'cifar-fs'" in err


@pytest.mark.parametrize(
    "setup, args, match",
    [
        ("missing", [], "features file not found"),
        ("nan", [], "NaN or Inf"),
        ("oned", [], "2-D array"),
        ("count", [], "labels for"),
        ("nokey", [], "missing key"),
        ("ok", ["--ways", "9"], r"n_way=9 exceeds the number of classes \(8\)"),
        ("ok", ["--queries", "40"], "fewer than n_shot"),
        ("ok", ["--episodes", "0"], "episodes must be a positive integer, got 0"),
        ("ok", ["--shots", "0"], "shots must be a non-empty list of integers >= 1"),
    ],
)
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, run_cli, setup, args, match):
    feats, labels = make_features()
    path = tmp_path / "f.npz"
    arrays = {"features": feats, "labels": labels}
    if setup == "nan":
        feats = feats.copy()
        feats[3, 3] = np.inf
        arrays["features"] = feats
    elif setup == "oned":
        arrays["features"] = feats[:, 0]
    elif setup == "count":
        arrays["labels"] = labels[:10]
    elif setup == "nokey":
        del arrays["labels"]
    if setup != "missing":
        np.savez(path, **arrays)
    out = tmp_path / "out"
    status, stdout, stderr = run_cli("evaluate", "--features", path, "--out", out, *args)
    assert status == 2
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert stderr.startswith("fewshot evaluate: error:")
    assert __import__("re").search(match, stderr)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] in (["f.npz"], [])


@pytest.mark.parametrize("classifier", ["logreg", "prototype"])
def test_batching_does_not_change_results(classifier):
    # one fit batch of 600 with queries scored 250 episodes at a time (predict(start=0, 250, 500)),
    # and fit batches of 300 (queries at start=0, 250 in each), must equal fitting episode by
    # episode (batch_size=1). Episode e fitted alone depends on nothing else, so fitting alone is
    # checked on a subset: every episode next to a fit or query boundary, and a stride through
    # the rest (600 single fits took most of this test's time and checked nothing more).
    feats, labels = make_features(spread=0.4)
    ep = sample_episodes(labels, 5, 1, 15, 600, seed=4)
    together = evaluate(feats, labels, ep, classifier)
    np.testing.assert_array_equal(evaluate(feats, labels, ep, classifier, batch_size=300), together)
    windows = [(0, 2), (249, 252), (299, 302), (499, 502), (549, 552), (598, 600)]  # the boundaries
    windows += [(e, e + 2) for e in range(13, 590, 41)]  # and a stride through the rest
    for lo, hi in windows:  # several episodes per call, so the batch_size=1 loop runs too
        alone = evaluate(feats, labels, ep[lo:hi], classifier, batch_size=1)
        np.testing.assert_array_equal(alone, together[lo:hi], err_msg=f"episodes {lo}:{hi}")
    assert len(set(together)) > 1  # accuracies vary, so agreement is no coincidence


def test_predict_start_is_checked():
    clf = create_classifier("logreg").fit(np.random.default_rng(0).random((4, 5, 3)), np.arange(5))
    with pytest.raises(ValueError, match=r"from episode 3 does not match the fitted batch \(E=4, d=3\)"):
        clf.predict(np.ones((2, 7, 3)), start=3)
