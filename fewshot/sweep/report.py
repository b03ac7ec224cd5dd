"""What a finished sweep reports: ``summary.csv``, ``settings.csv``, ``compare.csv``, the λ plot
(Fig. 2) and the batch-size table (Table 3)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fewshot._io import write_bytes, write_csv, write_text
from fewshot.report.compare import compare
from fewshot.results import read_results
from fewshot.runs import seed_run_name
from fewshot.stats import confidence_interval
from fewshot.sweep.spec import SweepSpec

__all__ = ["SUMMARY_COLUMNS", "SETTINGS_COLUMNS", "sweep_summary", "settings_summary", "write_reports"]

#: Per cell and (dataset, n_way, n_shot), after the grid axes: accuracy over the pooled episodes
#: of all protocol seeds (fraction) and the fine-tuning run's length.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "cell",
    "dataset",
    "n_way",
    "n_shot",
    "n_episodes",
    "mean",
    "ci95",
    "epochs",
    "best_epoch",
)
#: Per setting (a cell without its training seed) and shot: statistics over training runs.
SETTINGS_COLUMNS: tuple[str, ...] = ("n_runs", "mean", "sd_runs", "ci95_runs", "ci95_episodes")


def sweep_summary(spec: SweepSpec) -> pd.DataFrame:
    """One row per cell and shot: the grid axes, then :data:`SUMMARY_COLUMNS`.

    Raises:
        FileNotFoundError: a cell has no complete results (run the sweep first).
    """

    rows = []
    for cell in spec.cells():
        directory = spec.cell_dir(cell)
        res = read_results(directory / "results")
        run = _run_info(directory / "run")
        for (dataset, n_way, n_shot), group in res.episodes.groupby(["dataset", "n_way", "n_shot"], sort=True):
            acc = group["accuracy"].to_numpy(np.float64)
            mean, half = confidence_interval(acc) if acc.size >= 2 else (float(acc.mean()), math.nan)
            rows.append(
                {
                    **dict(cell.values),
                    "cell": cell.id,
                    "dataset": dataset,
                    "n_way": int(n_way),
                    "n_shot": int(n_shot),
                    "n_episodes": int(acc.size),
                    "mean": mean,
                    "ci95": half,
                    **run,
                }
            )
    axes = [a for a in spec.grid if a != "dataset"]
    return pd.DataFrame(rows, columns=[*axes, *SUMMARY_COLUMNS])


def _run_info(run_dir: Path) -> dict[str, Any]:
    import json

    try:
        result = json.loads((run_dir / "manifest.json").read_text("utf-8")).get("result", {})
    except (OSError, ValueError):
        result = {}
    return {"epochs": result.get("epochs"), "best_epoch": result.get("best_epoch")}


def settings_summary(summary: pd.DataFrame, spec: SweepSpec) -> pd.DataFrame:
    """Cells that differ only in the training ``seed`` grouped: mean over runs of the run means,
    their SD and the 95% t half-width over runs (``ci95_runs``, NaN with one run); with one run,
    ``ci95_episodes`` is that run's episode half-width."""

    keys = [a for a in spec.grid if a not in ("seed", "dataset")] + ["dataset", "n_way", "n_shot"]
    rows = []
    for key, group in summary.groupby(keys, sort=False, dropna=False):
        means = group["mean"].to_numpy(np.float64)
        if means.size >= 2:
            mean, half = confidence_interval(means)
            sd = float(means.std(ddof=1))
        else:
            mean, half, sd = float(means[0]), math.nan, math.nan
        rows.append(
            {
                **dict(zip(keys, key if isinstance(key, tuple) else (key,))),
                "n_runs": int(means.size),
                "mean": mean,
                "sd_runs": sd,
                "ci95_runs": half,
                "ci95_episodes": float(group["ci95"].iloc[0]) if means.size == 1 else math.nan,
            }
        )
    return pd.DataFrame(rows, columns=[*keys, *SETTINGS_COLUMNS])


def _compare(spec: SweepSpec, summary: pd.DataFrame) -> pd.DataFrame | None:
    """:func:`fewshot.compare` of each setting against the grid's first setting, per dataset.

    A setting is a cell without its training ``seed``; its cells with different seeds are the
    training runs (``seed-<S>``) of that setting, so with two or more seeds the comparison is
    at the run level (a test of the settings), with one seed at the checkpoint level.
    """
    import dataclasses

    axes = [a for a in spec.grid if a not in ("seed", "dataset")]
    frames = []
    cells = summary.drop_duplicates("cell")
    groups = cells.groupby(["dataset"], sort=False) if "dataset" in spec.grid else [((), cells)]
    for _, group in groups:
        labels = [_setting_label(row, axes) for _, row in group.iterrows()]
        if len(set(labels)) < 2:
            continue
        results = []
        for label, (_, row) in zip(labels, group.iterrows()):
            r = read_results(spec.out / "cells" / row["cell"] / "results")
            run = (
                seed_run_name(int(row["seed"])) if "seed" in spec.grid else (str(r.episodes["run"].iloc[0]) or "seed-0")
            )
            results.append(
                dataclasses.replace(r, episodes=r.episodes.assign(run=run), manifest={**r.manifest, "label": label})
            )
        frames.append(compare(results, baseline=labels[0]))
    return pd.concat(frames, ignore_index=True) if frames else None


