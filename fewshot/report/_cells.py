"""Cells and ordering shared by the table (:mod:`fewshot.report.tables`) and the plots
(:mod:`fewshot.report.plots`): dataset names and their table order, one table cell per
method × dataset × shot, and the check of a user-given row order."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as _st

from fewshot.report.compare import Method
from fewshot.stats import median_run, summarize

__all__ = [
    "DATASET_ORDER",
    "DATASET_DISPLAY",
    "canonical_dataset",
    "dataset_display",
    "dataset_rank",
    "median_cells",
    "ordered_labels",
]

#: Registry names of the paper's benchmarks, in table order; other datasets follow.
DATASET_ORDER: tuple[str, ...] = ("cifar-fs", "fc100", "mini-imagenet", "tiered-imagenet", "cub")
#: Display names used in table headers and plot titles.
DATASET_DISPLAY: dict[str, str] = {
    "cifar-fs": "CIFAR-FS",
    "fc100": "FC100",
    "mini-imagenet": "miniImageNet",
    "tiered-imagenet": "tieredImageNet",
    "cub": "CUB",
}


def _squash(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


_ALIASES = {_squash(k): k for k in DATASET_ORDER} | {_squash(v): k for k, v in DATASET_DISPLAY.items()}


def canonical_dataset(name: str) -> str:
    """Registry name of a dataset given by registry or display name, in any case and
    punctuation (``miniImageNet``, ``mini_imagenet`` → ``mini-imagenet``); others unchanged."""
    return _ALIASES.get(_squash(str(name)), str(name))


def dataset_display(name: str) -> str:
    """Display name of a dataset (``mini-imagenet`` → ``miniImageNet``; others unchanged)."""
    return DATASET_DISPLAY.get(canonical_dataset(name), str(name))


def dataset_rank(datasets: Sequence[str]) -> dict[str, int]:
    """Table order: the paper's four benchmarks, then the others in first-seen order."""
    rank = {d: i for i, d in enumerate(DATASET_ORDER)}
    for d in datasets:
        if d not in rank:
            rank[d] = len(rank)
    return rank


def ordered_labels(order: Sequence[str] | None, labels: Sequence[str]) -> list[str]:
    """``labels`` with those named in ``order`` first, in that order, the others after them
    in their own order (``order=None``: ``labels`` unchanged).

    Raises:
        ValueError: ``order`` names a label not in ``labels``, or names a label twice.
    """
    labels = list(labels)
    if order is None:
        return labels
    order = [str(o) for o in order]
    unknown = [o for o in order if o not in labels]
    if unknown:
        raise ValueError(f"unknown label(s) {unknown} in order; the rows are {labels}")
    twice = [o for o in dict.fromkeys(order) if order.count(o) > 1]
    if twice:
        raise ValueError(f"order names row(s) {twice} more than once, got order={order}")
    return order + [o for o in labels if o not in order]


def _runs_cell(m: Method, df: pd.DataFrame) -> dict[str, Any]:
    """A multi-run cell: mean over training runs ± 95% t CI over the run means."""
    means = df.groupby("run", sort=True)["accuracy"].mean().to_numpy(dtype=np.float64)
    per_run = df.groupby("run", sort=True).size().to_numpy()
    k = means.shape[0]
    sd = float(means.std(ddof=1))
    return {
        "mean": float(means.mean()),
        "half_width": float(_st.t.ppf(0.975, k - 1)) * sd / np.sqrt(k),
        "seed": pd.NA,
        "n_train_runs": k,
        "n_seeds": int(df["seed"].nunique()),
        "n_episodes": int(per_run.min()) // max(1, int(df["seed"].nunique())),
        "n_query": int(df["n_query"].iloc[0]),
        "run_mean_min": float(means.min()),
        "run_mean_max": float(means.max()),
        "between_run_sd": sd,
    }


def _single_run_cells(m: Method, df: pd.DataFrame) -> pd.DataFrame:
    """Cells of one training run: the median episode seed ± its episode CI."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        med = median_run(summarize(df.drop(columns=["classifier"])))
    for w in caught:  # name the method in median_run's single-seed warning
        warnings.warn(f"{m.label!r}: {w.message}", w.category, stacklevel=4)
    return pd.DataFrame(
        {
            "dataset": med["dataset"].astype(str),
            "n_way": med["n_way"].astype("int64"),
            "n_shot": med["n_shot"].astype("int64"),
            "mean": med["mean"],
            "half_width": med["ci95"],
            "seed": med["seed"],
            "n_train_runs": 1,
            "n_seeds": med["n_runs"],
            "n_episodes": med["n"],
            "n_query": med["n_query"],
            "run_mean_min": np.nan,
            "run_mean_max": np.nan,
            "between_run_sd": np.nan,
        }
    )


def median_cells(methods: Sequence[Method]) -> pd.DataFrame:
    """Table cells of re-run methods, one row per (method, dataset, way, shot).

    A cell with several training runs is the mean over the runs of each run's mean accuracy
    (over all its episodes and episode seeds) ± the 95% t half-width over the run means
    (``k - 1`` dof), with the smallest and largest run mean and the between-run SD. A cell
    with one training run is its median episode seed (:func:`fewshot.stats.median_run`) ±
    that seed's 95% half-width over its episodes — episode sampling noise only.

    Returns:
        Columns ``dataset, n_way, n_shot, mean, half_width, seed, n_train_runs, n_seeds,
        n_episodes, n_query, run_mean_min, run_mean_max, between_run_sd, method, quoted``;
        accuracies (``mean``, ``half_width``, ``run_mean_*``, ``between_run_sd``) are
        fractions in [0, 1], like ``summary.csv`` and :func:`fewshot.report.compare.compare`.

    Raises:
        ValueError: a method holds one dataset/way/shot under several splits or query sizes.
    """
    frames = []
    for m in methods:
        for (dataset, n_way, n_shot), df in m.episodes.groupby(["dataset", "n_way", "n_shot"], sort=True):
            if df["split"].nunique() > 1 or df["n_query"].nunique() > 1:
                raise ValueError(
                    f"{m.label!r} holds {dataset} {n_way}-way {n_shot}-shot under "
                    "several splits or query sizes; give them distinct labels"
                )
            if df["run"].nunique() >= 2:
                cell = pd.DataFrame(
                    [{"dataset": str(dataset), "n_way": int(n_way), "n_shot": int(n_shot), **_runs_cell(m, df)}]
                )
            else:
                cell = _single_run_cells(m, df)
            frames.append(cell.assign(method=m.label, quoted=False))
    return pd.concat(frames, ignore_index=True)
