"""Per-class accuracy: kept by evaluate --per-class, compared and plotted per class."""

import math

import numpy as np
import pandas as pd
import pytest
from conftest import make_features
from scipy import stats as st

from fewshot.classifiers import create_classifier
from fewshot.episodes import sample_episodes
from fewshot.evaluation import evaluate
from fewshot.features import load_features
from fewshot.report.per_class import compare_per_class, per_class_accuracy
from fewshot.results import read_results


def test_evaluate_per_class_counts_match_a_loop():
    feats, labels = make_features(spread=0.5)
    ep = sample_episodes(labels, 5, 1, 6, 30, seed=0)
    acc, correct = evaluate(feats, labels, ep, "prototype", batch_size=7, return_per_class=True)
    clf = create_classifier("prototype")
    for e in range(30):
        pred = clf.fit(feats[ep.support[e : e + 1]], ep.support_labels).predict(feats[ep.query[e : e + 1]])[0]
        for k in range(5):
            rows = ep.query_labels == k
            assert correct[e, k] == (pred[rows] == k).sum()
        assert acc[e] == pytest.approx(correct[e].sum() / 30)


@pytest.fixture
def per_class_results(tmp_path, features_file, run_cli):
    common = (
        "evaluate",
        "--features",
        features_file,
        "--ways",
        "4",
        "--shots",
        "1",
        "--queries",
        "5",
        "--episodes",
        "40",
        "--seeds",
        "0",
        "1",
        "--per-class",
    )
    for clf in ("logreg", "nn"):
        status, _, err = run_cli(*common, "--classifier", clf, "--label", clf, "--out", tmp_path / clf)
        assert status == 0, err
    return [tmp_path / "logreg", tmp_path / "nn"]


def test_per_class_columns_and_accuracy(per_class_results, features_file):
    res = read_results(per_class_results[0])
    df = res.episodes
    assert [c for c in df.columns if c.startswith(("class_", "correct_"))] == [f"class_{k}" for k in range(4)] + [
        f"correct_{k}" for k in range(4)
    ]
    np.testing.assert_allclose(df[[f"correct_{k}" for k in range(4)]].sum(axis=1) / 20, df["accuracy"])
    assert res.manifest["config"]["per_class"] is True
    names = load_features(features_file).class_names or [str(i) for i in range(8)]
    assert set(df["class_0"].astype(str)) <= set(names)
    acc = per_class_accuracy(per_class_results[0])
    # reference: a plain loop over episodes containing each class
    for _, row in acc.iterrows():
        x = []
        for _, ep in df.iterrows():
            for k in range(4):
                if str(ep[f"class_{k}"]) == row["class_name"]:
                    x.append(ep[f"correct_{k}"] / 5)
        x = np.array(x)
        assert row["n_episodes"] == x.size and row["mean"] == pytest.approx(x.mean())
        assert row["half_width"] == pytest.approx(st.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    assert acc["n_episodes"].sum() == 2 * 40 * 4


def test_compare_per_class_cli(per_class_results, run_cli, tmp_path):
    out = tmp_path / "pc.csv"
    status, stdout, err = run_cli("compare", *per_class_results, "--baseline", "logreg", "--per-class", "--out", out)
    assert status == 0, err
    assert "per class, over the episodes containing it" in stdout
    df = pd.read_csv(out, dtype={"class_name": str})
    a = read_results(per_class_results[1]).episodes
    b = read_results(per_class_results[0]).episodes
    row = df.iloc[0]
    d = []
    for (_, ea), (_, eb) in zip(a.iterrows(), b.iterrows()):
        assert (ea["seed"], ea["episode"]) == (eb["seed"], eb["episode"])
        for k in range(4):
            if str(ea[f"class_{k}"]) == row["class_name"]:
                d.append((ea[f"correct_{k}"] - eb[f"correct_{k}"]) / 5)
    d = np.array(d)
    assert row["n_episodes"] == d.size and row["mean_diff"] == pytest.approx(d.mean())
    if d.std() > 0:
        assert row["p_val"] == pytest.approx(st.ttest_rel(d, np.zeros_like(d)).pvalue)
    assert (df["p_holm"] >= df["p_val"] - 1e-15).all()


def test_plot_per_class_cli(per_class_results, run_cli, tmp_path):
    status, _, err = run_cli("plot", *per_class_results, "--per-class", "--out", tmp_path / "pc.png")
    assert status == 0, err
    assert (tmp_path / "pc.png").read_bytes()[:4] == b"\x89PNG"


def test_refusals(tmp_path, features_file, per_class_results, run_cli):
    status, _, err = run_cli(
        "evaluate",
        "--features",
        features_file,
        "--ways",
        "4",
        "--shots",
        "1",
        "--episodes",
        "5",
        "--out",
        tmp_path / "plain",
    )
    assert status == 0, err
    status, _, err = run_cli("compare", per_class_results[0], tmp_path / "plain", "--per-class")
    assert status == 2 and "have no per-class counts; evaluate with --per-class" in err
    status, _, err = run_cli(
        "evaluate",
        "--features",
        features_file,
        "--ways",
        "4",
        "--shots",
        "1",
        "--queries",
        "5",
        "--episodes",
        "40",
        "--seeds",
        "3",
        "1",
        "--per-class",
        "--label",
        "other",
        "--out",
        tmp_path / "o",
    )
    assert status == 0
    with pytest.raises(ValueError, match="not evaluated on the same episodes"):
        compare_per_class([per_class_results[0], tmp_path / "o"])
    with pytest.raises(ValueError, match="at least two methods"):
        compare_per_class([per_class_results[0]])


def test_training_runs_are_averaged_per_episode(tmp_path, features_file, run_cli):
    """Two runs of a label count each episode once: averaged over runs, not paired run by run."""
    common = (
        "evaluate",
        "--features",
        features_file,
        "--ways",
        "4",
        "--shots",
        "1",
        "--queries",
        "5",
        "--episodes",
        "30",
        "--seeds",
        "0",
        "--per-class",
    )
    for label, clf in (("A", "logreg"), ("B", "nn")):
        for run in ("seed-0", "seed-1"):
            status, _, err = run_cli(
                *common, "--classifier", clf, "--label", label, "--run", run, "--out", tmp_path / label / run
            )
            assert status == 0, err
    paths = [tmp_path / label / run for label in ("A", "B") for run in ("seed-0", "seed-1")]
    df = compare_per_class(paths, baseline="A")
    single = compare_per_class([tmp_path / "A" / "seed-0", tmp_path / "B" / "seed-0"], baseline="A")
    assert df["n_episodes"].tolist() == single["n_episodes"].tolist()  # not 4x the pairs
