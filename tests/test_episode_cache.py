"""The episode cache: a second method on the same labels and protocol samples nothing."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_features

import fewshot.episode_cache
import fewshot.evaluation
from fewshot.episode_cache import cached_episodes, default_episode_cache_dir, episode_cache_path
from fewshot.episodes import labels_fingerprint, load_episodes, sample_episodes
from fewshot.evaluation import run_protocol
from fewshot.pipeline import evaluate_to_directory
from fewshot.protocol import EvalProtocol

PROTOCOL = EvalProtocol(ways=4, shots=(1, 3), queries=5, episodes=12, seeds=(0, 2))


@pytest.fixture
def sampling_calls(monkeypatch):
    """Count every call of ``sample_episodes`` (wherever it is called from); ``forbid()`` makes them raise."""

    class Calls(list):
        def forbid(self) -> None:
            state["forbidden"] = True

    calls = Calls()
    state = {"forbidden": False}

    def counting(*args, **kwargs):
        if state["forbidden"]:
            raise AssertionError("sample_episodes called although the episodes are cached")
        calls.append(args[1:])
        return sample_episodes(*args, **kwargs)

    monkeypatch.setattr(fewshot.episode_cache, "sample_episodes", counting)
    monkeypatch.setattr(fewshot.evaluation, "sample_episodes", counting)
    return calls


def test_second_method_reads_the_cached_episodes(tmp_path, features_file, sampling_calls):
    cache = tmp_path / "cache"
    first = evaluate_to_directory(features_file, tmp_path / "a", PROTOCOL, episode_cache_dir=cache, progress=False)
    assert len(sampling_calls) == 4  # 2 shots x 2 seeds
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        episode_cache_path(cache, labels_fingerprint(np.load(features_file)["labels"]), 4, shot, 5, 12, seed).name
        for shot in (1, 3)
        for seed in (0, 2)
    )
    sampling_calls.forbid()
    second = evaluate_to_directory(
        features_file, tmp_path / "b", PROTOCOL, classifier="prototype", episode_cache_dir=cache, progress=False
    )
    assert first.episodes.episodes_fingerprint.tolist() == second.episodes.episodes_fingerprint.tolist()
    # the episode files of the results directory are the cache's and load as before
    for name, fingerprint in second.manifest["episodes"].items():
        assert load_episodes(tmp_path / "b" / "episodes" / name).fingerprint == fingerprint
        assert first.manifest["episodes"][name] == fingerprint


def test_results_identical_with_and_without_the_cache(tmp_path, features_file):
    cache = tmp_path / "cache"
    runs = {
        "none": evaluate_to_directory(
            features_file, tmp_path / "none", PROTOCOL, use_episode_cache=False, progress=False
        ),
        "miss": evaluate_to_directory(
            features_file, tmp_path / "miss", PROTOCOL, episode_cache_dir=cache, progress=False
        ),
        "hit": evaluate_to_directory(
            features_file, tmp_path / "hit", PROTOCOL, episode_cache_dir=cache, progress=False
        ),
    }
    assert not (tmp_path / "none" / "cache").exists() and len(list(cache.iterdir())) == 4
    for name in ("miss", "hit"):
        pd.testing.assert_frame_equal(runs[name].episodes, runs["none"].episodes)
        for f in (tmp_path / "none" / "episodes").iterdir():  # same episode files, fingerprint and labels recorded
            a, b = load_episodes(f), load_episodes(tmp_path / name / "episodes" / f.name)
            assert a.fingerprint == b.fingerprint and a.spec() == b.spec()
        manifests = [json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("none", name)]
        assert manifests[0]["config"] == manifests[1]["config"] and manifests[0]["episodes"] == manifests[1]["episodes"]


def test_run_protocol_with_a_cache_equals_sampling(tmp_path, sampling_calls):
    feats, labels = make_features()
    kwargs = dict(n_way=5, shots=(1,), n_query=5, n_episodes=10, seeds=(0, 1), progress=False)
    plain = run_protocol(feats, labels, **kwargs)
    n = len(sampling_calls)
    cached = [
        run_protocol(feats, labels, episode_cache_dir=tmp_path, classifier=c, **kwargs) for c in ("logreg", "logreg")
    ]
    assert len(sampling_calls) == n + 2  # the first cached run samples, the second reads
    for df in cached:
        pd.testing.assert_frame_equal(df, plain)
    # other labels (one label changed): another entry, sampled
    other = labels.copy()
    other[[0, -1]] = other[[-1, 0]]
    run_protocol(feats, other, episode_cache_dir=tmp_path, **kwargs)
    assert len(sampling_calls) == n + 4 and len(list(tmp_path.iterdir())) == 4


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped", "other-labels", "other-request"])
def test_damaged_or_mismatched_entry_is_resampled_and_replaced(tmp_path, damage, caplog):
    labels = np.repeat(np.arange(6), 12)
    fp = labels_fingerprint(labels)
    good = cached_episodes(labels, 5, 2, 3, 20, 7, tmp_path)
    assert not good.hit
    path = good.path
    if damage == "garbage":
        path.write_bytes(b"not an npz file")
    elif damage == "truncated":
        path.write_bytes(good.data[: len(good.data) // 2])
    elif damage == "flipped":  # a valid file whose arrays no longer match their fingerprint
        ep = good.episodes
        np.savez(
            path,
            classes=ep.classes,
            support=ep.support[::-1],
            query=ep.query,
            spec=np.array([5, 2, 3, 7, 0]),
            fingerprint=np.array(ep.fingerprint),
            labels_fingerprint=np.array(fp),
        )
    elif damage == "other-labels":  # an intact entry of other labels at this path
        cached_episodes(labels[::-1].copy(), 5, 2, 3, 20, 7, tmp_path / "x").episodes.save(
            path, labels_fingerprint="f" * 64
        )
    else:  # an intact entry of another request (fewer episodes) at this path
        sample_episodes(labels, 5, 2, 3, 19, 7).save(path, labels_fingerprint=fp)
    with caplog.at_level(logging.WARNING, logger="fewshot.episode_cache"):
        again = cached_episodes(labels, 5, 2, 3, 20, 7, tmp_path)
    assert not again.hit and again.episodes.fingerprint == good.episodes.fingerprint
    assert f"episode cache entry {path} is unusable" in caplog.text and "sampling again and replacing it" in caplog.text
    assert load_episodes(path, labels_fingerprint=fp).fingerprint == good.episodes.fingerprint  # replaced
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fewshot.episode_cache"):
        assert cached_episodes(labels, 5, 2, 3, 20, 7, tmp_path).hit
    assert caplog.text == ""


def test_corrupted_entry_recovered_in_evaluate_to_directory(tmp_path, features_file, caplog):
    cache = tmp_path / "cache"
    first = evaluate_to_directory(features_file, tmp_path / "a", PROTOCOL, episode_cache_dir=cache, progress=False)
    entry = sorted(cache.iterdir())[0]
    entry.write_bytes(entry.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="fewshot.episode_cache"):
        second = evaluate_to_directory(features_file, tmp_path / "b", PROTOCOL, episode_cache_dir=cache, progress=False)
    assert "is unusable" in caplog.text
    pd.testing.assert_frame_equal(first.episodes, second.episodes)
    assert load_episodes(entry).n_episodes == 12


def test_concurrent_writers_of_one_entry(tmp_path, caplog):
    """Threads missing the same entry at once all sample and write it, while others keep
    rewriting it as a miss does: no reader ever sees a partial file (no warning, every read a
    hit), and every result and the final file are intact and identical."""
    labels = np.repeat(np.arange(10), 40)
    fp = labels_fingerprint(labels)
    expected = sample_episodes(labels, 5, 5, 15, 400, 3)
    barrier = threading.Barrier(4)
    results, errors, stop = [], [], threading.Event()

    def miss():
        barrier.wait()
        results.append(cached_episodes(labels, 5, 5, 15, 400, 3, tmp_path))

    def rewrite():  # what every concurrent miss does to the entry
        barrier.wait()
        while not stop.is_set():
            expected.save(
                results[0].path if results else episode_cache_path(tmp_path, fp, 5, 5, 15, 400, 3),
                labels_fingerprint=fp,
            )

    def read():
        barrier.wait()
        while len(results) < 2 and not stop.is_set():
            time.sleep(0.001)
        for _ in range(20):
            results.append(cached_episodes(labels, 5, 5, 15, 400, 3, tmp_path))

    def guarded(fn):
        def run():
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)
                stop.set()

        return run

    threads = [threading.Thread(target=guarded(fn)) for fn in (miss, miss, rewrite, read)]
    with caplog.at_level(logging.WARNING, logger="fewshot.episode_cache"):
        for t in threads:
            t.start()
        threads[-1].join()
        stop.set()
        for t in threads:
            t.join()
    assert not errors and caplog.text == ""
    assert [r.hit for r in results[2:]] == [True] * 20
    assert {r.episodes.fingerprint for r in results} == {expected.fingerprint}
    assert [p.name for p in tmp_path.iterdir()] == [episode_cache_path(tmp_path, fp, 5, 5, 15, 400, 3).name]
    assert load_episodes(next(tmp_path.iterdir()), labels_fingerprint=fp).fingerprint == expected.fingerprint


def test_unwritable_cache_warns_and_evaluates(tmp_path, features_file, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with caplog.at_level(logging.WARNING, logger="fewshot.episode_cache"):
        ep = cached_episodes(np.repeat(np.arange(5), 10), 5, 1, 2, 4, 0, blocker / "cache")
    assert not ep.hit and ep.data is None and "cannot write the episode cache entry" in caplog.text
    with pytest.raises(ValueError, match=r"episode cache .*file is not a directory"):
        evaluate_to_directory(features_file, tmp_path / "r", PROTOCOL, episode_cache_dir=blocker)
    assert not (tmp_path / "r").exists()


def test_default_location_and_cli_flags(tmp_path, features_file, run_cli, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE_DIR", str(tmp_path / "root"))
    assert default_episode_cache_dir() == tmp_path / "root" / "episodes"
    monkeypatch.delenv("FEWSHOT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_episode_cache_dir() == tmp_path / "xdg" / "fewshot" / "episodes"
    monkeypatch.setenv("FEWSHOT_CACHE_DIR", str(tmp_path / "root"))
    args = ("evaluate", "--features", features_file, "--ways", "4", "--shots", "1", "--episodes", "5", "--seeds", "0")
    assert run_cli(*args, "--out", tmp_path / "r1")[0] == 0
    assert len(list((tmp_path / "root" / "episodes").iterdir())) == 1
    assert run_cli(*args, "--episode-cache-dir", tmp_path / "mine", "--out", tmp_path / "r2")[0] == 0
    assert len(list((tmp_path / "mine").iterdir())) == 1
    assert (
        run_cli(*args, "--no-episode-cache", "--episode-cache-dir", tmp_path / "unused", "--out", tmp_path / "r3")[0]
        == 0
    )
    assert not (tmp_path / "unused").exists()


def test_load_episodes_checks_the_labels_fingerprint(tmp_path):
    labels = np.repeat(np.arange(6), 8)
    ep = sample_episodes(labels, 5, 1, 2, 3, 0)
    ep.save(tmp_path / "a.npz", labels_fingerprint=labels_fingerprint(labels))
    ep.save(tmp_path / "b.npz")
    assert (
        load_episodes(tmp_path / "a.npz", labels_fingerprint=labels_fingerprint(labels)).fingerprint == ep.fingerprint
    )
    assert load_episodes(Path(tmp_path / "b.npz")).fingerprint == ep.fingerprint
    with pytest.raises(ValueError, match=r"a\.npz: episodes of labels [0-9a-f]{16}, expected labels 0{16}"):
        load_episodes(tmp_path / "a.npz", labels_fingerprint="0" * 64)
    with pytest.raises(ValueError, match=r"b\.npz: episodes of labels unrecorded, expected labels"):
        load_episodes(tmp_path / "b.npz", labels_fingerprint=labels_fingerprint(labels))


def test_refused_request_writes_no_cache_entry(tmp_path):
    labels = np.repeat(np.arange(6), [20, 20, 20, 20, 20, 8])  # 5-shot + 5 queries does not fit class 5
    with pytest.raises(ValueError, match="class 5 has 8 items, fewer than n_shot"):
        run_protocol(
            np.ones((labels.size, 3), np.float32),
            labels,
            n_way=5,
            shots=(1, 5),
            n_query=5,
            n_episodes=4,
            seeds=(0,),
            episode_cache_dir=tmp_path / "cache",
            progress=False,
        )
    assert not (tmp_path / "cache").exists()
