import numpy as np
import pytest

from fewshot.episodes import Episodes, load_episodes, sample_episodes


@pytest.fixture
def labels():
    # 8 classes with unequal sizes and non-contiguous, unsorted labels
    rng = np.random.default_rng(0)
    y = np.repeat([3, 7, 10, 11, 20, 21, 30, 42], [30, 25, 40, 21, 33, 50, 22, 26])
    return y[rng.permutation(y.size)]


@pytest.mark.parametrize("n_shot", [1, 5])
def test_shapes_class_major_and_disjoint(labels, n_shot):
    ep = sample_episodes(labels, n_way=5, n_shot=n_shot, n_query=15, n_episodes=50, seed=3)
    assert ep.classes.shape == (50, 5)
    assert ep.support.shape == (50, 5 * n_shot) and ep.query.shape == (50, 75)
    for e in range(50):
        assert len(set(ep.classes[e])) == 5
        # class-major: position j belongs to classes[e, j // n_shot]
        np.testing.assert_array_equal(labels[ep.support[e]], np.repeat(ep.classes[e], n_shot))
        np.testing.assert_array_equal(labels[ep.query[e]], np.repeat(ep.classes[e], 15))
        items = np.concatenate([ep.support[e], ep.query[e]])
        assert len(set(items)) == items.size  # disjoint support/query, no repeats


def test_prefix_property_and_seed_determinism(labels):
    long = sample_episodes(labels, 5, 1, 15, 300, seed=7)
    short = sample_episodes(labels, 5, 1, 15, 10, seed=7)
    np.testing.assert_array_equal(long.support[:10], short.support)
    np.testing.assert_array_equal(long.query[:10], short.query)
    np.testing.assert_array_equal(long.classes[:10], short.classes)
    again = sample_episodes(labels, 5, 1, 15, 300, seed=7)
    assert again.fingerprint == long.fingerprint
    other = sample_episodes(labels, 5, 1, 15, 300, seed=8)
    assert other.fingerprint != long.fingerprint
    # an offset request equals the corresponding slice
    mid = sample_episodes(labels, 5, 1, 15, 20, seed=7, start=100)
    np.testing.assert_array_equal(mid.support, long.support[100:120])
    assert long[100:120].fingerprint == mid.fingerprint


def test_episode_depends_only_on_seed_and_index(labels):
    # changing n_episodes, chunking or global RNG state must not change episode i
    np.random.seed(123)
    a = sample_episodes(labels, 5, 5, 15, 40, seed=1)
    np.random.seed(999)
    b = sample_episodes(labels, 5, 5, 15, 41, seed=1)
    np.testing.assert_array_equal(a.support, b.support[:40])


def test_classes_and_items_uniform(labels):
    ep = sample_episodes(labels, 5, 1, 15, 4000, seed=0)
    counts = np.bincount(np.searchsorted(np.unique(labels), ep.classes.ravel()))
    expected = 4000 * 5 / 8
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))
    # each item of the smallest class is drawn with probability 16/21 per appearance of the class
    small = np.flatnonzero(labels == 11)
    hits = np.isin(np.concatenate([ep.support, ep.query], 1), small).sum()
    appearances = (ep.classes == 11).sum()
    assert hits == appearances * 16


def test_save_load_roundtrip_and_tamper(tmp_path, labels):
    ep = sample_episodes(labels, 5, 5, 15, 12, seed=2)
    path = ep.save(tmp_path / "ep.npz")
    back = load_episodes(path)
    assert back.fingerprint == ep.fingerprint
    assert back.spec() == ep.spec()
    np.testing.assert_array_equal(back.query, ep.query)
    with np.load(path) as z:
        data = dict(z)
    data["support"] = data["support"].copy()
    data["support"][0, 0] += 1
    np.savez(tmp_path / "bad.npz", **data)
    with pytest.raises(ValueError, match="fingerprint"):
        load_episodes(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_episodes(tmp_path / "missing.npz")


def test_arrays_are_read_only(labels):
    ep = sample_episodes(labels, 5, 1, 15, 3, seed=0)
    with pytest.raises(ValueError):
        ep.support[0, 0] = 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_way": 9}, r"n_way=9 exceeds the number of classes \(8\)"),
        ({"n_shot": 5, "n_query": 17}, r"class 11 has 21 items, fewer than n_shot \+ n_query = 5 \+ 17 = 22"),
        ({"n_way": 0}, "n_way must be a positive integer, got 0"),
        ({"n_shot": -1}, "n_shot must be a positive integer, got -1"),
        ({"n_query": 2.5}, "n_query must be a positive integer, got 2.5"),
        ({"n_episodes": 0}, "n_episodes must be a positive integer, got 0"),
        ({"seed": -3}, "seed must be a non-negative integer"),
    ],
)
def test_validation(labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_episodes(labels, **kwargs)


def test_label_validation():
    with pytest.raises(ValueError, match=r"1-D array of integers, got shape \(2, 3\)"):
        sample_episodes(np.zeros((2, 3), dtype=int))
    with pytest.raises(ValueError, match="labels must be integers, got dtype <U1"):
        sample_episodes(np.array(list("abc")))
    with pytest.raises(ValueError, match="labels must be integers, got dtype float64"):
        sample_episodes(np.array([0.5, 1.0]))


def test_episodes_shape_check():
    with pytest.raises(ValueError, match="support has shape"):
        Episodes(np.zeros((2, 5)), np.zeros((2, 4)), np.zeros((2, 75)), 5, 1, 15, 0)
