"""Episode-level statistics of one checkpoint's features: CIs, episode-seed summaries, paired tests.

All functions take raw accuracies (fractions in [0, 1], one per episode) and return raw
numbers; rounding and percent formatting happen only when a table is rendered
(:mod:`fewshot.report.tables`). Statistics whose unit is the *training run* (several fine-tunings of
one objective) are in :mod:`fewshot.run_stats`.

Conventions
-----------
* An *episode seed* is one seed of the episode sampler: ``n_episodes`` tasks evaluated once.
  :func:`summarize` gives one row per episode seed (the ``seed`` column), :func:`median_run`
  one row per (dataset, n_way, n_shot): the episode seed whose mean is the median.
* The 95% half-width over episodes is ``t.ppf(0.975, n - 1) * std(ddof=1) / sqrt(n)``. It,
  and the spread of the means of different episode seeds, measure **episode sampling noise**
  of one fixed set of features — not the variation between training runs: every episode seed
  scores the same checkpoint. Only several training runs measure that.
* :func:`paired_test` compares two feature sets on the *same* episodes; it tests whether two
  checkpoints differ on this test set. The Wilcoxon signed-rank test uses
  ``zero_method="zsplit"`` (see its docstring for why).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as _st

__all__ = [
    "CI_FORMULAS",
    "RUN_KEYS",
    "SUMMARY_COLUMNS",
    "MEDIAN_RUN_COLUMNS",
    "WILCOXON_ZERO_METHOD",
    "PairedTestResult",
    "confidence_interval",
    "summarize",
    "median_run",
    "paired_test",
    "holm",
]

#: Columns that identify a run in per-episode data; ``split``, ``n_query`` and ``classifier``
#: are added to the grouping by :func:`summarize` when present.
RUN_KEYS: tuple[str, ...] = ("dataset", "n_way", "n_shot", "seed")
_OPTIONAL_KEYS: tuple[str, ...] = ("split", "n_query", "classifier")

#: Statistics columns of :func:`summarize` (after the key columns).
SUMMARY_COLUMNS: tuple[str, ...] = ("mean", "std", "ci95", "n")

#: Statistics columns of :func:`median_run` (after the key columns).
MEDIAN_RUN_COLUMNS: tuple[str, ...] = (
    "seed",
    "mean",
    "ci95",
    "n",
    "run_mean_min",
    "run_mean_max",
    "n_runs",
)

#: How :func:`paired_test` treats zero differences in the Wilcoxon signed-rank test.
WILCOXON_ZERO_METHOD = "zsplit"


def _as_1d(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains {int(np.isnan(arr).sum())} NaN value(s)")
    return arr


def _t_quantile(level: float, dof: int) -> float:
    return float(_st.t.ppf((1.0 + level) / 2.0, dof))


#: CI formulas accepted by ``ci=``: Student's t (default) or the normal quantile (1.96 at 95%).
CI_FORMULAS: tuple[str, ...] = ("t", "z")


def _check_ci(ci: str) -> None:
    if ci not in CI_FORMULAS:
        raise ValueError(f"ci must be one of {', '.join(CI_FORMULAS)}, got ci={ci!r}")


def confidence_interval(
    accuracies: Sequence[float] | np.ndarray, level: float = 0.95, ci: str = "t"
) -> tuple[float, float]:
    """Mean and the half-width of its two-sided confidence interval.

    ``half_width = q * std(ddof=1) / sqrt(n)`` with ``q = t.ppf((1 + level) / 2, n - 1)``
    (``ci="t"``, default) or ``q = norm.ppf((1 + level) / 2)`` (``ci="z"``: 1.96 at 95%, the
    formula of FEAT, mmfewshot and CD-FSL).

    Args:
        accuracies: ``(n,)`` per-episode accuracies.
        level: confidence level in (0, 1); default 0.95.
        ci: ``"t"`` (default) or ``"z"``.

    Returns:
        ``(mean, half_width)`` as floats.

    Raises:
        ValueError: fewer than 2 values, NaN values, not 1-D, ``level`` outside (0, 1), or an
            unknown ``ci``.
    """
    _check_ci(ci)
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be in (0, 1), got level={level}")
    x = _as_1d(accuracies, "accuracies")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"a confidence interval needs at least 2 values, got n={n}")
    mean = float(x.mean())
    q = _t_quantile(level, n - 1) if ci == "t" else float(_st.norm.ppf((1.0 + level) / 2.0))
    half = q * float(x.std(ddof=1)) / math.sqrt(n)
    return mean, half


def _group_keys(df: pd.DataFrame, with_seed: bool) -> list[str]:
    missing = [c for c in RUN_KEYS if c not in df.columns]
    if missing:
        raise ValueError(f"per-episode results lack columns {missing}")
    keys = [c for c in RUN_KEYS if with_seed or c != "seed"]
    return keys + [c for c in _OPTIONAL_KEYS if c in df.columns]


def summarize(df: pd.DataFrame, level: float = 0.95, ci: str = "t") -> pd.DataFrame:
    """One row per run: mean, std, CI half-width and episode count.

    Args:
        df: per-episode results with columns ``dataset, n_way, n_shot, seed, accuracy``
            (``split``, ``n_query``, ``classifier`` join the grouping when present).
        level: confidence level of ``ci95`` (kept under that name for the default 0.95).
        ci: CI formula, ``"t"`` (default) or ``"z"`` (see :func:`confidence_interval`).

    Returns:
        A DataFrame with the key columns ``dataset, n_way, n_shot, seed`` [``split,
        n_query, classifier``] then ``mean, std, ci95, n``, sorted by the keys. A run with a
        single episode has ``std`` and ``ci95`` NaN.

    Raises:
        ValueError: missing columns, an empty frame, or NaN accuracies.
    """
    _check_ci(ci)
    keys = _group_keys(df, with_seed=True)
    if "accuracy" not in df.columns:
        raise ValueError("per-episode results lack column 'accuracy'")
    if len(df) == 0:
        raise ValueError("cannot summarize an empty results table")
    acc = df["accuracy"].to_numpy(dtype=np.float64)
    if np.isnan(acc).any():
        raise ValueError(f"accuracy contains {int(np.isnan(acc).sum())} NaN value(s)")
    rows = []
    for key, group in df.groupby(keys, sort=True, dropna=False):
        x = group["accuracy"].to_numpy(dtype=np.float64)
        if x.shape[0] >= 2:
            mean, half = confidence_interval(x, level, ci)
            std = float(x.std(ddof=1))
        else:
            mean, half, std = float(x.mean()), math.nan, math.nan
        rows.append((*key, mean, std, half, int(x.shape[0])))
    return pd.DataFrame(rows, columns=[*keys, *SUMMARY_COLUMNS])


def median_run(summary: pd.DataFrame) -> pd.DataFrame:
    """The median episode seed per (dataset, n_way, n_shot), with the spread of seed means.

    The median run is the episode seed whose mean is the median of the seeds' means (the
    spread between seeds is episode sampling noise of one checkpoint, not training variation). With an
    even number of runs there is no middle run, so the **lower** of the two middle runs is
    taken (a real run, never an average of two, and never the more flattering one). When
    several runs share the median mean, the smallest seed wins.

    Args:
        summary: the output of :func:`summarize` (one row per run).

    Returns:
        One row per (dataset, n_way, n_shot) [+ ``split, n_query, classifier`` when present]
        with ``seed`` (the median run), its ``mean``, ``ci95`` and episode count ``n``, the
        smallest and largest run means ``run_mean_min``, ``run_mean_max``, and ``n_runs``.

    Warns:
        UserWarning: some group has a single episode seed (its median is that seed, and
            there is no spread between seeds to report).

    Raises:
        ValueError: missing columns or an empty summary.
    """
    keys = _group_keys(summary, with_seed=False)
    missing = [c for c in ("mean", "ci95", "n") if c not in summary.columns]
    if missing:
        raise ValueError(f"summary lacks columns {missing}")
    if len(summary) == 0:
        raise ValueError("cannot take the median run of an empty summary")
    rows, single = [], []
    for key, group in summary.groupby(keys, sort=True, dropna=False):
        means = group["mean"].to_numpy(dtype=np.float64)
        n_runs = means.shape[0]
        median_value = np.sort(means)[(n_runs - 1) // 2]
        at_median = group[group["mean"] == median_value]
        chosen = at_median.sort_values("seed", kind="mergesort").iloc[0]
        if n_runs == 1:
            single.append(key)
        rows.append(
            (
                *key,
                int(chosen["seed"]),
                float(chosen["mean"]),
                float(chosen["ci95"]),
                int(chosen["n"]),
                float(means.min()),
                float(means.max()),
                int(n_runs),
            )
        )
    if single:
        shown = ", ".join(str(k[:3]) for k in single[:4]) + (" ..." if len(single) > 4 else "")
        warnings.warn(
            f"only one episode seed for {len(single)} group(s) {shown}: the median of one seed is "
            "that seed, and there is no spread between seeds; evaluate more episode seeds",
            UserWarning,
            stacklevel=2,
        )
    return pd.DataFrame(rows, columns=[*keys, *MEDIAN_RUN_COLUMNS])


@dataclass(frozen=True)
class PairedTestResult:
    """The result of :func:`paired_test` (differences are ``a - b``).

    Attributes:
        test: ``"t"`` or ``"wilcoxon"``.
        statistic: t statistic, or the Wilcoxon statistic as SciPy reports it.
        pvalue: two-sided p-value.
        dof: degrees of freedom ``n - 1`` (t test); NaN for Wilcoxon.
        mean_diff: mean of ``a - b``.
        ci95_low, ci95_high: 95% t confidence interval of the mean difference.
        cohen_dz: ``mean_diff / std(a - b, ddof=1)`` (0 when every difference is 0).
        n: number of pairs.
    """

    test: str
    statistic: float
    pvalue: float
    dof: float
    mean_diff: float
    ci95_low: float
    ci95_high: float
    cohen_dz: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict, in declaration order."""
        return asdict(self)


