"""The offline demo end to end (``fewshot demo --quick``)."""

import json

import pandas as pd
import pytest

from fewshot.demo import DEMO_METHODS


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    from fewshot.cli import main

    out = tmp_path_factory.mktemp("demo") / "out"
    assert main(["demo", "--quick", "--no-progress", "--out", str(out)]) == 0
    return out


def test_quick_demo_writes_the_whole_pipeline(quick_demo):
    out = quick_demo
    for name in ("table1.md", "table1.csv", "table1.tex", "compare.csv", "accuracy.png", "manifest.json"):
        assert (out / name).is_file(), name
    for objective in DEMO_METHODS:
        run = out / "runs" / objective
        assert (run / "best" / "checkpoint.json").is_file() and (run / "log.jsonl").is_file()
        assert (out / "features" / f"{objective}.npz").is_file()
        assert (out / "results" / objective / "per_episode.csv.gz").is_file()
    md = (out / "table1.md").read_text()
    for label in DEMO_METHODS.values():
        assert label in md
    assert "digits 1-shot" in md and "digits 5-shot" in md
    comparison = pd.read_csv(out / "compare.csv")
    # every non-baseline objective against CE, for both shots
    assert len(comparison) == 2 * (len(DEMO_METHODS) - 1)
    assert set(comparison.baseline) == {DEMO_METHODS["ce"]}
    timings = json.loads((out / "manifest.json").read_text())["timings"]
    assert timings["total"] > 0


def test_every_method_scored_on_identical_episodes(quick_demo):
    fingerprints = [
        pd.read_csv(quick_demo / "results" / objective / "per_episode.csv.gz").groupby(["n_shot", "seed"]).episodes_fingerprint.first()
        for objective in DEMO_METHODS
    ]
    for other in fingerprints[1:]:
        pd.testing.assert_series_equal(fingerprints[0], other)


@pytest.mark.slow
def test_quick_demo_is_deterministic(quick_demo, tmp_path):
    from fewshot.cli import main

    assert main(["demo", "--quick", "--no-progress", "--out", str(tmp_path / "again")]) == 0
    for name in ("table1.md", "table1.csv", "compare.csv"):
        assert (tmp_path / "again" / name).read_bytes() == (quick_demo / name).read_bytes(), name
