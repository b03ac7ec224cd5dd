"""Paired comparison of methods against a baseline on identical episodes.

:func:`compare` pairs the per-episode accuracies of each method with the baseline's by
``(dataset, n_way, n_shot, seed, episode)``, tests the differences per
``(dataset, n_way, n_shot)`` on the pooled episodes of all seeds, and corrects the p-values
with Holm across every comparison of the call. It refuses — rather than test unpaired
numbers as paired — when the two results were not evaluated on the same episodes.

A method is identified by its results' label (``manifest["label"]``, else the directory
name). Several results directories may share a label when they hold different
datasets/shots/seeds (``fewshot evaluate`` writes one directory per dataset); they are
merged. Two directories with the same label and an overlapping run are an error.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fewshot.results import EPISODE_COLUMNS, Results, read_results
from fewshot.stats import holm, paired_test

__all__ = ["COMPARE_COLUMNS", "PROTOCOL_FIELDS", "compare", "load_methods", "Method"]

#: Columns of the DataFrame returned by :func:`compare`, in order. Accuracies and their
#: differences are fractions in [0, 1]; the differences are ``method - baseline``.
#:
#: ========================  ================================================================
#: dataset, n_way, n_shot    the comparison's benchmark and episode shape
#: method, baseline          the two labels compared
#: n_episodes                number of paired episodes, pooled over all seeds
#: n_runs                    number of seeds (runs) pooled
#: mean_method               mean accuracy of the method over the pooled episodes
#: mean_baseline             mean accuracy of the baseline over the same episodes
#: mean_diff                 mean of the per-episode differences (method - baseline)
#: ci95_low, ci95_high       95% t confidence interval of ``mean_diff``
#: T, dof                    paired t statistic and its degrees of freedom (n_episodes - 1)
#: p_val                     two-sided p of the paired t test
#: p_wilcoxon                two-sided p of the Wilcoxon signed-rank test (zero_method zsplit)
#: cohen_dz                  mean_diff / std of the differences (ddof=1)
#: test                      the test whose p is corrected: ``"t"`` or ``"wilcoxon"``
#: p_holm                    Holm-adjusted p of ``test`` across all rows of the call
#: significant               ``p_holm < alpha and mean_diff > 0`` (method better)
#: run_mean_min_method       smallest per-seed mean of the method (between-run spread)
#: run_mean_max_method       largest per-seed mean of the method
#: run_mean_min_baseline     smallest per-seed mean of the baseline
#: run_mean_max_baseline     largest per-seed mean of the baseline
#: ========================  ================================================================
COMPARE_COLUMNS: tuple[str, ...] = (
    "dataset",
    "n_way",
    "n_shot",
    "method",
    "baseline",
    "n_episodes",
    "n_runs",
    "mean_method",
    "mean_baseline",
    "mean_diff",
    "ci95_low",
    "ci95_high",
    "T",
    "dof",
    "p_val",
    "p_wilcoxon",
    "cohen_dz",
    "test",
    "p_holm",
    "significant",
    "run_mean_min_method",
    "run_mean_max_method",
    "run_mean_min_baseline",
    "run_mean_max_baseline",
)

#: The feature-independent protocol, read from the per-episode rows of each dataset; two
#: methods are compared on a dataset only when all of these are equal.
PROTOCOL_FIELDS: tuple[str, ...] = ("split", "ways", "shots", "queries", "episodes", "seeds")

_PAIR_KEYS = ["dataset", "n_way", "n_shot", "seed", "episode"]
_RUN_KEYS = ["dataset", "n_way", "n_shot", "seed"]
_TESTS = ("t", "wilcoxon")


@dataclass(frozen=True)
class Method:
    """The per-episode rows of one label, merged over its results directories.

    ``episodes`` carries an extra ``_source`` column: the path of the directory each row
    came from (for error messages).
    """

    label: str
    episodes: pd.DataFrame
    sources: tuple[str, ...]

    def where(self, dataset: str) -> str:
        """The results directory (or directories) that hold ``dataset``."""
        src = self.episodes.loc[self.episodes["dataset"] == dataset, "_source"].unique()
        return ", ".join(sorted(str(s) for s in src)) or ", ".join(self.sources)


def _as_results(item: Results | str | os.PathLike) -> Results:
    if isinstance(item, Results):
        return item
    if isinstance(item, (str, os.PathLike)):
        return read_results(item)
    raise TypeError(f"expected a Results or a results directory path, got {type(item).__name__}")


def _fmt_run(key: Sequence) -> str:
    dataset, n_way, n_shot, seed = key[:4]
    return f"{dataset} {n_way}-way {n_shot}-shot seed {seed}"


def load_methods(results: Iterable[Results | str | os.PathLike]) -> list[Method]:
    """Read results and merge those that share a label, in first-seen label order.

    Raises:
        ValueError: no results, missing columns, NaN accuracies, a repeated episode, or two
            directories with the same label holding the same run.
        TypeError: an item is neither a :class:`~fewshot.results.Results` nor a path.
        FileNotFoundError: a path is not a complete results directory.
    """
    items = [_as_results(r) for r in results]
    if not items:
        raise ValueError("no results given")
    by_label: dict[str, list[Results]] = {}
    for r in items:
        by_label.setdefault(r.label, []).append(r)
    methods = []
    for label, parts in by_label.items():
        frames, seen = [], {}
        for r in parts:
            df = r.episodes
            missing = [c for c in EPISODE_COLUMNS if c not in df.columns]
            if missing:
                raise ValueError(f"results {r.path} lack columns {missing}")
            if len(df) == 0:
                raise ValueError(f"results {r.path} hold no episodes")
            if df["accuracy"].isna().any():
                raise ValueError(f"results {r.path} have NaN accuracies")
            dup = df.duplicated(_PAIR_KEYS)
            if dup.any():
                row = df.loc[dup, _PAIR_KEYS].iloc[0]
                raise ValueError(
                    f"results {r.path} list episode {row['episode']} of "
                    f"{_fmt_run(row.tolist())} more than once"
                )
            for key in df[_RUN_KEYS].drop_duplicates().itertuples(index=False):
                key = tuple(key)
                if key in seen:
                    raise ValueError(
                        f"duplicate label {label!r}: {seen[key]} and {r.path} both hold "
                        f"{_fmt_run(key)}; give each method a distinct label"
                    )
                seen[key] = r.path
            frames.append(df.assign(_source=str(r.path)))
        merged = pd.concat(frames, ignore_index=True)
        merged["episodes_fingerprint"] = merged["episodes_fingerprint"].astype(str)
        methods.append(Method(label, merged, tuple(str(r.path) for r in parts)))
    return methods


def _protocol(df: pd.DataFrame) -> dict[str, list]:
    """The feature-independent protocol of one dataset's rows."""
    counts = df.groupby(_RUN_KEYS, sort=True).size()
    return {
        "split": sorted(df["split"].astype(str).unique().tolist()),
        "ways": sorted(int(v) for v in df["n_way"].unique()),
        "shots": sorted(int(v) for v in df["n_shot"].unique()),
        "queries": sorted(int(v) for v in df["n_query"].unique()),
        "episodes": sorted({int(v) for v in counts.to_numpy()}),
        "seeds": sorted(int(v) for v in df["seed"].unique()),
    }