_TESTS = ("t", "wilcoxon")


def paired_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, test: str = "t") -> PairedTestResult:
    """Paired two-sided test of ``a`` against ``b`` on the same episodes.

    The t test is computed from its formula (``t = mean(d) / (std(d, ddof=1) / sqrt(n))``,
    ``dof = n - 1``) and agrees with :func:`scipy.stats.ttest_rel`. The Wilcoxon signed-rank
    test calls :func:`scipy.stats.wilcoxon` with ``zero_method="zsplit"``,
    ``correction=False`` and ``method="auto"`` (the normal approximation with tie
    correction above 50 pairs). Why ``zsplit``: few-shot accuracies are multiples of
    ``1 / (n_way * n_query)``, so many differences are exactly 0 and many tie. ``"zsplit"``
    keeps every episode, counting a zero as half a win for each side, and its variance treats
    the zero ranks as if their signs were random, which makes it **conservative** — the safe
    direction for a claim of significance. (SciPy's default ``"wilcox"``, which drops the
    zeros, is not anti-conservative: in a null simulation with 70 % zero differences, 300
    paired episodes and 2,000 repetitions it rejected at 5.05 % for alpha = 5 %, ``zsplit`` at
    1.9 %. We choose the conservative test, not a corrected one.)

    Whatever the test, the mean difference, its 95% t interval and Cohen's d_z are
    reported. When every difference is 0 the result is ``statistic`` 0 (t) or SciPy's
    zsplit value ``n(n+1)/4`` (Wilcoxon), ``pvalue`` 1.0 and ``cohen_dz`` 0.0; a constant
    non-zero difference gives an infinite t, ``pvalue`` 0.0 and infinite ``cohen_dz``.

    Args:
        a, b: ``(n,)`` per-episode accuracies of two methods, in the same episode order.
        test: ``"t"`` (default) or ``"wilcoxon"``.

    Raises:
        ValueError: unknown ``test``, inputs of different lengths, fewer than 2 pairs, NaN.
    """
    if test not in _TESTS:
        raise ValueError(f"test must be one of {list(_TESTS)}, got test={test!r}")
    x, y = _as_1d(a, "a"), _as_1d(b, "b")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"paired samples must have the same length, got {x.shape[0]} and {y.shape[0]}")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"a paired test needs at least 2 pairs, got n={n}")
    d = x - y
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    dof = n - 1
    se = sd / math.sqrt(n)
    half = _t_quantile(0.95, dof) * se
    all_zero = not np.any(d != 0)
    if sd > 0:
        t_stat = mean / se
        cohen = mean / sd
    elif mean == 0:
        t_stat, cohen = 0.0, 0.0
    else:
        t_stat = cohen = math.copysign(math.inf, mean)
    if test == "t":
        statistic = t_stat
        pvalue = min(1.0, float(2.0 * _st.t.sf(abs(t_stat), dof)))
        out_dof: float = float(dof)
    else:
        out_dof = math.nan
        if all_zero:
            statistic, pvalue = n * (n + 1) / 4.0, 1.0
        else:
            res = _st.wilcoxon(x, y, zero_method=WILCOXON_ZERO_METHOD, correction=False, method="auto")
            statistic, pvalue = float(res.statistic), float(res.pvalue)
    return PairedTestResult(
        test=test,
        statistic=float(statistic),
        pvalue=float(pvalue),
        dof=out_dof,
        mean_diff=mean,
        ci95_low=mean - half,
        ci95_high=mean + half,
        cohen_dz=float(cohen),
        n=int(n),
    )


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (step-down, family-wise error control).

    With the ``m`` non-NaN p-values sorted ascending, ``p_(1) <= ... <= p_(m)``, the adjusted
    value of the i-th is ``max_{j <= i} min(1, (m - j + 1) * p_(j))``: monotone in the raw
    p-value and capped at 1. NaN entries stay NaN and do not count towards ``m``.

    Args:
        pvalues: ``(k,)`` raw p-values in [0, 1] (NaN allowed).

    Returns:
        ``(k,)`` float64 adjusted p-values, in the input order.

    Raises:
        ValueError: not 1-D, or a value outside [0, 1].
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"pvalues must be 1-D, got shape {p.shape}")
    ok = ~np.isnan(p)
    bad = p[ok][(p[ok] < 0) | (p[ok] > 1)]
    if bad.size:
        raise ValueError(f"p-values must lie in [0, 1], got {bad[0]}")
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(ok)
    m = idx.size
    if m == 0:
        return out
    order = np.argsort(p[idx], kind="mergesort")
    scaled = (m - np.arange(m)) * p[idx][order]
    adjusted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    out[idx[order]] = adjusted
    return out
