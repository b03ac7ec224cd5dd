"""The offline demo end to end (``fewshot demo --quick``, on an even smaller budget).

The tests share one module-scoped run of :func:`fewshot.run_demo` with the quick settings cut to
one epoch per training run and 50 episodes per (shot, seed): the files, the two training seeds per
objective (run-level statistics), both shots, the analyses and the identical episodes are what
they inspect, and none of it depends on how long each run trains (fine-tuning took most of the
default suite's time). ``fewshot demo --quick`` itself runs in the slow determinism test; its
refusals, before any work, in ``test_bad_inputs.py``.
"""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from fewshot.demo import DEMO_METHODS, DEMO_QUICK, run_demo

TEST_SETTINGS = dataclasses.replace(DEMO_QUICK, epochs=1, episodes=50)


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    run_demo(out, quick=True, settings=TEST_SETTINGS, progress=False, log=lambda message: None)
    return out


def test_quick_demo_writes_the_whole_pipeline(quick_demo):
    out = quick_demo
    for name in (
        "table1.md",
        "table1.csv",
        "table1.tex",
        "compare.csv",
        "compare_ce_seeds.csv",
        "accuracy.png",
        "manifest.json",
    ):
        assert (out / name).is_file(), name
    for objective in DEMO_METHODS:
        for seed in TEST_SETTINGS.train_seeds:
            run = out / "runs" / objective / f"seed-{seed}"
            assert (run / "best" / "checkpoint.json").is_file() and (run / "log.jsonl").is_file()
            assert json.loads((run / "best" / "checkpoint.json").read_text())["run"] == f"seed-{seed}"
            with np.load(out / "features" / f"{objective}-seed-{seed}.npz") as z:
                assert str(z["run"]) == f"seed-{seed}"
            rows = pd.read_csv(out / "results" / objective / f"seed-{seed}" / "per_episode.csv.gz")
            assert (rows["run"] == f"seed-{seed}").all()
    md = (out / "table1.md").read_text()
    for label in DEMO_METHODS.values():
        assert label in md
    assert "digits 1-shot" in md and "digits 5-shot" in md
    comparison = pd.read_csv(out / "compare.csv")
    # every non-baseline objective against CE, for both shots
    assert len(comparison) == 2 * (len(DEMO_METHODS) - 1)
    assert set(comparison.baseline) == {DEMO_METHODS["ce"]}
    assert (comparison["level"] == "run").all() and (
        comparison["n_runs_method"] == len(TEST_SETTINGS.train_seeds)
    ).all()
    assert "across training runs" in md
    seeds = pd.read_csv(out / "compare_ce_seeds.csv")
    assert (seeds["level"] == "checkpoint").all() and set(seeds["method"]) == {"CE seed-1"}
    analysis = pd.read_csv(out / "analysis" / "analysis.csv")
    assert len(analysis) == len(DEMO_METHODS) and analysis["isotropy"].between(0, 1).all()
    assert (out / "analysis" / "tsne.png").is_file() and (out / "analysis" / "similarity-8.png").is_file()
    timings = json.loads((out / "manifest.json").read_text())["timings"]
    assert timings["total"] > 0


def test_every_method_scored_on_identical_episodes(quick_demo):
    fingerprints = [
        pd.read_csv(quick_demo / "results" / objective / f"seed-{seed}" / "per_episode.csv.gz")
        .groupby(["n_shot", "seed"])
        .episodes_fingerprint.first()
        for objective in DEMO_METHODS
        for seed in TEST_SETTINGS.train_seeds
    ]
    for other in fingerprints[1:]:
        pd.testing.assert_series_equal(fingerprints[0], other)


@pytest.mark.slow
def test_quick_demo_is_deterministic(tmp_path):
    from fewshot.cli import main

    for name in ("first", "again"):
        assert main(["demo", "--quick", "--no-progress", "--out", str(tmp_path / name)]) == 0
    for name in ("table1.md", "table1.csv", "compare.csv"):
        assert (tmp_path / "again" / name).read_bytes() == (tmp_path / "first" / name).read_bytes(), name
