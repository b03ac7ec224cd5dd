"""Statistics whose unit is the training run: is one *objective* better than another?

Episode-level tests (:func:`fewshot.stats.paired_test`) compare two fixed checkpoints on
thousands of episodes; with that many episodes they detect differences that come from the
training seed alone (two cross-entropy runs that differ only in their seed differ
"significantly"). To test an objective, train it several times (the *runs*), summarise each
run by its mean accuracy over all of its episodes, and test the run means — as Bouthillier
et al. (2021, "Accounting for Variance in Machine Learning Benchmarks") and Agarwal et al.
(2021, rliable) recommend.

- :func:`run_test`: paired t over runs (the same training seeds on both sides) or Welch's
  t over run means, with the 95% CI of the difference at the run level;
- :func:`hierarchical_bootstrap`: a 95% CI of the difference that resamples runs within
  each method, then episodes within each run;
- :func:`probability_of_improvement`: the chance that a random run of one method beats a
  random run of the other (rliable's definition);
- :func:`runs_for_power`: how many runs per method a t test needs to detect a difference.

Every function takes raw accuracies (fractions) and returns raw numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as _st

from fewshot._validate import check_int, check_real

__all__ = [
    "RUN_TESTS",
    "RunTestResult",
    "BootstrapResult",
    "run_test",
    "probability_of_improvement",
    "hierarchical_bootstrap",
    "runs_for_power",
]

#: Run-level tests: ``"paired"`` (t over per-run differences, runs matched by name) and
#: ``"welch"`` (Welch's unequal-variance t over the run means).
RUN_TESTS: tuple[str, ...] = ("paired", "welch")


def _runs(values: Any, name: str, minimum: int = 2) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one mean per run), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf")
    if arr.shape[0] < minimum:
        raise ValueError(f"{name} needs at least {minimum} runs, got {arr.shape[0]}")
    return arr


@dataclass(frozen=True)
class RunTestResult:
    """The result of :func:`run_test` (differences are ``method - baseline``).

    Attributes:
        test: ``"paired"`` or ``"welch"``.
        statistic, dof, pvalue: the t statistic, its degrees of freedom (``k - 1`` paired;
            Welch–Satterthwaite otherwise) and the two-sided p-value.
        mean_diff: mean run mean of the method minus that of the baseline.
        ci95_low, ci95_high: 95% t confidence interval of ``mean_diff`` at the run level.
        effect_size: Cohen's d_z (mean / SD of the per-run differences) when paired; d_av
            (``mean_diff / sqrt((sd_m^2 + sd_b^2) / 2)``) for Welch.
        p_rank: two-sided p of the rank test at the run level: Wilcoxon signed-rank over the
            per-run differences (paired) or the Wilcoxon rank-sum / Mann–Whitney U test
            (Welch), exact for these small samples.
        n_method, n_baseline: runs on each side.
        sd_method, sd_baseline: between-run SD (ddof=1) of each side's run means.
    """

    test: str
    statistic: float
    dof: float
    pvalue: float
    mean_diff: float
    ci95_low: float
    ci95_high: float
    effect_size: float
    p_rank: float
    n_method: int
    n_baseline: int
    sd_method: float
    sd_baseline: float

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict, in declaration order."""
        return asdict(self)


def _t_from(mean: float, se: float) -> float:
    if se > 0:
        return mean / se
    return 0.0 if mean == 0 else math.copysign(math.inf, mean)