def _show(values: list) -> str:
    return str(values[0]) if len(values) == 1 else str(values)


def _pair(method: Method, base: Method, dataset: str) -> pd.DataFrame:
    """Paired rows of one dataset, or a ValueError naming both results and what differs."""
    m = method.episodes[method.episodes["dataset"] == dataset]
    b = base.episodes[base.episodes["dataset"] == dataset]
    who = (
        f"cannot pair {method.label!r} ({method.where(dataset)}) with baseline "
        f"{base.label!r} ({base.where(dataset)}) on {dataset}"
    )
    pm, pb = _protocol(m), _protocol(b)
    for field in PROTOCOL_FIELDS:
        if pm[field] != pb[field]:
            raise ValueError(f"{who}: {field} differ ({_show(pm[field])} vs {_show(pb[field])})")
    cols = [*_PAIR_KEYS, "accuracy", "episodes_fingerprint"]
    merged = pd.merge(
        m[cols], b[cols], on=_PAIR_KEYS, how="outer", suffixes=("_m", "_b"), indicator=True,
        sort=True,
    )
    only_b = merged[merged["_merge"] == "right_only"]
    if len(only_b):
        first = only_b.iloc[0]
        raise ValueError(
            f"{who}: the method lacks {len(only_b)} episode(s) the baseline has "
            f"(first: episode {first['episode']} of {_fmt_run(first[_PAIR_KEYS].tolist())})"
        )
    only_m = merged[merged["_merge"] == "left_only"]
    if len(only_m):
        first = only_m.iloc[0]
        raise ValueError(
            f"{who}: the method has {len(only_m)} episode(s) the baseline lacks "
            f"(first: episode {first['episode']} of {_fmt_run(first[_PAIR_KEYS].tolist())})"
        )
    differ = merged["episodes_fingerprint_m"] != merged["episodes_fingerprint_b"]
    if differ.any():
        row = merged[differ].iloc[0]
        raise ValueError(
            f"{who}: episode fingerprints differ for {_fmt_run(row[_PAIR_KEYS].tolist())} "
            f"({row['episodes_fingerprint_m'][:12]} vs {row['episodes_fingerprint_b'][:12]}); "
            "they were not evaluated on the same episodes"
        )
    return merged.drop(columns="_merge")


