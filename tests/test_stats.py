"""Statistics against SciPy and hand-written references."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from fewshot.stats import (
    MEDIAN_RUN_COLUMNS,
    SUMMARY_COLUMNS,
    confidence_interval,
    holm,
    median_run,
    paired_test,
    summarize,
)


def quantized(rng: np.random.Generator, n: int, n_query: int = 75, low: int = 30, high: int = 70) -> np.ndarray:
    """Accuracies as few-shot episodes produce them: multiples of 1 / n_query."""
    return rng.integers(low, high, n) / n_query


# ----------------------------------------------------------------- confidence_interval


@pytest.mark.parametrize("n", [2, 3, 15, 600])
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_confidence_interval_matches_scipy_t_interval(n: int, level: float) -> None:
    x = np.random.default_rng(n).uniform(0.2, 0.9, n)
    lo, hi = st.t.interval(level, n - 1, loc=x.mean(), scale=st.sem(x))
    mean, half = confidence_interval(x, level)
    assert mean == pytest.approx(x.mean(), rel=1e-12)
    assert mean - half == pytest.approx(lo, rel=1e-12)
    assert mean + half == pytest.approx(hi, rel=1e-12)


def test_confidence_interval_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 2 values, got n=1"):
        confidence_interval([0.5])
    with pytest.raises(ValueError, match="NaN"):
        confidence_interval([0.5, float("nan"), 0.7])
    with pytest.raises(ValueError, match="level must be in"):
        confidence_interval([0.5, 0.6], level=95)
    with pytest.raises(ValueError, match="1-D"):
        confidence_interval(np.ones((2, 2)))


# ----------------------------------------------------------------- summarize / median_run


def episodes_frame(run_means: dict[int, float], n: int = 20, dataset: str = "cifar-fs") -> pd.DataFrame:
    rows = []
    for seed, mean in run_means.items():
        noise = np.random.default_rng(seed).normal(0, 0.05, n)
        acc = mean + noise - noise.mean()  # the run mean is exactly `mean` (up to rounding)
        for e in range(n):
            rows.append(
                dict(
                    dataset=dataset,
                    split="test",
                    n_way=5,
                    n_shot=1,
                    n_query=15,
                    seed=seed,
                    episode=e,
                    accuracy=acc[e],
                    classifier="logreg",
                )
            )
    return pd.DataFrame(rows)


def test_summarize_one_row_per_run_matching_confidence_interval() -> None:
    df = pd.concat([episodes_frame({0: 0.6, 1: 0.7}), episodes_frame({0: 0.5}, n=7, dataset="fc100")])
    s = summarize(df)
    assert list(s.columns) == ["dataset", "n_way", "n_shot", "seed", "split", "n_query", "classifier", *SUMMARY_COLUMNS]
    assert len(s) == 3
    for _, row in s.iterrows():
        x = df[(df["dataset"] == row["dataset"]) & (df["seed"] == row["seed"])]["accuracy"].to_numpy()
        mean, half = confidence_interval(x)
        assert row["mean"] == pytest.approx(mean, rel=1e-12)
        assert row["ci95"] == pytest.approx(half, rel=1e-12)
        assert row["std"] == pytest.approx(x.std(ddof=1), rel=1e-12)
        assert row["n"] == x.size


def test_summarize_single_episode_run_has_nan_ci_and_rejects_nan() -> None:
    s = summarize(episodes_frame({0: 0.6}, n=1))
    assert s["n"].iloc[0] == 1 and math.isnan(s["ci95"].iloc[0]) and math.isnan(s["std"].iloc[0])
    df = episodes_frame({0: 0.6})
    df.loc[3, "accuracy"] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        summarize(df)
    with pytest.raises(ValueError, match="lack columns"):
        summarize(df.drop(columns="seed"))


def test_median_run_odd_count_takes_the_middle_run() -> None:
    s = summarize(episodes_frame({0: 0.70, 1: 0.60, 2: 0.65}))
    m = median_run(s)
    assert list(m.columns) == ["dataset", "n_way", "n_shot", "split", "n_query", "classifier", *MEDIAN_RUN_COLUMNS]
    row = m.iloc[0]
    assert row["seed"] == 2
    chosen = s[s["seed"] == 2].iloc[0]
    assert row["mean"] == chosen["mean"] and row["ci95"] == chosen["ci95"] and row["n"] == 20
    assert row["run_mean_min"] == pytest.approx(0.60) and row["run_mean_max"] == pytest.approx(0.70)
    assert row["n_runs"] == 3


def test_median_run_even_count_takes_the_lower_middle_run() -> None:
    m = median_run(summarize(episodes_frame({0: 0.80, 1: 0.60, 2: 0.70, 3: 0.75})))
    assert m["seed"].iloc[0] == 2  # sorted means .60 .70 .75 .80 -> lower middle .70
    assert m["n_runs"].iloc[0] == 4


def test_median_run_ties_break_to_the_smallest_seed() -> None:
    s = pd.DataFrame(
        dict(
            dataset="d", n_way=5, n_shot=1, seed=[5, 2, 9], mean=[0.5, 0.5, 0.6], std=0.1, ci95=[0.01, 0.02, 0.03], n=10
        )
    )
    row = median_run(s).iloc[0]
    assert row["seed"] == 2 and row["ci95"] == 0.02


def test_median_run_single_run_warns() -> None:
    s = summarize(episodes_frame({4: 0.6}))
    with pytest.warns(UserWarning, match="median of one seed is that seed"):
        m = median_run(s)
    assert m["seed"].iloc[0] == 4 and m["n_runs"].iloc[0] == 1
    assert m["run_mean_min"].iloc[0] == m["run_mean_max"].iloc[0] == m["mean"].iloc[0]


def test_median_run_many_runs_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        median_run(summarize(episodes_frame({0: 0.6, 1: 0.7})))


# ----------------------------------------------------------------- paired_test


@pytest.mark.parametrize("n", [5, 40, 3000])
def test_paired_t_matches_scipy_ttest_rel(n: int) -> None:
    rng = np.random.default_rng(n)
    a, b = quantized(rng, n), quantized(rng, n)
    ref = st.ttest_rel(a, b)
    res = paired_test(a, b, "t")
    assert res.test == "t" and res.n == n
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert res.pvalue == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
    assert res.dof == ref.df == n - 1
    d = a - b
    lo, hi = st.t.interval(0.95, n - 1, loc=d.mean(), scale=st.sem(d))
    assert (res.ci95_low, res.ci95_high) == pytest.approx((lo, hi), rel=1e-10)
    assert res.mean_diff == pytest.approx(d.mean(), rel=1e-12)


def test_cohen_dz_by_hand() -> None:
    a = np.array([0.60, 0.72, 0.55, 0.80, 0.66])
    b = np.array([0.58, 0.70, 0.57, 0.71, 0.60])
    d = [x - y for x, y in zip(a, b)]
    mean = sum(d) / len(d)
    sd = math.sqrt(sum((v - mean) ** 2 for v in d) / (len(d) - 1))
    assert paired_test(a, b).cohen_dz == pytest.approx(mean / sd, rel=1e-12)
    assert paired_test(a, b, "wilcoxon").cohen_dz == pytest.approx(mean / sd, rel=1e-12)


@pytest.mark.parametrize("n", [8, 30, 3000])
def test_wilcoxon_matches_scipy_with_the_same_options(n: int) -> None:
    rng = np.random.default_rng(100 + n)
    a = quantized(rng, n)
    b = np.clip(a + rng.integers(-2, 3, n) / 75, 0, 1)  # many zero and tied differences
    assert np.sum(a == b) > 0
    ref = st.wilcoxon(a, b, zero_method="zsplit", correction=False, method="auto")
    res = paired_test(a, b, "wilcoxon")
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert res.pvalue == pytest.approx(ref.pvalue, rel=1e-12)
    assert math.isnan(res.dof)
    # the mean difference and its CI are t-based whatever the test
    t = paired_test(a, b, "t")
    assert (res.mean_diff, res.ci95_low, res.ci95_high) == (t.mean_diff, t.ci95_low, t.ci95_high)


@pytest.mark.parametrize("test", ["t", "wilcoxon"])
def test_all_zero_differences_give_p_one_without_warnings(test: str) -> None:
    a = np.full(50, 0.6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = paired_test(a, a.copy(), test)
    assert res.pvalue == 1.0
    assert res.mean_diff == 0.0 and res.cohen_dz == 0.0
    assert res.ci95_low == res.ci95_high == 0.0
    if test == "t":
        assert res.statistic == 0.0
    else:
        assert res.statistic == 50 * 51 / 4  # SciPy's zsplit statistic when every difference is 0


def test_constant_nonzero_difference_is_infinitely_significant() -> None:
    a = np.full(10, 0.6)
    res = paired_test(a + 0.1, a)
    assert res.statistic == math.inf and res.pvalue == 0.0 and res.cohen_dz == math.inf


def test_paired_test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same length, got 3 and 2"):
        paired_test([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError, match="test must be one of"):
        paired_test([0.1, 0.2], [0.1, 0.2], test="welch")
    with pytest.raises(ValueError, match="at least 2 pairs"):
        paired_test([0.1], [0.2])
    with pytest.raises(ValueError, match="NaN"):
        paired_test([0.1, np.nan], [0.2, 0.3])


def test_paired_test_to_dict_has_fixed_keys() -> None:
    keys = list(paired_test([0.1, 0.2, 0.4], [0.2, 0.2, 0.3]).to_dict())
    assert keys == ["test", "statistic", "pvalue", "dof", "mean_diff", "ci95_low", "ci95_high", "cohen_dz", "n"]


# ----------------------------------------------------------------- holm


def holm_rejections(p: list[float], alpha: float) -> set[int]:
    """Holm's step-down procedure as a decision rule (the reference for adjusted p-values)."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    m = len(p)
    rejected = set()
    for k, i in enumerate(order):
        if p[i] <= alpha / (m - k):
            rejected.add(i)
        else:
            break
    return rejected


