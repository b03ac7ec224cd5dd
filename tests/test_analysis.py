"""Analyses of feature geometry against independent float64 references."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist, squareform

from fewshot._io import save_npz, sha256_arrays
from fewshot.analysis import (
    ANALYSIS_COLUMNS,
    analyze_to_directory,
    feature_labels,
    isotropy_score,
    similarity_distributions,
    tsne_map,
)
from fewshot.cli import main


def reference_isotropy(v: np.ndarray) -> float:
    """The definition with plain loops: eigenvectors from the SVD of V (right singular
    vectors = eigenvectors of VᵀV), both signs, Z(c) = Σ_v exp(cᵀv) summed with math.fsum."""
    v = np.asarray(v, dtype=np.float64)
    _, _, vt = np.linalg.svd(v, full_matrices=True)
    zs = []
    for c in vt:
        for sign in (1.0, -1.0):
            zs.append(math.fsum(math.exp(sign * float(np.dot(c, row))) for row in v))
    return min(zs) / max(zs)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("n", "d"), [(40, 3), (25, 8), (6, 10)])
def test_isotropy_matches_the_definition(seed: int, n: int, d: int) -> None:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, d)) * rng.uniform(0.2, 2.0, size=d) + rng.normal(size=d) * 0.5
    assert isotropy_score(v) == pytest.approx(reference_isotropy(v), rel=1e-9)
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    assert isotropy_score(v, normalize=True) == pytest.approx(reference_isotropy(unit), rel=1e-9)
    assert isotropy_score(v.astype(np.float32)) == pytest.approx(reference_isotropy(v), rel=1e-5)


def test_isotropy_of_gaussian_clouds() -> None:
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(20000, 16))
    assert isotropy_score(cloud) > 0.9
    assert isotropy_score(cloud, normalize=True) > 0.97
    shifted = cloud + np.r_[3.0, np.zeros(15)]
    # Z(e1) / Z(-e1) -> E exp(-(z+3)) / E exp(z+3) = e^-6 for a shift of 3 along e1
    assert isotropy_score(shifted) == pytest.approx(math.exp(-6), rel=0.2)
    stretched = cloud * np.r_[5.0, np.ones(15)]
    assert isotropy_score(stretched) < 1e-3
    assert isotropy_score(shifted, normalize=True) < 0.5


def test_isotropy_is_stable_where_exp_overflows() -> None:
    v = np.array([[1000.0], [-1000.0], [999.0]])
    with np.errstate(over="ignore", invalid="ignore"):
        naive = np.exp(v).sum() / np.exp(-v).sum()
    assert not np.isfinite(naive)
    # Z(+) = e^1000 (1 + e^-1 + e^-2000), Z(-) = e^1000 (1 + e^-1999 + e^-2000)
    assert isotropy_score(v) == pytest.approx(1 / (1 + math.exp(-1)), rel=1e-12)


def test_isotropy_sign_of_eigenvectors_matters() -> None:
    # one direction only: without the negatives the ratio would be 1
    v = np.array([[1.0, 0.0], [2.0, 0.0]])
    assert isotropy_score(v) == pytest.approx(reference_isotropy(v))
    assert isotropy_score(v) < 0.1


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros(3), r"non-empty \(n, d\) array, got shape \(3,\)"),
        (np.zeros((0, 2)), r"got shape \(0, 2\)"),
        (np.array([[1.0, np.nan]]), "NaN or Inf"),
        (np.array([["a", "b"]]), "real numbers"),
    ],
)
def test_isotropy_rejects_bad_input(bad: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        isotropy_score(bad)


def test_isotropy_normalize_refuses_zero_rows() -> None:
    with pytest.raises(ValueError, match="row 1 is all zeros"):
        isotropy_score(np.array([[1.0, 0.0], [0.0, 0.0]]), normalize=True)
    assert isotropy_score(np.array([[1.0, 0.0], [0.0, 0.0]])) > 0


def reference_pairs(x: np.ndarray, y: np.ndarray, label: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    sim = 1.0 - squareform(pdist(x.astype(np.float64), metric="cosine"))
    pos, neg = [], []
    for i, j in itertools.combinations(range(len(y)), 2):
        if label is not None and (y[i] == label) + (y[j] == label) == 0:
            continue
        (pos if y[i] == y[j] and (label is None or y[i] == label) else neg).append(sim[i, j])
    return np.clip(pos, -1, 1), np.clip(neg, -1, 1)


@pytest.mark.parametrize("block", [1, 7, 1024])
def test_similarity_distributions_match_all_pairs(block: int) -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, size=60)
    x = rng.normal(size=(60, 5)) + y[:, None] * 0.3
    overall, c2 = similarity_distributions(
        x, y, classes=["c2"], class_names=["c0", "c1", "c2", "c3"], bins=20, block=block
    )
    for dist, label in ((overall, None), (c2, 2)):
        pos, neg = reference_pairs(x, y, label)
        assert (dist.positive.n, dist.negative.n) == (pos.size, neg.size)
        assert dist.positive.mean == pytest.approx(pos.mean(), abs=1e-12)
        assert dist.negative.sd == pytest.approx(neg.std(), abs=1e-12)
        hp, _ = np.histogram(pos, bins=np.linspace(-1, 1, 21))
        hn, _ = np.histogram(neg, bins=np.linspace(-1, 1, 21))
        np.testing.assert_array_equal(dist.positive.counts, hp)
        np.testing.assert_array_equal(dist.negative.counts, hn)
        assert dist.overlap == pytest.approx(np.minimum(hp / hp.sum(), hn / hn.sum()).sum())
    assert overall.positive.n + overall.negative.n == 60 * 59 // 2
    assert c2.scope == "c2"


def test_similarity_overlap_extremes() -> None:
    # two antipodal classes: positives at +1, negatives at -1 -> no overlap
    x = np.array([[1.0, 0], [2.0, 0], [-1.0, 0], [-3.0, 0]])
    y = np.array([0, 0, 1, 1])
    (dist,) = similarity_distributions(x, y, bins=10)
    assert dist.overlap == 0.0 and dist.positive.mean == pytest.approx(1.0)
    assert dist.negative.mean == pytest.approx(-1.0) and dist.positive.sd == pytest.approx(0.0)


def test_similarity_rejects_unknown_class() -> None:
    x, y = np.eye(3), np.array([0, 1, 2])
    with pytest.raises(ValueError, match="unknown class 'dog'; expected one of a, b, c"):
        similarity_distributions(x, y, classes=["dog"], class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="bins must be an integer >= 2, got 1"):
        similarity_distributions(x, y, bins=1)


def test_tsne_is_seeded_and_subsamples() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(6), 30)
    x = rng.normal(size=(180, 8)) + 8 * np.eye(8)[y]
    a = tsne_map(x, y, n_classes=4, per_class=20, seed=1)
    b = tsne_map(x, y, n_classes=4, per_class=20, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == ["index", "label", "class", "x", "y"]
    assert sorted(a["label"].unique()) == [0, 1, 2, 3] and (a.groupby("label").size() == 20).all()
    assert not a.equals(tsne_map(x, y, n_classes=4, per_class=20, seed=2))
    # well-separated classes stay separated: each point's nearest neighbour shares its class
    xy = a[["x", "y"]].to_numpy()
    d = squareform(pdist(xy))
    np.fill_diagonal(d, np.inf)
    assert (a["label"].to_numpy()[d.argmin(1)] == a["label"].to_numpy()).mean() > 0.95


def write(path: Path, x: np.ndarray, y: np.ndarray, names: list[str]) -> Path:
    x = x.astype(np.float32)
    save_npz(
        path,
        features=x,
        labels=y,
        class_names=np.array(names),
        fingerprint=np.array(sha256_arrays(x, y)),
        dataset=np.array("digits"),
        split=np.array("test"),
    )
    return path


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(5), 20)
    names = ["5", "6", "7", "8", "9"]
    (tmp_path / "ce").mkdir()
    (tmp_path / "schane").mkdir()
    loose = write(tmp_path / "ce" / "features.npz", rng.normal(size=(100, 6)) + 0.5 * np.eye(6)[y], y, names)
    tight = write(tmp_path / "schane" / "features.npz", rng.normal(size=(100, 6)) * 0.3 + 2 * np.eye(6)[y], y, names)
    return [loose, tight]


def test_analyze_to_directory_writes_every_output(files: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "analysis"
    frame = analyze_to_directory(files, out, classes=["7"], tsne_per_class=10)
    assert sorted(p.name for p in out.iterdir()) == [
        "analysis.csv",
        "manifest.json",
        "similarity-7.png",
        "similarity.csv",
        "similarity.png",
        "tsne.csv",
        "tsne.png",
    ]
    assert list(frame.columns) == list(ANALYSIS_COLUMNS)
    assert list(frame["label"]) == ["ce/features", "schane/features"]
    on_disk = pd.read_csv(out / "analysis.csv")
    assert on_disk["fingerprint"].tolist() == [str(np.load(f)["fingerprint"]) for f in files]
    assert on_disk["isotropy"].tolist() == pytest.approx([isotropy_score(np.load(f)["features"]) for f in files])
    # the fine-tuned-like file separates its classes better
    assert frame["overlap"][1] < frame["overlap"][0] and frame["gap"][1] > frame["gap"][0]
    sim = pd.read_csv(out / "similarity.csv", dtype={"scope": str})
    assert sim[["label", "scope"]].values.tolist() == [
        ["ce/features", "all"],
        ["ce/features", "7"],
        ["schane/features", "all"],
        ["schane/features", "7"],
    ]
    assert (out / "similarity.png").read_bytes().startswith(b"\x89PNG")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "analyze" and len(manifest["inputs"]) == 2
    assert len(pd.read_csv(out / "tsne.csv")) == 100  # 5 classes × 10 points × 2 files


def test_analyze_cli(files: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "a"
    assert main(["analyze", *map(str, files), "--out", str(out), "--labels", "CE", "SCHaNe", "--no-tsne"]) == 0
    assert "CE: isotropy" in capsys.readouterr().out
    assert not (out / "tsne.png").exists() and (out / "similarity.png").exists()
    assert main(["analyze", str(files[0]), "--out", str(tmp_path / "b"), "--classes", "dog"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fewshot analyze: error: unknown class 'dog'")
    assert not (tmp_path / "b").exists()
    assert main(["analyze", str(tmp_path / "none.npz"), "--out", str(tmp_path / "c")]) == 2
    assert "not found" in capsys.readouterr().err


def test_feature_labels_disambiguate() -> None:
    assert feature_labels(["a/ce.npz", "b/schane.npz"]) == ["ce", "schane"]
    assert feature_labels(["x/ce/f.npz", "x/schane/f.npz"]) == ["ce/f", "schane/f"]
    with pytest.raises(ValueError, match="labels must be distinct"):
        analyze_to_directory(["a.npz", "b.npz"], "/nonexistent/out", labels=["x", "x"])


def test_isotropy_blocks_agree() -> None:
    from fewshot.analysis import log_partition

    rng = np.random.default_rng(5)
    v, c = rng.normal(size=(50, 3)) * 30, np.linalg.qr(rng.normal(size=(3, 3)))[0]
    np.testing.assert_allclose(log_partition(v, c, block=7), log_partition(v, c, block=1000), rtol=1e-13)


def test_similarity_max_per_class_subsamples_with_a_seed() -> None:
    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(3), [10, 30, 5])
    x = rng.normal(size=(45, 4))
    (full,) = similarity_distributions(x, y)
    (sub,) = similarity_distributions(x, y, max_per_class=8, seed=1)
    # classes of 8, 8 and 5 items: 28 + 28 + 10 positive pairs out of 21 * 20 / 2
    assert (sub.positive.n, sub.negative.n) == (66, 210 - 66)
    (again,) = similarity_distributions(x, y, max_per_class=8, seed=1)
    assert again.positive.mean == sub.positive.mean != full.positive.mean
    with pytest.raises(ValueError, match="max_per_class must be a positive integer, got 0"):
        similarity_distributions(x, y, max_per_class=0)
