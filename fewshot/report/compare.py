"""Compare methods with a baseline on identical episodes, at the level the data supports.

A *method* is a label (``manifest["label"]``, else the directory name). Results directories
with the same label are merged: they may hold different datasets (``fewshot evaluate``
writes one directory per dataset) and different **training runs** — the ``run`` column
(``seed-0``, ``seed-1``, ...) written by ``fewshot evaluate`` from the features' checkpoint.
The same run of a label twice (same run, dataset, shot and episode seed) is an error.

Every comparison row says at which level its p-value is (column ``level``):

``run``
    Both the method and the baseline have at least two training runs on that (dataset,
    n_way, n_shot). Each run is summarised by its mean accuracy over all its episodes (all
    episode seeds), and the test is over those run means — paired t when the run names match
    one to one on both sides (the same training seeds), Welch's t otherwise
    (:func:`fewshot.run_stats.run_test`). This tests the **objectives**. Reported with it:
    the between-run SD of each side, a hierarchical bootstrap CI of the difference
    (:func:`fewshot.run_stats.hierarchical_bootstrap`), the probability of improvement and
    the number of runs per method a t test would need for 80% power.

``checkpoint``
    One side has a single run. The per-episode accuracies (averaged over the runs of a side
    that has several) are paired by ``(dataset, n_way, n_shot, seed, episode)`` and tested on
    the pooled episodes of all episode seeds (:func:`fewshot.stats.paired_test`). This tests
    whether two **checkpoints** differ on this test set — not whether one objective is better:
    two trainings of one objective that differ only in their seed routinely differ
    "significantly" at this level.

Episodes must be identical across every run of both methods (episode fingerprints); the
comparison refuses — rather than test unpaired numbers — when they are not. Holm's
correction runs across every row of one call, whatever their levels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fewshot._validate import check_int, check_real
from fewshot.results import EPISODE_COLUMNS, Results, read_results
from fewshot.run_stats import RUN_TESTS, hierarchical_bootstrap, run_test, runs_for_power
from fewshot.stats import holm, paired_test

__all__ = [
    "COMPARE_COLUMNS",
    "PROTOCOL_FIELDS",
    "LEVELS",
    "RUN_TEST_CHOICES",
    "Method",
    "compare",
    "compare_methods",
    "load_methods",
    "run_means",
]

#: Levels of a comparison row (see the module docstring).
LEVELS: tuple[str, ...] = ("run", "checkpoint")

#: Choices of the run-level test: ``auto`` = paired when the run names match one to one.
RUN_TEST_CHOICES: tuple[str, ...] = ("auto", *RUN_TESTS)

#: The columns that only the run level fills (NaN at the checkpoint level).
_RUN_ONLY = (
    "between_run_sd_method",
    "between_run_sd_baseline",
    "boot_ci95_low",
    "boot_ci95_high",
    "prob_improvement",
    "prob_improvement_ci95_low",
    "prob_improvement_ci95_high",
    "power_effect",
    "runs_for_power",
)

#: Columns of the DataFrame returned by :func:`compare`, in order. Accuracies and their
#: differences are fractions in [0, 1]; the differences are ``method - baseline``.
#:
#: ===========================  ===========================================================
#: dataset, n_way, n_shot       the comparison's benchmark and episode shape
#: method, baseline             the two labels compared
#: level                        ``run`` (training runs are the unit: tests the objectives)
#:                              or ``checkpoint`` (episodes are the unit: tests two
#:                              checkpoints); see the module docstring
#: n_runs_method/_baseline      training runs of each side
#: n_episodes                   paired episodes per run, pooled over all episode seeds
#: n_seeds                      episode seeds pooled
#: mean_method, mean_baseline   grand mean accuracy: mean over runs of each run's mean
#: mean_diff                    ``mean_method - mean_baseline``
#: ci95_low, ci95_high          95% t CI of ``mean_diff`` at the row's level
#: T, dof                       t statistic and dof of the row's t test
#: p_val                        two-sided p of that t test: paired t over episodes
#:                              (checkpoint), paired t or Welch's t over run means (run)
#: p_wilcoxon                   two-sided p of the rank test at the same level: Wilcoxon
#:                              signed-rank over episodes (zero_method zsplit) or over paired
#:                              run differences; Wilcoxon rank-sum (Mann–Whitney U) over run
#:                              means when the runs are not paired
#: effect_size                  Cohen's d_z of the paired differences; d_av (difference over
#:                              the root mean square of the two between-run SDs) for Welch
#: test                         the p corrected by Holm: ``t`` or ``wilcoxon``
#: run_test                     ``paired`` or ``welch`` at run level, ``""`` at checkpoint level
#: p_holm                       Holm-adjusted p of ``test`` across all rows of the call
#: significant                  ``p_holm < alpha and mean_diff > 0`` (method better)
#: between_run_sd_method/_base  SD (ddof=1) of each side's run means (NaN for one run)
#: boot_ci95_low/_high          hierarchical bootstrap 95% CI of ``mean_diff`` (run level)
#: prob_improvement             P(random run of the method beats a random run of the baseline)
#: prob_improvement_ci95_low/_high  its bootstrap 95% CI (run level)
#: power_effect                 the difference the power calculation targets (fraction)
#: runs_for_power               runs per method for 80% power at ``alpha`` to detect
#:                              ``power_effect`` given the observed between-run SD (NA: more
#:                              than 1,000, no difference to detect, or checkpoint level)
#: ===========================  ===========================================================
COMPARE_COLUMNS: tuple[str, ...] = (
    "dataset",
    "n_way",
    "n_shot",
    "method",
    "baseline",
    "level",
    "n_runs_method",
    "n_runs_baseline",
    "n_episodes",
    "n_seeds",
    "mean_method",
    "mean_baseline",
    "mean_diff",
    "ci95_low",
    "ci95_high",
    "T",
    "dof",
    "p_val",
    "p_wilcoxon",
    "effect_size",
    "test",
    "run_test",
    "p_holm",
    "significant",
    *_RUN_ONLY,
)

#: The feature-independent protocol, read from the per-episode rows of each dataset; two
#: methods are compared on a dataset only when all of these are equal.
PROTOCOL_FIELDS: tuple[str, ...] = ("split", "ways", "shots", "queries", "episodes", "seeds")

_EPISODE_KEYS = ["n_way", "n_shot", "seed", "episode"]
_PAIR_KEYS = ["dataset", *_EPISODE_KEYS]
_RUN_KEYS = ["run", "dataset", "n_way", "n_shot", "seed"]
_TESTS = ("t", "wilcoxon")
_POWER = 0.8


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

    def runs(self, dataset: str | None = None) -> list[str]:
        """Names of the training runs (sorted), on ``dataset`` or on any."""
        df = self.episodes if dataset is None else self.episodes[self.episodes["dataset"] == dataset]
        return sorted(df["run"].unique().tolist())


def _as_results(item: Results | str | os.PathLike) -> Results:
    if isinstance(item, Results):
        return item
    if isinstance(item, (str, os.PathLike)):
        return read_results(item)
    raise TypeError(f"expected a Results or a results directory path, got {type(item).__name__}")


def _fmt_run(key: Sequence) -> str:
    run, dataset, n_way, n_shot, seed = key[:5]
    who = f"run {run!r} " if run else ""
    return f"{who}{dataset} {n_way}-way {n_shot}-shot seed {seed}"


def load_methods(results: Iterable[Results | str | os.PathLike]) -> list[Method]:
    """Read results and merge those that share a label, in first-seen label order.

    Raises:
        ValueError: no results, missing columns, NaN accuracies, a repeated episode, or two
            directories with the same label holding the same training run (the message
            names both directories).
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
            df = df.assign(run=df["run"].fillna("").astype(str))
            dup = df.duplicated(["run", *_PAIR_KEYS])
            if dup.any():
                row = df.loc[dup].iloc[0]
                raise ValueError(
                    f"results {r.path} list episode {row['episode']} of "
                    f"{_fmt_run(row[_RUN_KEYS].tolist())} more than once"
                )
            for key in df[_RUN_KEYS].drop_duplicates().itertuples(index=False):
                key = tuple(key)
                if key in seen:
                    raise ValueError(
                        f"label {label!r}: {seen[key]} and {r.path} both hold {_fmt_run(key)}; "
                        "training replicates of one method need distinct run names "
                        "(`fewshot evaluate --run NAME`), different methods distinct labels"
                    )
                seen[key] = r.path
            frames.append(df.assign(_source=str(r.path)))
        merged = pd.concat(frames, ignore_index=True)
        merged["episodes_fingerprint"] = merged["episodes_fingerprint"].astype(str)
        methods.append(Method(label, merged, tuple(str(r.path) for r in parts)))
    return methods


