"""The whole workflow, offline, on the embedded digits benchmark (``fewshot demo``).

1. Fine-tune a small backbone from scratch (no pretrained weights exist offline) on the digits
   **base** classes (0-4) with CE and SCHaNe (lambda = 0.9, tau = 0.5), each with three
   training seeds (the replicates): same schedule and early stopping for every run.
2. Extract features of the **novel** classes (5-9) with each run's best checkpoint.
3. Evaluate every run on 5-way 1-shot and 5-shot, 15 queries, episode seeds 0, 1, 2, on
   identical episodes.
4. Compare SCHaNe with CE at the run level (the training run is the unit: a test of the
   objectives), write Table 1 as Markdown, CSV and LaTeX, and a plot. As a cautionary
   example, also compare CE's seed-0 checkpoint with its seed-1 checkpoint at the episode
   level (``compare_ce_seeds.csv``): the same objective, "significantly" different.
5. The embedding analyses of the papers (isotropy, similarity distributions, t-SNE) on each
   objective's first run (``analysis/``).

The demo exercises the pipeline; digits from scratch is not the papers' setting (ImageNet-
pretrained ViTs fine-tuned on CIFAR-FS/FC100/miniImageNet/tieredImageNet), so its numbers say
nothing about SCHaNe on real benchmarks.

Determinism: the demo pins torch to ``DemoSettings.threads`` (2) CPU threads, so with the same
library versions and CPU type two runs write identical ``table1.md`` and ``table1.csv``
(fine-tuning seeds everything and loads data in-process; evaluation is deterministic).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fewshot._io import (
    check_output_dir,
    manifest_kind,
    write_csv,
    write_json,
    write_text,
)
from fewshot._manifest import make_manifest
from fewshot.analysis import analyze_to_directory
from fewshot.pipeline import evaluate_to_directory, extract_to_file
from fewshot.protocol import EvalProtocol
from fewshot.report import render_table, table_frame
from fewshot.report.compare import compare
from fewshot.report.plots import plot_results
from fewshot.runs import seed_run_name
from fewshot.training import FinetuneConfig, finetune

__all__ = ["DemoSettings", "DEMO_FULL", "DEMO_QUICK", "DEMO_METHODS", "run_demo"]

#: Objectives of the demo and their table labels; the first is the baseline.
DEMO_METHODS: dict[str, str] = {
    "ce": "Conv-4 / CE",
    "schane": "Conv-4 / SCHaNe",
}


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """Budget of a demo run (fine-tuning schedule and evaluation size)."""

    backbone: str = "conv4"
    img_size: int = 16
    epochs: int = 15
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    patience: int = 10
    shots: tuple[int, ...] = (1, 5)
    episodes: int = 3000
    seeds: tuple[int, ...] = (0, 1, 2)
    train_seeds: tuple[int, ...] = (0, 1, 2)
    threads: int = 2


#: ``make demo``: under 5 minutes on 2 CPU cores.
DEMO_FULL = DemoSettings()
#: ``fewshot demo --quick``: about a minute (two runs per objective, so the run-level statistics
#: run too); the tests run it with ``epochs=1, episodes=50``.
DEMO_QUICK = DemoSettings(epochs=2, episodes=200, batch_size=128, train_seeds=(0, 1))


def _check_own_runs(runs_dir: Path) -> None:
    """Refuse ``runs_dir`` unless it is missing or holds only the demo's fine-tuning runs
    (``seed-<S>/`` run directories, or one run directly, as older demos wrote)."""
    if not runs_dir.exists() or manifest_kind(runs_dir) == "finetune":
        return
    if not runs_dir.is_dir():
        raise ValueError(f"{runs_dir} is not a directory; choose another --out")
    for child in runs_dir.iterdir():
        if not (child.is_dir() and manifest_kind(child) == "finetune"):
            raise ValueError(
                f"refusing to replace {runs_dir}: {child} is not a demo training run; choose another --out"
            )


def _clear_old_results(results_dir: Path) -> None:
    """Remove an older demo's single results directory of one objective (``results/<objective>/``
    holding ``manifest.json`` of kind evaluate); per-run directories below it are replaced one
    by one by :func:`fewshot.pipeline.evaluate_to_directory`."""
    if manifest_kind(results_dir) == "evaluate":
        shutil.rmtree(results_dir)


def _stage(log: Callable[[str], None], timings: dict[str, float], name: str, t0: float) -> None:
    timings[name] = round(time.perf_counter() - t0, 2)
    log(f"[demo] {name}: {timings[name]:.1f}s")


def run_demo(
    out: str | Path = "results/demo",
    *,
    quick: bool = False,
    settings: DemoSettings | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the demo into ``out``; returns the paths written and the stage timings.

    Writes ``out/runs/<objective>/seed-<S>/`` (fine-tuning runs: ``log.jsonl``,
    ``manifest.json``, checkpoints), ``out/features/<objective>-seed-<S>.npz``,
    ``out/results/<objective>/seed-<S>/`` (per-episode results, manifests), ``out/compare.csv``
    (run level), ``out/compare_ce_seeds.csv`` (CE seed 0 vs seed 1, checkpoint level),
    ``out/table1.{md,csv,tex}``, ``out/accuracy.png``, ``out/analysis/`` (isotropy, similarity
    distributions and t-SNE of each objective's first run, :func:`fewshot.analyze_to_directory`)
    and ``out/manifest.json``.

    ``out/manifest.json`` is written first with ``status: running``, so a re-run recognises
    an interrupted demo as its own output.

    Raises:
        ValueError: ``out`` exists and is neither empty nor demo output (no ``manifest.json``
            of kind ``demo``), or ``out/runs/<objective>`` holds something other than demo
            fine-tuning runs; nothing is deleted then.
    """
    s = settings or (DEMO_QUICK if quick else DEMO_FULL)
    threads = torch.get_num_threads()
    torch.set_num_threads(s.threads)  # float summation order, hence the bytes of the results
    try:
        return _run(Path(out), s, quick, progress, log)
    finally:
        torch.set_num_threads(threads)


