"""Table marks for transductive rows and footnotes on quoted rows' protocols."""

import pandas as pd
import pytest

from fewshot.report.table_notes import our_protocol, protocol_notes


@pytest.fixture
def two_results(tmp_path, features_file, run_cli):
    args = (
        "evaluate",
        "--features",
        features_file,
        "--ways",
        "4",
        "--shots",
        "1",
        "--episodes",
        "20",
        "--seeds",
        "0",
        "1",
    )
    for clf, label in (("logreg", "Toy / logreg"), ("bd-cspn", "Toy / BD-CSPN")):
        status, _, err = run_cli(*args, "--classifier", clf, "--label", label, "--out", tmp_path / clf)
        assert status == 0, err
    return [tmp_path / "logreg", tmp_path / "bd-cspn"]


def _quoted(tmp_path, with_protocol=True):
    rows = [
        {
            "method": "Baseline (Chen et al. 2019)",
            "dataset": "toy",
            "n_shot": 1,
            "mean": 40.0,
            "half_width": 0.7,
            "episodes": 600,
            "ci": "z",
            "support_augmentation": 1,
            "image_size": 84,
        },
        {
            "method": "RFS-simple (Tian et al. 2020)",
            "dataset": "toy",
            "n_shot": 1,
            "mean": 60.0,
            "half_width": 0.6,
            "episodes": 600,
            "ci": "t",
            "support_augmentation": 5,
            "image_size": 84,
        },
        {
            "method": "Ours-like",
            "dataset": "toy",
            "n_shot": 1,
            "mean": 50.0,
            "half_width": 0.6,
            "episodes": 20,
            "ci": "t",
            "support_augmentation": 1,
            "image_size": None,
        },
    ]
    df = pd.DataFrame(rows)
    if not with_protocol:
        df = df[["method", "dataset", "n_shot", "mean", "half_width"]]
    path = tmp_path / "published.csv"
    df.to_csv(path, index=False)
    return path


def test_footnote_and_marks(tmp_path, two_results, run_cli):
    quoted = _quoted(tmp_path)
    out = tmp_path / "t.md"
    status, stdout, err = run_cli("table", *two_results, "--baseline", "Toy / logreg", "--quoted", quoted, "--out", out)
    assert status == 0, err
    text = out.read_text()
    assert "| Toy / BD-CSPN § |" in text and "| Toy / logreg |" in text
    assert "§ transductive: the classifier also uses each episode's unlabelled queries." in text
    assert (
        "Protocols of quoted rows, where they differ from ours (20 episodes per run, t CI, no test-time support augmentation)"
        in text
    )
    assert "Baseline (Chen et al. 2019) ‡: 600 episodes, z CI, 84 px images;" in text
    assert "RFS-simple (Tian et al. 2020) ‡: 600 episodes, 5x test-time support augmentation, 84 px images;" in text
    assert "Ours-like ‡: same protocol." in text
    status, _, err = run_cli(
        "table", *two_results, "--baseline", "Toy / logreg", "--quoted", quoted, "--out", tmp_path / "t.tex"
    )
    assert status == 0, err
    tex = (tmp_path / "t.tex").read_text()
    assert tex.startswith("% § transductive") and "% Protocols of quoted rows" in tex
    status, _, err = run_cli("table", *two_results, "--baseline", "Toy / logreg", "--out", tmp_path / "t.csv")
    assert status == 0 and "§" not in (tmp_path / "t.csv").read_text()


def test_no_protocol_columns_no_note(tmp_path, two_results):
    assert protocol_notes(_quoted(tmp_path, with_protocol=False), two_results) == []
    assert protocol_notes(None, two_results) == []
    assert our_protocol(two_results) == {"episodes": [20], "ci": ["t"], "support_augmentation": [1], "image_size": []}


def test_bad_protocol_values(tmp_path, two_results, run_cli):
    df = pd.read_csv(_quoted(tmp_path))
    df.loc[0, "ci"] = "1.96"
    df.to_csv(tmp_path / "bad.csv", index=False)
    status, _, err = run_cli(
        "table",
        *two_results,
        "--baseline",
        "Toy / logreg",
        "--quoted",
        tmp_path / "bad.csv",
        "--out",
        tmp_path / "t.md",
    )
    assert status == 2 and "column 'ci' must be t or z, got '1.96'" in err and not (tmp_path / "t.md").exists()