def _setting_label(row: pd.Series, axes: list[str]) -> str:
    return ", ".join(f"{a}={row[a]}" for a in axes) or "all"


def _lambda_plot(settings: pd.DataFrame, spec: SweepSpec, path: Path) -> None:
    from matplotlib.figure import Figure

    others = [a for a in spec.grid if a not in ("lam", "seed", "dataset")]
    panels = list(settings.groupby(["dataset", "n_way", "n_shot"], sort=True))
    fig = Figure(figsize=(0.8 + 3.6 * len(panels), 3.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, ((dataset, n_way, n_shot), group) in zip(axes, panels):
        lines = group.groupby(others, sort=False) if others else [((), group)]
        for _, line in lines:
            line = line.sort_values("lam")
            err = line["ci95_runs"].where(line["n_runs"] > 1, line["ci95_episodes"]) * 100
            ax.errorbar(
                line["lam"],
                line["mean"] * 100,
                yerr=err,
                marker="o",
                capsize=3,
                label=_setting_label(line.iloc[0], others),
            )
        ax.set_title(f"{dataset} {n_way}-way {n_shot}-shot", fontsize=9)
        ax.set_xlabel("λ (weight of the contrastive term)")
        ax.set_xlim(-0.05, 1.05)
    axes[0].set_ylabel("accuracy (%)")
    if others:  # one line per setting of the other axes: name them
        axes[-1].legend(fontsize=7)
    fig.suptitle("accuracy vs λ: mean over training runs ± 95% CI (over runs; one run: over episodes)", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    write_bytes(path, buf.getvalue())


def _batch_table(settings: pd.DataFrame, spec: SweepSpec) -> str:
    others = [a for a in spec.grid if a not in ("batch_size", "seed", "dataset")]
    columns = settings[["dataset", "n_way", "n_shot"]].drop_duplicates().sort_values(["dataset", "n_shot"])
    header = ["batch size", *others, *(f"{d} {s}-shot" for d, _, s in columns.itertuples(index=False))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---:"] * len(header)) + "|"]
    for key, group in settings.groupby(["batch_size", *others], sort=True):
        key = key if isinstance(key, tuple) else (key,)
        cells = []
        for d, w, s in columns.itertuples(index=False):
            hit = group[(group["dataset"] == d) & (group["n_way"] == w) & (group["n_shot"] == s)]
            if hit.empty:
                cells.append("")
                continue
            r = hit.iloc[0]
            hw = r["ci95_runs"] if r["n_runs"] > 1 else r["ci95_episodes"]
            cells.append(f"{r['mean'] * 100:.2f}±{hw * 100:.2f}" if np.isfinite(hw) else f"{r['mean'] * 100:.2f}")
        lines.append("| " + " | ".join([*map(str, key), *cells]) + " |")
    n_runs = int(settings["n_runs"].max())
    note = (
        f"Accuracy (%): mean over {n_runs} training runs ± 95% t half-width over runs."
        if n_runs > 1
        else "Accuracy (%) ± 95% half-width over the pooled episodes (one training run per cell)."
    )
    return "\n".join(lines) + "\n\n" + note + "\n"


def write_reports(spec: SweepSpec) -> dict[str, Path]:
    """Write ``summary.csv``, ``settings.csv``, ``compare.csv`` (when two or more cells share a
    dataset and seed), ``lambda.png`` (a ``lam`` axis of two or more values) and
    ``batch_size.md`` (a ``batch_size`` axis) into the sweep directory; return their paths."""
    summary = sweep_summary(spec)
    settings = settings_summary(summary, spec)
    written = {"summary": spec.out / "summary.csv", "settings": spec.out / "settings.csv"}
    write_csv(written["summary"], summary)
    write_csv(written["settings"], settings)
    comparison = _compare(spec, summary)
    if comparison is not None:
        written["compare"] = spec.out / "compare.csv"
        write_csv(written["compare"], comparison)
    if len(spec.grid.get("lam", ())) >= 2:
        written["lambda"] = spec.out / "lambda.png"
        _lambda_plot(settings, spec, written["lambda"])
    if "batch_size" in spec.grid:
        written["batch_size"] = spec.out / "batch_size.md"
        write_text(written["batch_size"], _batch_table(settings, spec))
    return written