def test_holm_known_values() -> None:
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]).shape == (0,)


@pytest.mark.parametrize("seed", range(5))
def test_holm_agrees_with_the_step_down_decision_rule(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(0, 0.02, 4), rng.uniform(0, 1, 8)])
    p[3] = p[5]  # a tie
    adjusted = holm(p)
    assert np.all(adjusted >= p) and np.all(adjusted <= 1)
    order = np.argsort(p)
    assert np.all(np.diff(adjusted[order]) >= 0)  # monotone in the raw p-value
    levels = np.unique(adjusted)
    between = (levels[:-1] + levels[1:]) / 2  # alphas away from the boundaries (no float ties)
    for alpha in np.concatenate([np.linspace(0.001, 0.2, 60), between]):
        assert {i for i in range(p.size) if adjusted[i] <= alpha} == holm_rejections(list(p), alpha)


def test_holm_preserves_nan_and_ignores_it_in_the_count() -> None:
    out = holm([0.01, np.nan, 0.02])
    assert math.isnan(out[1])
    assert out[[0, 2]] == pytest.approx(holm([0.01, 0.02]))
    assert np.isnan(holm([np.nan, np.nan])).all()


def test_holm_rejects_values_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"in \[0, 1\], got 1.5"):
        holm([0.1, 1.5])