def _protocols(df: pd.DataFrame) -> dict[str, dict[str, list]]:
    """The feature-independent protocol of each dataset's rows (one pass over the frame)."""
    counts = df.groupby(_RUN_KEYS, sort=True).size().rename("n").reset_index()
    episodes = counts.groupby("dataset", sort=False)["n"].agg(lambda n: sorted({int(v) for v in n}))
    out = {}
    for dataset, g in df.groupby("dataset", sort=False):
        out[dataset] = {
            "split": sorted(g["split"].astype(str).unique().tolist()),
            "ways": sorted(int(v) for v in g["n_way"].unique()),
            "shots": sorted(int(v) for v in g["n_shot"].unique()),
            "queries": sorted(int(v) for v in g["n_query"].unique()),
            "episodes": episodes[dataset],
            "seeds": sorted(int(v) for v in g["seed"].unique()),
        }
    return out


def _show(values: list) -> str:
    return str(values[0]) if len(values) == 1 else str(values)


@dataclass(frozen=True)
class _Paired:
    """Accuracies of one (dataset, n_way, n_shot), aligned on identical episodes."""

    runs_m: list[str]
    acc_m: np.ndarray  # (k_m, n)
    runs_b: list[str]
    acc_b: np.ndarray  # (k_b, n)
    n_seeds: int