def run_test(
    method: Sequence[float] | np.ndarray,
    baseline: Sequence[float] | np.ndarray,
    test: str = "paired",
) -> RunTestResult:
    """Test the run means of a method against a baseline's.

    ``paired``: ``d = method - baseline`` element-wise (run ``i`` of each side shares its
    training seed: same initialisation and data order), ``t = mean(d) / (sd(d) / sqrt(k))``
    with ``k - 1`` dof — :func:`scipy.stats.ttest_rel`. ``welch``: Welch's t over the two
    sets of run means — :func:`scipy.stats.ttest_ind` with ``equal_var=False``. The CI is
    ``mean_diff ± t.ppf(0.975, dof) * se`` with the test's own ``se`` and ``dof``.

    Args:
        method, baseline: ``(k_m,)`` and ``(k_b,)`` run means (fractions), at least 2 each;
            for ``paired`` of equal length and in matching run order.
        test: ``"paired"`` (default) or ``"welch"``.

    Returns:
        :class:`RunTestResult`. Zero variance gives ``statistic`` 0 (no difference) or ±inf.

    Raises:
        ValueError: an unknown ``test``, fewer than 2 runs, NaN, or ``paired`` with
            different run counts.
    """
    if test not in RUN_TESTS:
        raise ValueError(f"run test must be one of {list(RUN_TESTS)}, got {test!r}")
    x, y = _runs(method, "method run means"), _runs(baseline, "baseline run means")
    km, kb = x.shape[0], y.shape[0]
    sdm, sdb = float(x.std(ddof=1)), float(y.std(ddof=1))
    if test == "paired":
        if km != kb:
            raise ValueError(f"a paired run test needs as many method runs as baseline runs, got {km} and {kb}")
        d = x - y
        mean = float(d.mean())
        sd = float(d.std(ddof=1))
        se = sd / math.sqrt(km)
        dof = float(km - 1)
        effect = mean / sd if sd > 0 else (0.0 if mean == 0 else math.copysign(math.inf, mean))
        p_rank = (
            1.0 if not np.any(d != 0) else float(_st.wilcoxon(d, method="exact" if np.all(d != 0) else "auto").pvalue)
        )
    else:
        mean = float(x.mean() - y.mean())
        vm, vb = sdm**2 / km, sdb**2 / kb
        se = math.sqrt(vm + vb)
        denom = (vm**2 / (km - 1) if vm else 0.0) + (vb**2 / (kb - 1) if vb else 0.0)
        dof = float((vm + vb) ** 2 / denom) if denom > 0 else float(km + kb - 2)
        pooled = math.sqrt((sdm**2 + sdb**2) / 2.0)
        effect = mean / pooled if pooled > 0 else (0.0 if mean == 0 else math.copysign(math.inf, mean))
        p_rank = 1.0 if mean == 0 and pooled == 0 else float(_st.mannwhitneyu(x, y, alternative="two-sided").pvalue)
    t = _t_from(mean, se)
    p = 1.0 if t == 0 else float(min(1.0, 2.0 * _st.t.sf(abs(t), dof)))
    half = float(_st.t.ppf(0.975, dof)) * se
    return RunTestResult(
        test=test,
        statistic=float(t),
        dof=dof,
        pvalue=p,
        mean_diff=mean,
        ci95_low=mean - half,
        ci95_high=mean + half,
        effect_size=float(effect),
        p_rank=p_rank,
        n_method=int(km),
        n_baseline=int(kb),
        sd_method=sdm,
        sd_baseline=sdb,
    )


def probability_of_improvement(method: Sequence[float] | np.ndarray, baseline: Sequence[float] | np.ndarray) -> float:
    """``P(X > Y) + P(X = Y) / 2`` for a random run ``X`` of the method and ``Y`` of the baseline.

    The normalised Mann–Whitney U statistic over all ``k_m * k_b`` pairs of run means, as
    rliable defines the probability of improvement (Agarwal et al., 2021). 0.5: neither is
    better; 1.0: every run of the method beats every run of the baseline.

    Args:
        method, baseline: ``(k_m,)`` and ``(k_b,)`` run means, at least one each.

    Raises:
        ValueError: empty, not 1-D, or NaN input.
    """
    x, y = _runs(method, "method run means", 1), _runs(baseline, "baseline run means", 1)
    return float(_pi(x[None, :], y[None, :])[0])


