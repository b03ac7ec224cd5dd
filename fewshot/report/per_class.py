"""Per-class accuracy of novel classes, from per-episode results kept with ``--per-class``.

``fewshot evaluate --per-class`` adds to every per-episode row the names of the episode's
classes (``class_0 .. class_{W-1}``) and how many of each class's ``n_query`` queries were
classified correctly (``correct_0 ..``). A class's accuracy is then its mean per-episode
accuracy over the episodes that contain it (all seeds pooled), with a t (or z) confidence
interval over those episodes; two methods are compared class by class on the *same* episodes
(paired by dataset, n_way, n_shot, seed, episode and class): mean difference with its t CI,
paired t-test, Holm correction over every (class, shot, method) comparison of the call.

Statistics level: episodes, as the checkpoint level of :mod:`fewshot.report.compare` (a method
with several training runs is averaged over its runs episode by episode first, so an episode
counts once); classes are not independent of each other (they share episodes), so read the
Holm-corrected p-values per class, not as a test of "most classes".
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as st

from fewshot._io import write_bytes
from fewshot.report.compare import load_methods
from fewshot.results import Results
from fewshot.stats import holm

__all__ = [
    "PER_CLASS_COLUMNS",
    "COMPARE_PER_CLASS_COLUMNS",
    "compare_per_class",
    "format_per_class",
    "per_class_accuracy",
    "per_class_rows",
    "plot_per_class",
]

_KEYS = ["dataset", "n_way", "n_shot", "seed", "episode"]
#: Columns of :func:`per_class_accuracy` (accuracies as fractions).
PER_CLASS_COLUMNS = ("method", "dataset", "n_way", "n_shot", "class_name", "n_episodes", "mean", "half_width")
#: Columns of :func:`compare_per_class` (accuracies and differences as fractions).
COMPARE_PER_CLASS_COLUMNS = (
    "dataset",
    "n_way",
    "n_shot",
    "class_name",
    "method",
    "baseline",
    "n_episodes",
    "mean_method",
    "half_width_method",
    "mean_baseline",
    "half_width_baseline",
    "mean_diff",
    "ci95_low",
    "ci95_high",
    "T",
    "p_val",
    "p_holm",
    "significant",
)


def per_class_rows(episodes: pd.DataFrame, where: str = "results") -> pd.DataFrame:
    """Long per-class rows: one per (episode, class) with ``class_name``, ``correct``,
    ``accuracy`` (= correct / n_query) and the episode keys.

    Raises:
        ValueError: the rows carry no per-class columns (evaluate with ``--per-class``).
    """
    ways = sorted(
        int(c.split("_")[1]) for c in episodes.columns if c.startswith("correct_") and c.split("_")[1].isdigit()
    )
    if not ways:
        raise ValueError(f"{where} have no per-class counts; evaluate with --per-class (fewshot evaluate --per-class)")
    parts = []
    for k in ways:
        part = episodes.loc[:, [*_KEYS, "n_query", "episodes_fingerprint"]].copy()  # run: averaged below
        part["class_name"] = episodes[f"class_{k}"].astype(str)
        part["correct"] = episodes[f"correct_{k}"].astype(np.int64)
        part = part[episodes[f"class_{k}"].notna().to_numpy()]  # fewer ways in some runs
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out["accuracy"] = out["correct"] / out["n_query"]
    if "run" in episodes.columns and episodes["run"].nunique() > 1:  # training runs: one row per episode
        keys = [*_KEYS, "class_name", "n_query", "episodes_fingerprint"]
        out = out.groupby(keys, sort=False, as_index=False)[["correct", "accuracy"]].mean()
    return out


def _methods(results: Sequence[Any]) -> list[Any]:
    if isinstance(results, (str, os.PathLike, Results)):
        results = [results]
    return load_methods(results)


def _interval(x: np.ndarray, level: float, ci: str) -> float:
    if x.size < 2:
        return math.nan
    q = st.t.ppf((1 + level) / 2, x.size - 1) if ci == "t" else st.norm.ppf((1 + level) / 2)
    return float(q * x.std(ddof=1) / math.sqrt(x.size))


def per_class_accuracy(results: Sequence[Any], level: float = 0.95, ci: str = "t") -> pd.DataFrame:
    """Each class's mean accuracy over the episodes containing it, per method and shot.

    Args:
        results: results directories (or :class:`~fewshot.results.Results`) evaluated with
            ``--per-class``; directories sharing a label are merged.
        level, ci: confidence level and formula (``"t"`` or ``"z"``) of ``half_width``.

    Returns:
        Columns :data:`PER_CLASS_COLUMNS`, sorted by method (input order), dataset, shot and
        class name.

    Raises:
        ValueError: results without per-class counts, or an unknown ``ci``.
    """
    if ci not in ("t", "z"):
        raise ValueError(f"ci must be one of t, z, got ci={ci!r}")
    rows = []
    for m in _methods(results):
        long = per_class_rows(m.episodes, f"results {m.label!r}")
        for (ds, w, s, c), g in long.groupby(["dataset", "n_way", "n_shot", "class_name"], sort=True):
            x = g["accuracy"].to_numpy(np.float64)
            rows.append((m.label, ds, int(w), int(s), c, int(x.size), float(x.mean()), _interval(x, level, ci)))
    return pd.DataFrame(rows, columns=list(PER_CLASS_COLUMNS))


def compare_per_class(results: Sequence[Any], baseline: str | None = None, alpha: float = 0.01) -> pd.DataFrame:
    """Class-by-class paired comparison of every method with ``baseline`` on identical episodes.

    Args:
        results: results directories evaluated with ``--per-class``.
        baseline: label of the baseline (default: the first results' label).
        alpha: significance level after Holm, in (0, 1).

    Returns:
        Columns :data:`COMPARE_PER_CLASS_COLUMNS`: per (dataset, n_way, n_shot, class,
        method), the episodes containing the class, both accuracies with their t half-widths,
        the mean paired difference with its 95% t CI, the paired t statistic and p-value
        (``T = 0, p = 1`` when every difference is 0), Holm-adjusted p over all rows, and
        ``significant`` (``p_holm < alpha`` and a positive difference).

    Raises:
        ValueError: unknown baseline, fewer than two methods, results without per-class
            counts, or runs whose episodes differ (different ``episodes_fingerprint``).
    """
    if not 0 < float(alpha) < 1:
        raise ValueError(f"alpha must be in (0, 1), got alpha={alpha}")
    methods = _methods(results)
    labels = [m.label for m in methods]
    if len(methods) < 2:
        raise ValueError(f"a per-class comparison needs at least two methods, got {labels}")
    baseline = labels[0] if baseline is None else baseline
    if baseline not in labels:
        raise ValueError(f"unknown baseline {baseline!r}; the labels are {labels}")
    base = next(m for m in methods if m.label == baseline)
    b_long = per_class_rows(base.episodes, f"results {baseline!r}")
    out = []
    for m in methods:
        if m.label == baseline:
            continue
        long = per_class_rows(m.episodes, f"results {m.label!r}")
        pair = long.merge(b_long, on=[*_KEYS, "class_name"], suffixes=("_m", "_b"))
        if pair.empty:
            raise ValueError(
                f"{m.label!r} and {baseline!r} share no (episode, class): not evaluated on the same episodes"
            )
        if len(pair) != len(long) or len(pair) != len(b_long):

            def runs(df: pd.DataFrame) -> list[tuple]:
                keys = df[["dataset", "n_way", "n_shot", "seed"]].drop_duplicates()
                return sorted(set(map(tuple, keys.to_numpy().tolist())))

            raise ValueError(
                f"{m.label!r} and {baseline!r} were not evaluated on the same episodes: runs "
                f"{runs(long)} vs {runs(b_long)} ({len(long)} vs {len(b_long)} (episode, class) rows)"
            )
        bad = pair[pair["episodes_fingerprint_m"] != pair["episodes_fingerprint_b"]]
        if len(bad):
            r = bad.iloc[0]
            raise ValueError(
                f"{m.label!r} and {baseline!r} were not evaluated on the same episodes "
                f"({r['dataset']} {r['n_way']}-way {r['n_shot']}-shot seed {r['seed']}: episode fingerprints differ)"
            )
        for (ds, w, s, c), g in pair.groupby(["dataset", "n_way", "n_shot", "class_name"], sort=True):
            a, b = g["accuracy_m"].to_numpy(np.float64), g["accuracy_b"].to_numpy(np.float64)
            d = a - b
            n = d.size
            mean = float(d.mean())
            sd = float(d.std(ddof=1)) if n > 1 else math.nan
            if n > 1 and sd > 0:
                T = mean / (sd / math.sqrt(n))
                p = float(2 * st.t.sf(abs(T), n - 1))
                h = float(st.t.ppf(0.975, n - 1) * sd / math.sqrt(n))
            elif n > 1:  # every difference equal
                T, p, h = (0.0, 1.0, 0.0) if mean == 0 else (math.copysign(math.inf, mean), 0.0, 0.0)
            else:
                T, p, h = math.nan, math.nan, math.nan
            out.append(
                [
                    ds,
                    int(w),
                    int(s),
                    c,
                    m.label,
                    baseline,
                    n,
                    float(a.mean()),
                    _interval(a, 0.95, "t"),
                    float(b.mean()),
                    _interval(b, 0.95, "t"),
                    mean,
                    mean - h,
                    mean + h,
                    T,
                    p,
                ]
            )
    df = pd.DataFrame(out, columns=list(COMPARE_PER_CLASS_COLUMNS[:-2]))
    ok = df["p_val"].notna().to_numpy()
    p_holm = np.full(len(df), np.nan)
    if ok.any():
        p_holm[ok] = holm(df.loc[ok, "p_val"].to_numpy())
    df["p_holm"] = p_holm
    df["significant"] = (df["p_holm"] < alpha) & (df["mean_diff"] > 0)
    return df


def format_per_class(df: pd.DataFrame) -> str:
    """:func:`compare_per_class` as a terminal table (percent)."""
    if df.empty:
        return "no comparisons"
    p = lambda x: "nan" if x != x else f"{x:.2e}" if x < 1e-3 else f"{x:.4f}"  # noqa: E731
    view = pd.DataFrame(
        {
            "dataset": df["dataset"],
            "shot": [f"{w}w{s}s" for w, s in zip(df["n_way"], df["n_shot"])],
            "class": df["class_name"],
            "method": df["method"],
            "episodes": df["n_episodes"],
            "acc ± CI": [f"{100 * a:.2f}±{100 * h:.2f}" for a, h in zip(df["mean_method"], df["half_width_method"])],
            "baseline ± CI": [
                f"{100 * a:.2f}±{100 * h:.2f}" for a, h in zip(df["mean_baseline"], df["half_width_baseline"])
            ],
            "diff [95% CI]": [
                f"{100 * d:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]"
                for d, lo, hi in zip(df["mean_diff"], df["ci95_low"], df["ci95_high"])
            ],
            "p_t": df["p_val"].map(p),
            "p_holm": df["p_holm"].map(p),
            "sig": df["significant"].map({True: "yes", False: "no"}),
        }
    )
    head = (
        f"baseline: {df['baseline'].iloc[0]} | per class, over the episodes containing it (seeds pooled); "
        f"paired t, Holm over {int(df['p_val'].notna().sum())} comparison(s) | accuracy in %"
    )
    return head + "\n" + view.to_string(index=False)


def plot_per_class(results: Sequence[Any], out_path: str | os.PathLike, dpi: int = 150) -> Path:
    """Per-class accuracy (percent) ± 95% half-width of every method, one panel per
    (dataset, n_way, n_shot), classes sorted by the first method's accuracy. Headless (Agg);
    written atomically as ``.png`` or ``.pdf``.

    Raises:
        ValueError: another extension, or results without per-class counts.
    """
    # imported lazily: matplotlib is slow to import
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out_path)
    fmt = {".png": "png", ".pdf": "pdf"}.get(out.suffix.lower())
    if fmt is None:
        raise ValueError(f"plot output must end in .png or .pdf, got {out.name!r}")
    frame = per_class_accuracy(results)
    panels = list(frame.groupby(["dataset", "n_way", "n_shot"], sort=True))
    n_classes = max(len(g["class_name"].unique()) for _, g in panels)
    fig = Figure(figsize=(max(6.0, 0.28 * n_classes + 2), 3.2 * len(panels)))
    FigureCanvasAgg(fig)
    methods = list(dict.fromkeys(frame["method"]))
    for i, ((ds, w, s), g) in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, i + 1)
        first = g[g["method"] == methods[0]].sort_values("mean")
        order = {c: j for j, c in enumerate(first["class_name"])}
        for c in g["class_name"]:
            order.setdefault(c, len(order))
        width = 0.8 / len(methods)
        for j, m in enumerate(methods):
            gm = g[g["method"] == m]
            x = np.array([order[c] for c in gm["class_name"]]) + (j - (len(methods) - 1) / 2) * width
            ax.errorbar(x, 100 * gm["mean"], yerr=100 * gm["half_width"].fillna(0), fmt="o", ms=3, capsize=2, label=m)
        ax.set_xticks(range(len(order)), list(order), rotation=90, fontsize=6)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{ds} {w}-way {s}-shot: per-class accuracy over the episodes containing each class", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi)
    write_bytes(out, buf.getvalue())
    return out