def _check_protocol(who: Callable[[], str], pm: dict[str, list], pb: dict[str, list]) -> None:
    for field in PROTOCOL_FIELDS:
        if pm[field] != pb[field]:
            raise ValueError(f"{who()}: {field} differ ({_show(pm[field])} vs {_show(pb[field])})")


def _check_fingerprints(who: Callable[[], str], rows: pd.DataFrame) -> None:
    """Every (n_way, n_shot, seed) must have one episode fingerprint over all runs of both sides."""
    fp = rows.groupby(["n_way", "n_shot", "seed"], sort=True)["episodes_fingerprint"].nunique()
    bad = fp[fp > 1]
    if bad.empty:
        return
    n_way, n_shot, seed = bad.index[0]
    sel = rows[(rows["n_way"] == n_way) & (rows["n_shot"] == n_shot) & (rows["seed"] == seed)]
    firsts = sel.drop_duplicates("episodes_fingerprint")
    a, c = firsts.iloc[0], firsts.iloc[1]
    raise ValueError(
        f"{who()}: episode fingerprints differ for {n_way}-way {n_shot}-shot seed {seed}: "
        f"{a['_side']} run {a['run']!r} ({a['_source']}) has {a['episodes_fingerprint'][:12]}, "
        f"{c['_side']} run {c['run']!r} ({c['_source']}) has {c['episodes_fingerprint'][:12]}; "
        "they were not evaluated on the same episodes"
    )