def _run(out: Path, s: DemoSettings, quick: bool, progress: bool, log: Callable[[str], None]) -> dict[str, Any]:
    check_output_dir(out, "demo")
    for objective in DEMO_METHODS:  # the runs it will replace must be its own, before anything is written
        _check_own_runs(out / "runs" / objective)
    out.mkdir(parents=True, exist_ok=True)
    write_json(
        out / "manifest.json", make_manifest("demo", {**dataclasses.asdict(s), "quick": quick}, status="running")
    )  # marks out as demo output
    timings: dict[str, float] = {}
    start = time.perf_counter()
    protocol = EvalProtocol(
        dataset="digits", split="test", ways=5, shots=s.shots, queries=15, episodes=s.episodes, seeds=s.seeds
    )
    log(
        f"[demo] {s.backbone} from scratch on digits base classes 0-4 ({s.img_size}px, {s.epochs} epochs max), "
        f"novel classes 5-9: 5-way {'/'.join(map(str, s.shots))}-shot, 15 queries, "
        f"{s.episodes} episodes x seeds {', '.join(map(str, s.seeds))}; "
        f"training seeds {', '.join(map(str, s.train_seeds))} per objective"
    )
    results = []
    by_run: dict[tuple[str, int], Any] = {}
    for objective, label in DEMO_METHODS.items():
        runs_dir = out / "runs" / objective
        if runs_dir.exists():  # the demo's own earlier runs (checked above): start afresh
            shutil.rmtree(runs_dir)
        _clear_old_results(out / "results" / objective)
        for seed in s.train_seeds:
            name = seed_run_name(seed)
            t0 = time.perf_counter()
            config = FinetuneConfig(
                backbone=s.backbone,
                dataset="digits",
                out=str(runs_dir / name),
                img_size=s.img_size,
                objective=objective,
                lam=0.9,
                temperature=0.5,
                epochs=s.epochs,
                batch_size=s.batch_size,
                lr=s.lr,
                weight_decay=s.weight_decay,
                patience=s.patience,
                hflip=0.0,  # a mirrored digit is another glyph
                seed=seed,
                num_workers=0,
                threads=s.threads,
                progress=progress,
            )
            run = finetune(config)
            _stage(log, timings, f"finetune {objective} {name} ({run.epochs} epochs, best {run.best_epoch})", t0)

            t0 = time.perf_counter()
            features = out / "features" / f"{objective}-{name}.npz"
            extract_to_file(
                features, dataset="digits", split="test", checkpoint=run.best, use_cache=False, progress=progress
            )
            res = evaluate_to_directory(
                features, out / "results" / objective / name, protocol, label=label, progress=progress
            )
            results.append(res)
            by_run[(objective, seed)] = res
            _stage(log, timings, f"extract + evaluate {objective} {name}", t0)

    t0 = time.perf_counter()
    baseline = DEMO_METHODS["ce"]
    comparison = compare(results, baseline=baseline)
    write_csv(out / "compare.csv", comparison)
    if len(s.train_seeds) >= 2:  # the cautionary example: one objective, two checkpoints
        a, b = (by_run[("ce", seed)] for seed in s.train_seeds[:2])
        relabel = lambda r, seed: dataclasses.replace(r, manifest={**r.manifest, "label": f"CE {seed_run_name(seed)}"})  # noqa: E731
        write_csv(
            out / "compare_ce_seeds.csv",
            compare(
                [relabel(b, s.train_seeds[1]), relabel(a, s.train_seeds[0])],
                baseline=f"CE {seed_run_name(s.train_seeds[0])}",
            ),
        )
    frame = table_frame(results, baseline=baseline)
    tables = {fmt: render_table(frame, fmt=fmt) for fmt in ("md", "csv", "latex")}
    write_text(out / "table1.md", tables["md"])
    write_text(out / "table1.csv", tables["csv"])
    write_text(out / "table1.tex", tables["latex"])
    plot_results(results, out / "accuracy.png")
    _stage(log, timings, "compare, table, plot", t0)

    t0 = time.perf_counter()  # the papers' embedding analyses, on each objective's first run
    first = seed_run_name(s.train_seeds[0])
    analyze_to_directory(
        [out / "features" / f"{objective}-{first}.npz" for objective in DEMO_METHODS],
        out / "analysis",
        labels=[f"{label} ({first})" for label in DEMO_METHODS.values()],
        classes=["8"],
        tsne_per_class=60 if quick else 100,
    )
    _stage(log, timings, "analyze", t0)
    timings["total"] = round(time.perf_counter() - start, 2)
    write_json(
        out / "manifest.json",
        make_manifest("demo", {**dataclasses.asdict(s), "quick": quick, "methods": DEMO_METHODS}, timings=timings),
    )
    log("")
    log(tables["md"])
    log(f"[demo] total {timings['total']:.1f}s; wrote {out}")
    return {"out": out, "results": results, "comparison": comparison, "tables": tables, "timings": timings}