def _compare_methods(
    methods: list[Method],
    baseline: str | None,
    test: str,
    alpha: float,
    require_overlap: bool = True,
) -> pd.DataFrame:
    if test not in _TESTS:
        raise ValueError(f"test must be one of {list(_TESTS)}, got test={test!r}")
    if not (isinstance(alpha, (int, float)) and 0.0 < float(alpha) < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got alpha={alpha!r}")
    labels = [m.label for m in methods]
    if baseline is None:
        baseline = labels[0]
    if baseline not in labels:
        raise ValueError(f"unknown baseline {baseline!r}; the labels are {labels}")
    base = methods[labels.index(baseline)]
    base_datasets = list(dict.fromkeys(base.episodes["dataset"].astype(str)))
    rows = []
    for method in methods:
        if method is base:
            continue
        own = dict.fromkeys(method.episodes["dataset"].astype(str))
        shared = [d for d in own if d in base_datasets]
        if not shared and require_overlap:
            raise ValueError(
                f"{method.label!r} ({', '.join(method.sources)}) and baseline {baseline!r} "
                f"({', '.join(base.sources)}) have no dataset in common"
            )
        for dataset in shared:
            paired = _pair(method, base, dataset)
            for (n_way, n_shot), group in paired.groupby(["n_way", "n_shot"], sort=True):
                rows.append(
                    {
                        "dataset": dataset,
                        "n_way": int(n_way),
                        "n_shot": int(n_shot),
                        "method": method.label,
                        "baseline": baseline,
                        **_paired_statistics(group),
                        "test": test,
                    }
                )
    columns = [c for c in COMPARE_COLUMNS if c not in ("p_holm", "significant")]
    out = pd.DataFrame(rows, columns=columns)
    all_datasets = pd.concat([m.episodes["dataset"] for m in methods]).astype(str)
    dataset_rank = {d: i for i, d in enumerate(dict.fromkeys(all_datasets))}
    method_rank = {label: i for i, label in enumerate(labels)}
    sort_key = [
        (dataset_rank[d], w, s, method_rank[m])
        for d, w, s, m in zip(out["dataset"], out["n_way"], out["n_shot"], out["method"])
    ]
    out = out.iloc[sorted(range(len(out)), key=sort_key.__getitem__)].reset_index(drop=True)
    p = out["p_val" if test == "t" else "p_wilcoxon"].to_numpy(dtype=np.float64)
    out["p_holm"] = holm(p)
    out["significant"] = (out["p_holm"] < alpha) & (out["mean_diff"] > 0)
    out = out.loc[:, list(COMPARE_COLUMNS)]
    ints = {c: "int64" for c in ("n_way", "n_shot", "n_episodes", "n_runs")}
    return out.astype({**ints, "significant": bool})


def _paired_statistics(group: pd.DataFrame) -> dict[str, float]:
    """Test statistics and run spread of one (dataset, n_way, n_shot) of paired rows."""
    group = group.sort_values(["seed", "episode"], kind="mergesort")
    a = group["accuracy_m"].to_numpy(dtype=np.float64)
    b = group["accuracy_b"].to_numpy(dtype=np.float64)
    out = {
        "n_episodes": int(a.shape[0]),
        "mean_method": float(a.mean()),
        "mean_baseline": float(b.mean()),
    }
    if a.shape[0] >= 2:
        t, w = paired_test(a, b, "t"), paired_test(a, b, "wilcoxon")
        out |= {
            "mean_diff": t.mean_diff,
            "ci95_low": t.ci95_low,
            "ci95_high": t.ci95_high,
            "T": t.statistic,
            "dof": t.dof,
            "p_val": t.pvalue,
            "p_wilcoxon": w.pvalue,
            "cohen_dz": t.cohen_dz,
        }
    else:  # one pooled pair: a difference but no test
        untested = ("ci95_low", "ci95_high", "T", "dof", "p_val", "p_wilcoxon", "cohen_dz")
        out |= dict.fromkeys(untested, math.nan)
        out["mean_diff"] = float((a - b).mean())
    run_m = group.groupby("seed")["accuracy_m"].mean()
    run_b = group.groupby("seed")["accuracy_b"].mean()
    out |= {
        "n_runs": int(run_m.shape[0]),
        "run_mean_min_method": float(run_m.min()),
        "run_mean_max_method": float(run_m.max()),
        "run_mean_min_baseline": float(run_b.min()),
        "run_mean_max_baseline": float(run_b.max()),
    }
    return out


def compare(
    results: Sequence[Results | str | os.PathLike],
    baseline: str | None = None,
    test: str = "t",
    alpha: float = 0.01,
) -> pd.DataFrame:
    """Test every method against the baseline on each shared (dataset, n_way, n_shot).

    Per-episode accuracies are paired by ``(dataset, n_way, n_shot, seed, episode)``; the
    tests run on the pooled episodes of all seeds (episodes of different seeds are
    independent tasks). Both the paired t test and the Wilcoxon signed-rank test are always
    reported (:func:`fewshot.stats.paired_test`); ``test`` chooses which p-value is
    Holm-corrected across all rows of the call and decides ``significant``.

    Datasets that only one of the two holds are not compared. On a shared dataset the
    protocol (:data:`PROTOCOL_FIELDS`: split, ways, shots, queries, episodes per seed,
    seeds) must be identical, the method must have exactly the baseline's episodes, and the
    episode fingerprints must agree run by run.

    Args:
        results: results directories (paths) or :class:`~fewshot.results.Results`, two or
            more labels; results sharing a label are merged (see the module docstring).
        baseline: the baseline's label; default: the label of the first results.
        test: ``"t"`` (default) or ``"wilcoxon"``.
        alpha: significance level for ``significant``, in (0, 1); default 0.01.

    Returns:
        A DataFrame with columns :data:`COMPARE_COLUMNS`, one row per (dataset, n_way,
        n_shot, method other than the baseline), ordered by dataset (first-seen order),
        n_way, n_shot, then method (input order).

    Raises:
        ValueError: fewer than two labels, an unknown baseline (the message lists the
            labels), a duplicate label holding the same run, a bad ``test``/``alpha``, or —
            the refusals — a method whose protocol, episodes or episode fingerprints differ
            from the baseline's on a shared dataset, or which shares no dataset with it.
        FileNotFoundError: a path is not a complete results directory.
    """
    if isinstance(results, (str, os.PathLike, Results)):
        results = [results]
    methods = load_methods(results)
    if len(methods) < 2:
        raise ValueError(
            "compare needs results of at least two methods, got the single label "
            f"{methods[0].label!r}"
        )
    return _compare_methods(methods, baseline, test, alpha)