def _pair(
    method: Method,
    base: Method,
    dataset: str,
    m: pd.DataFrame,
    b: pd.DataFrame,
    pm: dict[str, list],
    pb: dict[str, list],
) -> dict[tuple[int, int], _Paired]:
    """Accuracy matrices per (n_way, n_shot) of ``m`` and ``b`` (the two methods' rows of
    ``dataset``, with protocols ``pm`` and ``pb``), or a ValueError naming the results and
    what differs."""
    m, b = m.assign(_side="method"), b.assign(_side="baseline")

    def who() -> str:
        return (
            f"cannot pair {method.label!r} ({method.where(dataset)}) with baseline "
            f"{base.label!r} ({base.where(dataset)}) on {dataset}"
        )

    _check_protocol(who, pm, pb)
    rows = pd.concat([m, b], ignore_index=True)
    _check_fingerprints(who, rows)
    wide = rows.pivot(index=_EPISODE_KEYS, columns=["_side", "run"], values="accuracy").sort_index()
    holes = wide.isna().to_numpy()
    if holes.any():
        j = int(np.flatnonzero(holes.any(axis=0))[0])
        side, run = wide.columns[j]
        first = wide.index[holes[:, j]][0]
        lacking = m if side == "method" else b
        src = lacking.loc[lacking["run"] == run, "_source"].iloc[0]
        raise ValueError(
            f"{who()}: the {side}'s run {run!r} ({src}) lacks {int(holes[:, j].sum())} episode(s) "
            f"other runs have (first: episode {first[3]} of {first[0]}-way {first[1]}-shot seed {first[2]})"
        )
    sides = wide.columns.get_level_values("_side")
    names = [str(r) for r in wide.columns.get_level_values("run")]
    is_m, is_b = np.asarray(sides == "method"), np.asarray(sides == "baseline")
    out = {}
    for (n_way, n_shot), block in wide.groupby(level=["n_way", "n_shot"], sort=True):
        values = block.to_numpy(dtype=np.float64)
        out[(int(n_way), int(n_shot))] = _Paired(
            runs_m=[n for n, keep in zip(names, is_m) if keep],
            acc_m=values[:, is_m].T,
            runs_b=[n for n, keep in zip(names, is_b) if keep],
            acc_b=values[:, is_b].T,
            n_seeds=int(block.index.get_level_values("seed").nunique()),
        )
    return out


def _checkpoint_statistics(p: _Paired) -> dict[str, object]:
    """Episode-level paired tests of the per-episode means of each side."""
    a, b = p.acc_m.mean(axis=0), p.acc_b.mean(axis=0)
    out: dict[str, object] = {"level": "checkpoint", "run_test": ""}
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
            "effect_size": t.cohen_dz,
        }
    else:  # one pair: a difference but no test
        out |= dict.fromkeys(("ci95_low", "ci95_high", "T", "dof", "p_val", "p_wilcoxon", "effect_size"), math.nan)
        out["mean_diff"] = float((a - b).mean())
    sd = lambda acc: float(acc.mean(axis=1).std(ddof=1)) if acc.shape[0] > 1 else math.nan  # noqa: E731
    out |= dict.fromkeys(_RUN_ONLY, math.nan)
    out |= {"between_run_sd_method": sd(p.acc_m), "between_run_sd_baseline": sd(p.acc_b)}
    return out


def _run_statistics(
    p: _Paired, label: str, choice: str, alpha: float, effect: float | None, n_boot: int, seed: int
) -> dict[str, object]:
    """Run-level test of the run means, bootstrap, probability of improvement and power."""
    matched = sorted(p.runs_m) == sorted(p.runs_b)
    test = choice if choice != "auto" else ("paired" if matched else "welch")
    if test == "paired" and not matched:
        raise ValueError(
            f"{label!r}: a paired run test needs the same run names on both sides, got "
            f"{p.runs_m} and {p.runs_b}; use the welch run test"
        )
    rm, rb = p.acc_m.mean(axis=1), p.acc_b.mean(axis=1)
    if test == "paired":  # align the baseline's runs with the method's by name
        order = [p.runs_b.index(r) for r in p.runs_m]
        rb = rb[order]
    r = run_test(rm, rb, test)
    out: dict[str, object] = {
        "level": "run",
        "run_test": test,
        "mean_diff": r.mean_diff,
        "ci95_low": r.ci95_low,
        "ci95_high": r.ci95_high,
        "T": r.statistic,
        "dof": r.dof,
        "p_val": r.pvalue,
        "p_wilcoxon": r.p_rank,
        "effect_size": r.effect_size,
        "between_run_sd_method": r.sd_method,
        "between_run_sd_baseline": r.sd_baseline,
    }
    if n_boot:
        boot = hierarchical_bootstrap(p.acc_m, p.acc_b, n_boot=n_boot, seed=seed)
        out |= {
            "boot_ci95_low": boot.ci95_low,
            "boot_ci95_high": boot.ci95_high,
            "prob_improvement": boot.prob_improvement,
            "prob_improvement_ci95_low": boot.pi_ci95_low,
            "prob_improvement_ci95_high": boot.pi_ci95_high,
        }
    else:
        out |= dict.fromkeys(
            (
                "boot_ci95_low",
                "boot_ci95_high",
                "prob_improvement",
                "prob_improvement_ci95_low",
                "prob_improvement_ci95_high",
            ),
            math.nan,
        )
    target = abs(r.mean_diff) if effect is None else abs(float(effect))
    sd = float(np.std(rm - rb, ddof=1)) if test == "paired" else math.sqrt((r.sd_method**2 + r.sd_baseline**2) / 2)
    need = (
        runs_for_power(target, sd, alpha=alpha, power=_POWER, paired=test == "paired")
        if sd > 0 and target > 0
        else None
    )
    out |= {"power_effect": target, "runs_for_power": math.nan if need is None else need}
    return out


