"""Feature files of other toolkits: easyfsl parquet, restricted pickles, .pt dicts."""

import pickle
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_features

from fewshot.features import load_features, read_foreign_features
from fewshot.results import read_results


def _easyfsl_frame(n_classes=6, per_class=20, d=16):
    feats, labels = make_features(n_classes=n_classes, per_class=per_class, d=d)
    order = np.random.default_rng(0).permutation(len(labels))  # classes interleaved
    names = np.array([f"class_{chr(65 + k)}" for k in range(n_classes)])[::-1]
    return (
        pd.DataFrame({"embedding": list(feats[order].astype(np.float32)), "class_name": names[labels[order]]}),
        feats[order],
        labels[order],
    )


def test_easyfsl_parquet(tmp_path, run_cli):
    pytest.importorskip("pyarrow", reason="pyarrow (optional) is not installed")
    df, feats, _ = _easyfsl_frame()
    path = tmp_path / "feats.parquet.gzip"
    df.to_parquet(path, compression="gzip")
    fs = load_features(path)
    first_seen = list(dict.fromkeys(df.class_name))
    assert fs.class_names == first_seen
    np.testing.assert_array_equal(fs.labels, [first_seen.index(c) for c in df.class_name])
    np.testing.assert_array_equal(fs.features, feats.astype(np.float32))
    status, _, err = run_cli(
        "evaluate", "--features", path, "--ways", "5", "--shots", "1", "--episodes", "5", "--out", tmp_path / "r"
    )
    assert status == 0, err
    assert read_results(tmp_path / "r").manifest["features"]["fingerprint"] == fs.fingerprint


def test_parquet_labels_match_easyfsl(tmp_path):
    pytest.importorskip("pyarrow", reason="pyarrow (optional) is not installed")
    datasets = pytest.importorskip("easyfsl.datasets", reason="easyfsl (test-only dependency) is not installed")
    df, _, _ = _easyfsl_frame()
    df.to_parquet(tmp_path / "f.parquet")
    ref = datasets.FeaturesDataset.from_dataframe(pd.read_parquet(tmp_path / "f.parquet"))
    fs = load_features(tmp_path / "f.parquet")
    assert fs.class_names == ref.class_names and fs.labels.tolist() == list(ref.labels)
    np.testing.assert_array_equal(fs.features, ref.embeddings.numpy())


def test_parquet_errors(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow", reason="pyarrow (optional) is not installed")
    df, _, _ = _easyfsl_frame()
    df.rename(columns={"class_name": "label"}).to_parquet(tmp_path / "a.parquet")
    with pytest.raises(ValueError, match=r"needs columns embedding and class_name; missing \['class_name'\]"):
        load_features(tmp_path / "a.parquet")
    (tmp_path / "b.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=r"b\.parquet: not a readable parquet file"):
        load_features(tmp_path / "b.parquet")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ValueError, match=r"reading parquet needs pyarrow, which is not installed"):
        load_features(tmp_path / "a.parquet")


class _Boom:
    def __reduce__(self):
        return (print, ("executed!",))


def test_pickled_dataframe_is_refused_with_the_reason(tmp_path, capsys):
    df, _, _ = _easyfsl_frame()
    df.to_pickle(tmp_path / "f.pkl")
    with pytest.raises(
        ValueError, match=r"refusing to unpickle global .*pickled DataFrame .* save it with DataFrame.to_parquet"
    ):
        load_features(tmp_path / "f.pkl")
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"a": _Boom()}))
    with pytest.raises(ValueError, match="refusing to unpickle global builtins.print"):
        load_features(tmp_path / "evil.pkl")
    assert "executed!" not in capsys.readouterr().out


def test_dict_pickles_are_read(tmp_path):
    feats, labels = make_features(n_classes=3, per_class=5, d=4)
    by_class = {f"c{k}": feats[labels == k] for k in range(3)}  # FeaturesDataset.from_dict input
    (tmp_path / "d.pickle").write_bytes(pickle.dumps(by_class))
    fs = load_features(tmp_path / "d.pickle")
    assert fs.class_names == ["c0", "c1", "c2"] and fs.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    (tmp_path / "e.pkl").write_bytes(pickle.dumps({"features": feats, "labels": labels}))
    np.testing.assert_array_equal(load_features(tmp_path / "e.pkl").labels, labels)


def test_pt_dict(tmp_path):
    feats, labels = make_features(d=8)
    torch.save(
        {
            "features": torch.from_numpy(feats),
            "labels": torch.from_numpy(labels),
            "class_names": [str(k) for k in range(8)],
        },
        tmp_path / "f.pt",
    )
    fs = load_features(tmp_path / "f.pt")
    np.testing.assert_array_equal(fs.features, feats)
    assert fs.labels.dtype == np.int64 and fs.class_names[:2] == ["0", "1"]
    torch.save({"features": torch.from_numpy(feats)}, tmp_path / "g.pt")
    with pytest.raises(ValueError, match=r"expected a dict with 'features' and 'labels' tensors; found \['features'\]"):
        load_features(tmp_path / "g.pt")
    torch.save({"features": _Boom(), "labels": torch.from_numpy(labels)}, tmp_path / "h.pth")
    with pytest.raises(ValueError, match=r"h\.pth: not readable with torch.load\(weights_only=True\)"):
        load_features(tmp_path / "h.pth")
    torch.save({"features": torch.from_numpy(feats)[:, 0], "labels": torch.from_numpy(labels)}, tmp_path / "i.pt")
    with pytest.raises(ValueError, match=r"i\.pt: features must be a 2-D array"):
        load_features(tmp_path / "i.pt")


def test_unknown_and_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="features file not found"):
        read_foreign_features(tmp_path / "x.pt")
    (tmp_path / "x.csv").write_text("a")
    with pytest.raises(ValueError, match="unknown features format"):
        read_foreign_features(tmp_path / "x.csv")