def _pi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise probability of improvement of ``x (B, k_m)`` over ``y (B, k_b)``."""
    gt = (x[:, :, None] > y[:, None, :]).mean(axis=(1, 2))
    eq = (x[:, :, None] == y[:, None, :]).mean(axis=(1, 2))
    return gt + 0.5 * eq


@dataclass(frozen=True)
class BootstrapResult:
    """The result of :func:`hierarchical_bootstrap` (differences are ``method - baseline``).

    Attributes:
        mean_diff: the observed difference of the grand means (mean over runs of each run's
            mean over its episodes).
        ci95_low, ci95_high: percentile interval of the resampled differences.
        prob_improvement: observed :func:`probability_of_improvement` of the run means.
        pi_ci95_low, pi_ci95_high: its percentile interval over the same resamples.
        n_boot, seed: the number of resamples and the seed they came from.
    """

    mean_diff: float
    ci95_low: float
    ci95_high: float
    prob_improvement: float
    pi_ci95_low: float
    pi_ci95_high: float
    n_boot: int
    seed: int


def _accuracy_matrix(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} must be a 2-D array (runs, episodes), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return arr


def _resampled_run_means(acc: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """``(reps, k)``: means of resampled episodes of resampled runs (one draw per replicate)."""
    k, n = acc.shape
    runs = rng.integers(0, k, size=(reps, k))
    episodes = rng.integers(0, n, size=(reps, k, n), dtype=np.int32)
    return acc[runs[:, :, None], episodes].mean(axis=2)


def hierarchical_bootstrap(
    method: Sequence[Sequence[float]] | np.ndarray,
    baseline: Sequence[Sequence[float]] | np.ndarray,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    chunk: int = 64,
) -> BootstrapResult:
    """Two-level bootstrap interval of the difference of grand means, and of the PI.

    Each replicate, independently for the method and the baseline (stratified by method):
    draw ``k`` runs with replacement from the ``k`` runs, then for each drawn run ``n``
    episodes with replacement from its ``n`` episodes; a run's resampled mean is the mean of
    its drawn episodes and the method's grand mean is the mean of its drawn runs. The
    interval is the ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of the
    replicated differences (method - baseline); the probability of improvement is
    recomputed on each replicate's resampled run means. Both levels of variation — which
    training runs, which episodes — enter the interval.

    Args:
        method, baseline: ``(k_m, n_m)`` and ``(k_b, n_b)`` per-episode accuracies, one row
            per training run (all episodes of all episode seeds of that run).
        n_boot: number of replicates (default 2000; at least 100).
        seed: seed of :func:`numpy.random.default_rng`; the result is a function of the
            inputs and the seed only.
        level: confidence level in (0, 1) (default 0.95).
        chunk: replicates drawn at a time (memory: ``chunk * k * n`` int32 indices).

    Raises:
        ValueError: malformed input, ``n_boot < 100``, a bad ``level`` or ``seed``.
    """
    a = _accuracy_matrix(method, "method accuracies")
    b = _accuracy_matrix(baseline, "baseline accuracies")
    check_int("n_boot", n_boot, low=100)
    check_int("seed", seed, low=0)
    check_real("level", level, low=0, high=1, closed="neither")
    rng = np.random.default_rng([int(seed), 0x4842])  # 'HB': a stream of its own
    diffs = np.empty(int(n_boot))
    pis = np.empty(int(n_boot))
    for lo in range(0, int(n_boot), chunk):
        reps = min(chunk, int(n_boot) - lo)
        ma = _resampled_run_means(a, reps, rng)
        mb = _resampled_run_means(b, reps, rng)
        diffs[lo : lo + reps] = ma.mean(axis=1) - mb.mean(axis=1)
        pis[lo : lo + reps] = _pi(ma, mb)
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    d_lo, d_hi = np.percentile(diffs, q)
    p_lo, p_hi = np.percentile(pis, q)
    ra, rb = a.mean(axis=1), b.mean(axis=1)
    return BootstrapResult(
        mean_diff=float(ra.mean() - rb.mean()),
        ci95_low=float(d_lo),
        ci95_high=float(d_hi),
        prob_improvement=probability_of_improvement(ra, rb),
        pi_ci95_low=float(p_lo),
        pi_ci95_high=float(p_hi),
        n_boot=int(n_boot),
        seed=int(seed),
    )


def _power(n: np.ndarray, effect: float, sd: float, alpha: float, paired: bool) -> np.ndarray:
    """Power of the two-sided t test with ``n`` runs per side (vectorised over ``n``)."""
    n = np.asarray(n, dtype=np.float64)
    if paired:
        dof, nc = n - 1, effect / sd * np.sqrt(n)
    else:
        dof, nc = 2 * n - 2, effect / sd * np.sqrt(n / 2.0)
    crit = _st.t.ppf(1 - alpha / 2, dof)
    return _st.nct.sf(crit, dof, nc) + _st.nct.cdf(-crit, dof, nc)


def runs_for_power(
    effect: float,
    sd: float,
    *,
    alpha: float = 0.01,
    power: float = 0.8,
    paired: bool = False,
    max_runs: int = 1000,
) -> int | None:
    """Smallest number of runs per method for a two-sided t test to reach ``power``.

    Exact power from the noncentral t distribution. Two-sample (``paired=False``): ``k`` runs
    per side, ``dof = 2k - 2``, noncentrality ``|effect| / sd * sqrt(k / 2)`` with ``sd`` the
    between-run SD (e.g. ``sqrt((sd_m^2 + sd_b^2) / 2)``). Paired: ``dof = k - 1``,
    noncentrality ``|effect| / sd * sqrt(k)`` with ``sd`` the SD of the per-run differences.
    For example ``effect=1, sd=1, alpha=0.05`` needs 17 runs per side (two-sample) and
    ``effect=0.5, sd=1, alpha=0.05, paired=True`` 34 pairs — the textbook values.

    Args:
        effect: difference to detect (same unit as ``sd``; the sign is ignored).
        sd: the between-run standard deviation (> 0).
        alpha: two-sided significance level in (0, 1) (default 0.01, fewshot's default).
        power: target power in (0, 1) (default 0.8).
        paired: paired design (see above).
        max_runs: search limit.

    Returns:
        The number of runs (>= 2), or None when ``effect`` is 0 or more than ``max_runs``
        runs would be needed.

    Raises:
        ValueError: ``sd <= 0``, NaN, or ``alpha``/``power`` outside (0, 1).
    """
    effect, sd = float(effect), float(sd)
    if not (math.isfinite(effect) and math.isfinite(sd)) or sd <= 0:
        raise ValueError(f"need a finite effect and sd > 0, got effect={effect}, sd={sd}")
    for name, v in (("alpha", alpha), ("power", power)):
        if not 0.0 < float(v) < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {v!r}")
    effect = abs(effect)
    if effect == 0:
        return None
    lo = 2
    while lo <= max_runs:  # windows of 32 run counts: power grows with the number of runs
        ns = np.arange(lo, min(lo + 32, int(max_runs) + 1))
        enough = np.flatnonzero(_power(ns, effect, sd, alpha, paired) >= power)
        if enough.size:
            return int(ns[enough[0]])
        lo = int(ns[-1]) + 1
    return None