def _check_options(test: str, alpha: float, run_test: str, effect: float | None, n_boot: int, seed: int) -> None:
    if test not in _TESTS:
        raise ValueError(f"test must be one of {list(_TESTS)}, got test={test!r}")
    check_real("alpha", alpha, low=0, high=1, closed="neither")
    if run_test not in RUN_TEST_CHOICES:
        raise ValueError(f"run_test must be one of {list(RUN_TEST_CHOICES)}, got run_test={run_test!r}")
    if effect is not None and not (isinstance(effect, (int, float)) and math.isfinite(effect) and 0 < effect <= 1):
        raise ValueError(f"effect must be a difference in (0, 1] (a fraction, not percent), got effect={effect!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or not (n_boot == 0 or n_boot >= 100):
        raise ValueError(f"n_boot must be 0 (no bootstrap) or an integer >= 100, got n_boot={n_boot!r}")
    check_int("seed", seed, low=0)


def compare_methods(
    methods: list[Method],
    baseline: str | None = None,
    test: str = "t",
    alpha: float = 0.01,
    *,
    run_test: str = "auto",
    effect: float | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    require_overlap: bool = True,
) -> pd.DataFrame:
    """:func:`compare` on methods already loaded with :func:`load_methods`.

    ``require_overlap=False`` skips (rather than refuses) a method that shares no dataset
    with the baseline, and a single method gives an empty frame (used by the table).
    ``n_boot=0`` skips the bootstrap (its columns are NaN).
    """
    _check_options(test, alpha, run_test, effect, n_boot, seed)
    labels = [m.label for m in methods]
    if baseline is None:
        baseline = labels[0]
    if baseline not in labels:
        raise ValueError(f"unknown baseline {baseline!r}; the labels are {labels}")
    base = methods[labels.index(baseline)]
    base_rows = dict(iter(base.episodes.groupby("dataset", sort=False)))
    base_protocols = _protocols(base.episodes)
    rows = []
    for method in methods:
        if method is base:
            continue
        own = dict(iter(method.episodes.groupby("dataset", sort=False)))
        shared = [d for d in own if d in base_rows]
        own_protocols = _protocols(method.episodes) if shared else {}
        if not shared and require_overlap:
            raise ValueError(
                f"{method.label!r} ({', '.join(method.sources)}) and baseline {baseline!r} "
                f"({', '.join(base.sources)}) have no dataset in common"
            )
        for dataset in shared:
            pairs = _pair(
                method, base, dataset, own[dataset], base_rows[dataset], own_protocols[dataset], base_protocols[dataset]
            )
            for (n_way, n_shot), p in pairs.items():
                run_level = len(p.runs_m) >= 2 and len(p.runs_b) >= 2
                stats = (
                    _run_statistics(p, method.label, run_test, float(alpha), effect, int(n_boot), int(seed))
                    if run_level
                    else _checkpoint_statistics(p)
                )
                rows.append(
                    {
                        "dataset": dataset,
                        "n_way": n_way,
                        "n_shot": n_shot,
                        "method": method.label,
                        "baseline": baseline,
                        "n_runs_method": len(p.runs_m),
                        "n_runs_baseline": len(p.runs_b),
                        "n_episodes": int(p.acc_m.shape[1]),
                        "n_seeds": p.n_seeds,
                        "mean_method": float(p.acc_m.mean(axis=1).mean()),
                        "mean_baseline": float(p.acc_b.mean(axis=1).mean()),
                        **stats,
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
    ints = {c: "int64" for c in ("n_way", "n_shot", "n_episodes", "n_seeds", "n_runs_method", "n_runs_baseline")}
    out = out.astype({**ints, "significant": bool, "runs_for_power": "Int64"})
    return out.astype({c: "float64" for c in out.columns if c in _RUN_ONLY and c != "runs_for_power"})


def compare(
    results: Sequence[Results | str | os.PathLike],
    baseline: str | None = None,
    test: str = "t",
    alpha: float = 0.01,
    *,
    run_test: str = "auto",
    effect: float | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Test every method against the baseline on each shared (dataset, n_way, n_shot).

    The level of each row follows from the data (see the module docstring): with at least
    two training runs on both sides the unit is the run (``level == "run"``: a test of the
    objectives); otherwise the episode (``level == "checkpoint"``: a test of two
    checkpoints). ``test`` chooses which p-value — the t test's or the rank test's at the
    row's level — is Holm-corrected across all rows of the call and decides ``significant``.

    Datasets that only one of the two holds are not compared. On a shared dataset the
    protocol (:data:`PROTOCOL_FIELDS`: split, ways, shots, queries, episodes per seed,
    seeds) must be identical, and every run of both sides must have exactly the same
    episodes with the same fingerprints.

    Args:
        results: results directories (paths) or :class:`~fewshot.results.Results`, two or
            more labels; results sharing a label are merged (see the module docstring).
        baseline: the baseline's label; default: the label of the first results.
        test: ``"t"`` (default) or ``"wilcoxon"``.
        alpha: significance level for ``significant`` and for the power calculation, in
            (0, 1); default 0.01.
        run_test: the run-level test: ``"auto"`` (default: paired when the run names of the
            two sides match one to one — same training seeds share initialisation and data
            order — Welch otherwise), ``"paired"`` or ``"welch"``.
        effect: difference (fraction, e.g. 0.01 for 1 pp) the power calculation targets;
            default: the observed difference.
        n_boot: hierarchical bootstrap replicates (default 2000; 0 skips the bootstrap).
        seed: seed of the bootstrap (default 0): the same inputs and seed give the same CI.

    Returns:
        A DataFrame with columns :data:`COMPARE_COLUMNS`, one row per (dataset, n_way,
        n_shot, method other than the baseline), ordered by dataset (first-seen order),
        n_way, n_shot, then method (input order).

    Raises:
        ValueError: fewer than two labels, an unknown baseline (the message lists the
            labels), the same run of a label twice, bad options, a forced paired run test
            without matching run names, or — the refusals — a method whose protocol,
            episodes or episode fingerprints differ from the baseline's (or whose runs
            differ from each other) on a shared dataset, or which shares no dataset with it.
        FileNotFoundError: a path is not a complete results directory.
    """
    if isinstance(results, (str, os.PathLike, Results)):
        results = [results]
    methods = load_methods(results)
    if len(methods) < 2:
        raise ValueError(f"compare needs results of at least two methods, got the single label {methods[0].label!r}")
    return compare_methods(methods, baseline, test, alpha, run_test=run_test, effect=effect, n_boot=n_boot, seed=seed)


def run_means(methods: Sequence[Method]) -> pd.DataFrame:
    """Each training run's mean accuracy over all its episodes (all episode seeds).

    Returns:
        One row per (method, dataset, n_way, n_shot, run) with ``mean`` (fraction) and
        ``n`` (episodes), in method order, then dataset, n_way, n_shot, run.
    """
    frames = []
    for m in methods:
        g = m.episodes.groupby(["dataset", "n_way", "n_shot", "run"], sort=True)["accuracy"]
        frames.append(g.agg(mean="mean", n="size").reset_index().assign(method=m.label))
    cols = ["method", "dataset", "n_way", "n_shot", "run", "mean", "n"]
    return pd.concat(frames, ignore_index=True).loc[:, cols]
