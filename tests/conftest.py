"""Shared fixtures: small generated feature files and a CLI runner."""

from __future__ import annotations

import numpy as np
import pytest

from fewshot.cli import main


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep the feature cache of every test out of the user's home directory."""
    monkeypatch.setenv("FEWSHOT_CACHE_DIR", str(tmp_path_factory.mktemp("feature-cache")))


@pytest.fixture
def run_cli(capsys):
    """Run ``fewshot ARGS...`` in-process; returns (exit status, stdout, stderr)."""

    def _run(*args: str) -> tuple[int, str, str]:
        try:
            status = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            status = exc.code
        out = capsys.readouterr()
        return status, out.out, out.err

    return _run


def make_features(n_classes: int = 8, per_class: int = 30, d: int = 32, spread: float = 1.0, seed: int = 0):
    """Class-clustered, post-ReLU synthetic features and labels."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, d))
    labels = np.repeat(np.arange(n_classes), per_class)
    feats = np.maximum(spread * centers[labels] + rng.normal(size=(labels.size, d)), 0).astype(np.float32)
    return feats, labels


@pytest.fixture
def features_file(tmp_path):
    feats, labels = make_features()
    path = tmp_path / "features.npz"
    np.savez(
        path,
        features=feats,
        labels=labels,
        class_names=np.array([f"c{i}" for i in range(8)]),
        dataset="toy",
        split="test",
    )
    return path
