"""``analyze_to_directory``: every analysis of several feature files, side by side, in one folder."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fewshot._io import atomic_dir, sha256_arrays, write_csv, write_json
from fewshot._manifest import make_manifest
from fewshot.analysis.figures import plot_similarity, plot_tsne
from fewshot.analysis.isotropy import isotropy_score
from fewshot.analysis.similarity import similarity_distributions
from fewshot.analysis.tsne import tsne_map
from fewshot.features import load_features

__all__ = ["analyze_to_directory", "ANALYSIS_COLUMNS", "SIMILARITY_COLUMNS", "feature_labels"]

logger = logging.getLogger(__name__)

#: Columns of ``analysis.csv`` (one row per feature file).
ANALYSIS_COLUMNS: tuple[str, ...] = (
    "label",
    "path",
    "dataset",
    "split",
    "n",
    "dim",
    "n_classes",
    "isotropy",
    "isotropy_l2",
    "mean_positive",
    "sd_positive",
    "mean_negative",
    "sd_negative",
    "gap",
    "overlap",
    "fingerprint",
)

#: Columns of ``similarity.csv`` (one row per feature file and scope).
SIMILARITY_COLUMNS: tuple[str, ...] = (
    "label",
    "scope",
    "n_positive",
    "mean_positive",
    "sd_positive",
    "n_negative",
    "mean_negative",
    "sd_negative",
    "gap",
    "overlap",
)


def feature_labels(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Short distinct labels for feature files: the stem, with as many parent folders as it
    takes to tell them apart (``ce/features.npz``, ``schane/features.npz`` -> ``ce/features``...)."""
    parts = [Path(p).with_suffix("").parts for p in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(p) for p in paths]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "class"


def _fingerprint(path: Path, features: np.ndarray, labels: np.ndarray) -> str:
    with np.load(path, allow_pickle=False) as data:
        if "fingerprint" in data.files:
            return str(data["fingerprint"])
    return sha256_arrays(np.ascontiguousarray(features), np.ascontiguousarray(labels))


def analyze_to_directory(
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    bins: int = 200,
    max_per_class: int | None = None,
    tsne_classes: int = 10,
    tsne_per_class: int = 100,
    seed: int = 0,
    tsne: bool = True,
    dpi: int = 120,
) -> pd.DataFrame:
    """Isotropy, similarity distributions and t-SNE of feature files, written to ``out``.

    What ``fewshot analyze`` runs. ``out`` is built under a temporary name and then replaces
    any previous ``out`` (so it holds only this analysis). It receives:

    - ``analysis.csv``: one row per file (:data:`ANALYSIS_COLUMNS`): isotropy of the features
      as given and L2-normalised (:func:`~fewshot.analysis.isotropy_score`), statistics of
      all positive/negative pairs, the file's fingerprint;
    - ``similarity.csv``: one row per file and scope (``all``, then each of ``classes``);
    - ``similarity.png`` and ``similarity-<class>.png``: histograms, one panel per file;
    - ``tsne.png`` and ``tsne.csv``: seeded t-SNE maps (:func:`~fewshot.analysis.tsne_map`);
    - ``manifest.json``: the settings, the input paths and fingerprints, versions.

    Args:
        paths: feature files (``.npz`` from ``fewshot extract``), shown left to right.
        out: output directory.
        labels: one display label per file (default :func:`feature_labels`).
        classes: class names to analyse separately (each must be in every file).
        bins: similarity histogram bins over [-1, 1].
        max_per_class: items per class in the similarity statistics (seeded by ``seed``;
            default all). Isotropy always uses every item.
        tsne_classes, tsne_per_class: classes and items per class in the t-SNE map.
        seed: seeds the subsamples and the t-SNE embedding.
        tsne: False skips the t-SNE map (its files are not written).
        dpi: resolution of the PNGs.

    Returns:
        The ``analysis.csv`` frame.

    Raises:
        ValueError: no paths, a label count that differs from the paths, duplicate labels, an
            unreadable feature file, a class missing from a file, bad settings.
        FileNotFoundError: a feature file does not exist.
    """

    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("give at least one feature file")
    labels = list(labels) if labels is not None else feature_labels(paths)
    if len(labels) != len(paths):
        raise ValueError(f"got {len(labels)} labels for {len(paths)} feature files")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be distinct, got {labels}")
    classes = [str(c) for c in classes or ()]

    rows, sim_rows, sim_panels, tsne_panels, inputs = [], [], [], [], []
    for path, label in zip(paths, labels):
        fs = load_features(path)
        logger.info("analysing %s (%d × %d)", path, *fs.features.shape)
        dists = similarity_distributions(
            fs.features,
            fs.labels,
            classes=classes,
            class_names=fs.class_names,
            bins=bins,
            max_per_class=max_per_class,
            seed=seed,
        )
        fingerprint = _fingerprint(path, fs.features, fs.labels)
        rows.append(
            {
                "label": label,
                "path": str(path),
                "dataset": fs.dataset,
                "split": fs.split,
                "n": int(fs.features.shape[0]),
                "dim": int(fs.features.shape[1]),
                "n_classes": int(np.unique(fs.labels).size),
                "isotropy": isotropy_score(fs.features),
                "isotropy_l2": isotropy_score(fs.features, normalize=True),
                **{k: v for k, v in dists[0].row().items() if k not in ("scope", "n_positive", "n_negative")},
                "fingerprint": fingerprint,
            }
        )
        sim_rows += [{"label": label, **d.row()} for d in dists]
        sim_panels.append([(label, d) for d in dists])
        if tsne:
            frame = tsne_map(
                fs.features,
                fs.labels,
                n_classes=tsne_classes,
                per_class=tsne_per_class,
                class_names=fs.class_names,
                seed=seed,
            )
            tsne_panels.append((label, frame))
        inputs.append({"label": label, "path": str(path.resolve()), "fingerprint": fingerprint})

    analysis = pd.DataFrame(rows, columns=list(ANALYSIS_COLUMNS))
    config: dict[str, Any] = {
        "labels": labels,
        "classes": classes,
        "bins": bins,
        "max_per_class": max_per_class,
        "tsne": tsne,
        "tsne_classes": tsne_classes,
        "tsne_per_class": tsne_per_class,
        "seed": seed,
    }
    with atomic_dir(out) as tmp:
        write_csv(tmp / "analysis.csv", analysis)
        write_csv(tmp / "similarity.csv", pd.DataFrame(sim_rows, columns=list(SIMILARITY_COLUMNS)))
        plot_similarity([panels[0] for panels in sim_panels], tmp / "similarity.png", dpi=dpi)
        for k, cls in enumerate(classes, start=1):
            plot_similarity([panels[k] for panels in sim_panels], tmp / f"similarity-{_slug(cls)}.png", dpi=dpi)
        if tsne:
            frames = [frame.rename(columns={"label": "class_label"}).assign(file=label) for label, frame in tsne_panels]
            write_csv(tmp / "tsne.csv", pd.concat(frames, ignore_index=True))
            plot_tsne(tsne_panels, tmp / "tsne.png", dpi=dpi)
        write_json(tmp / "manifest.json", make_manifest("analyze", config, inputs=inputs))
    return analysis
