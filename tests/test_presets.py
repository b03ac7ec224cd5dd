"""Protocol presets of other toolkits, the z CI formula, and the classifier CLI options."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_features
from scipy import stats as st

from fewshot.classifiers.options import classifier_parameters, parse_classifier_args
from fewshot.protocol import EvalProtocol, load_protocol
from fewshot.results import read_results
from fewshot.stats import confidence_interval, summarize

PRESETS = Path(__file__).resolve().parents[1] / "episodes" / "presets"

EXPECTED = {  # name: (episodes, queries, shots, seeds, ci)
    "rfs": (600, 15, (1, 5), (0,), "t"),
    "libfewshot": (500, 15, (1, 5), (0,), "t"),
    "feat": (10000, 15, (1, 5), (0,), "z"),
    "mmfewshot": (2000, 15, (1, 5), (0,), "z"),
    "cdfsl": (600, 15, (5, 20, 50), (0,), "z"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_presets_load(name):
    p = load_protocol(PRESETS / f"{name}.toml")
    assert (p.episodes, p.queries, p.shots, p.seeds, p.ci) == EXPECTED[name]
    assert p.name == name and p.dataset is None and p.ways == 5
    assert {"reference", "seeding", "support_augmentation", "image_size"} <= set(p.upstream)
    assert p.to_dict()["upstream"] == p.upstream


def test_z_and_t_intervals():
    x = np.random.default_rng(0).uniform(size=50)
    se = x.std(ddof=1) / math.sqrt(50)
    assert confidence_interval(x)[1] == pytest.approx(st.t.ppf(0.975, 49) * se)
    assert confidence_interval(x, ci="z")[1] == pytest.approx(1.959963984540054 * se)
    with pytest.raises(ValueError, match="ci must be one of t, z, got ci='normal'"):
        confidence_interval(x, ci="normal")
    df = pd.DataFrame({"dataset": "d", "n_way": 5, "n_shot": 1, "seed": 0, "accuracy": x})
    assert summarize(df, ci="z")["ci95"].iloc[0] == pytest.approx(1.959963984540054 * se)


def test_protocol_validation(tmp_path):
    with pytest.raises(ValueError, match="protocol ci must be one of t, z, got 'x'"):
        EvalProtocol(ci="x")
    bad = tmp_path / "p.toml"
    bad.write_text("upstream = 3\n")
    with pytest.raises(ValueError, match="protocol upstream must be a table"):
        load_protocol(bad)


def test_preset_recorded_in_manifest_and_z_summary(tmp_path, features_file, run_cli):
    status, _, err = run_cli(
        "evaluate",
        "--features",
        features_file,
        "--protocol",
        PRESETS / "feat.toml",
        "--episodes",
        "40",
        "--ways",
        "4",
        "--out",
        tmp_path / "r",
    )
    assert status == 0, err
    res = read_results(tmp_path / "r")
    cfg = res.manifest["config"]
    assert cfg["name"] == "feat" and cfg["ci"] == "z" and cfg["upstream"]["support_augmentation"] == 1
    assert res.manifest["protocol_file"]["sha256"]
    summary = pd.read_csv(tmp_path / "r" / "summary.csv")
    run = res.episodes[res.episodes.n_shot == 1].accuracy.to_numpy()
    assert summary[summary.n_shot == 1].ci95.iloc[0] == pytest.approx(
        1.959963984540054 * run.std(ddof=1) / math.sqrt(run.size)
    )


def test_parse_classifier_args():
    assert parse_classifier_args(["metric=cosine", "lam=50", "normalize=true", "C=0.5", "fine-tuning-lr=1e-3"]) == {
        "metric": "cosine",
        "lam": 50,
        "normalize": True,
        "C": 0.5,
        "fine_tuning_lr": 1e-3,
    }
    with pytest.raises(ValueError, match="expects KEY=VALUE, got 'lam'"):
        parse_classifier_args(["lam"])
    with pytest.raises(ValueError, match="lam given twice"):
        parse_classifier_args(["lam=1", "lam=2"])
    assert classifier_parameters("ridge") == {"lam": 50.0, "normalize": False}
    assert classifier_parameters("tim")["temperature"] == 10.0


def test_cli_simpleshot_with_base_features(tmp_path, features_file, run_cli):
    feats, labels = make_features(seed=5)
    base = tmp_path / "base.npz"
    np.savez(base, features=feats + 0.5, labels=labels)
    args = (
        "evaluate",
        "--features",
        features_file,
        "--classifier",
        "simpleshot",
        "--episodes",
        "10",
        "--ways",
        "4",
        "--shots",
        "1",
    )
    status, _, err = run_cli(*args, "--out", tmp_path / "r0")
    assert status == 2 and "simpleshot needs --base-features" in err and not (tmp_path / "r0").exists()
    status, _, err = run_cli(
        *args, "--base-features", base, "--classifier-arg", "metric=cosine", "--out", tmp_path / "r"
    )
    assert status == 0, err
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["config"]["classifier_kwargs"] == {"metric": "cosine"}
    assert m["config"]["base_features"]["path"] == str(base) and m["config"]["transductive"] is False
    status, _, err = run_cli(
        "evaluate", "--features", features_file, "--base-features", base, "--episodes", "5", "--out", tmp_path / "r2"
    )
    assert status == 2 and "not by 'logreg'" in err


def test_cli_transductive_and_bad_classifier_arg(tmp_path, features_file, run_cli):
    args = ("evaluate", "--features", features_file, "--episodes", "6", "--ways", "4", "--shots", "1")
    status, _, err = run_cli(
        *args, "--classifier", "laplacianshot", "--classifier-arg", "knn=4", "--out", tmp_path / "r"
    )
    assert status == 0, err
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["config"]["transductive"] is True and m["config"]["classifier_kwargs"] == {"knn": 4}
    status, _, err = run_cli(*args, "--classifier", "ridge", "--classifier-arg", "gamma=2", "--out", tmp_path / "r2")
    assert status == 2 and "classifier 'ridge'" in err and "gamma" in err


def test_every_protocol_file_loads():
    from fewshot.data import list_datasets

    files = sorted((PRESETS.parent).glob("*.toml"))
    assert "cub.toml" in [f.name for f in files]
    for f in files:
        p = load_protocol(f)
        assert p.dataset in list_datasets() and p.split == "test" and p.ci == "t"


def test_protocol_is_a_deprecated_alias_of_eval_protocol():
    import fewshot

    assert fewshot.EvalProtocol is EvalProtocol and "Protocol" not in dir(fewshot)
    with pytest.warns(DeprecationWarning, match="fewshot.Protocol is deprecated; use fewshot.EvalProtocol"):
        assert fewshot.Protocol is EvalProtocol


def test_load_protocol_overrides(tmp_path):
    f = PRESETS / "rfs.toml"
    base = load_protocol(f)
    p = load_protocol(f, ways=3, shots=[2], episodes=7, seeds=None, ci="z")
    assert (p.ways, p.shots, p.episodes, p.ci) == (3, (2,), 7, "z")
    assert (p.seeds, p.queries, p.upstream, p.name) == (
        base.seeds,
        base.queries,
        base.upstream,
        "rfs",
    )  # None keeps the file's
    assert (p.path, p.sha256) == (base.path, base.sha256)  # the file stays recorded
    assert load_protocol(None, queries=4) == EvalProtocol(queries=4)
    assert load_protocol() == EvalProtocol()
    with pytest.raises(
        ValueError, match=r"unknown protocol override\(s\) \['way'\]; accepted: ci, dataset, description"
    ):
        load_protocol(f, way=3)
    with pytest.raises(ValueError, match=r"unknown protocol override\(s\) \['sha256'\]"):
        load_protocol(None, sha256="0" * 64)
    with pytest.raises(ValueError, match=r"^protocol ways must be a positive integer, got 0$"):
        load_protocol(f, ways=0)
    with pytest.raises(ValueError, match=r"protocol shots must not repeat a value"):
        load_protocol(None, shots=[1, 1])


def test_cli_flags_override_the_protocol_file(tmp_path, features_file, run_cli):
    f = tmp_path / "p.toml"
    f.write_text('ways = 4\nshots = [1, 5]\nepisodes = 50\nqueries = 5\nci = "z"\n')
    status, _, err = run_cli(
        "evaluate",
        "--features",
        features_file,
        "--protocol",
        f,
        "--shots",
        "2",
        "--episodes",
        "5",
        "--out",
        tmp_path / "r",
    )
    assert status == 0, err
    config = json.loads((tmp_path / "r" / "manifest.json").read_text())["config"]
    assert (config["ways"], config["shots"], config["episodes"], config["queries"], config["ci"]) == (4, [2], 5, 5, "z")
    status, _, err = run_cli(
        "evaluate", "--features", features_file, "--protocol", f, "--ways", "0", "--out", tmp_path / "r2"
    )
    assert status == 2 and "protocol ways must be a positive integer, got 0" in err and not (tmp_path / "r2").exists()
