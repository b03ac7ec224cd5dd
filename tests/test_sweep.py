"""Sweeps: cell identity, file validation, resume that skips exactly the finished cells."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fewshot.cli import main
from fewshot.sweep import SUMMARY_COLUMNS, cell_finished, load_sweep, run_sweep, sweep_from_dict

TINY = {
    "backbone": "conv4",
    "dataset": "digits",
    "img_size": 16,
    "epochs": 1,
    "batch_size": 128,
    "hflip": 0.0,
    "num_workers": 0,
    "threads": 1,
    "val_fraction": 0.1,
}
PROTOCOL = {"shots": [1], "episodes": 10, "seeds": [0]}


def spec_of(tmp_path: Path, grid: dict, *, shared: dict | None = None, **extra) -> object:
    finetune = {k: v for k, v in TINY.items() if k not in grid} if shared is None else shared
    data = {"finetune": finetune, "grid": grid, "evaluate": dict(PROTOCOL), **extra}
    return sweep_from_dict(data, base=tmp_path, default_out=tmp_path / "sweep")


def test_cells_cover_the_grid_and_the_seed_is_part_of_identity(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, {"lam": [0.0, 0.5], "batch_size": [64, 128], "seed": [0, 1]})
    ids = [c.id for c in spec.cells()]
    assert len(ids) == len(set(ids)) == 8
    assert ids[0] == "lam=0,batch_size=64,seed=0" and ids[1] == "lam=0,batch_size=64,seed=1"
    config = spec.cell_config(spec.cells()[1])
    assert (config.lam, config.batch_size, config.seed) == (0.0, 64, 1)
    assert config.out == str(tmp_path / "sweep" / "cells" / ids[1] / "run")
    assert spec.protocol(spec.cells()[0]).episodes == 10


@pytest.mark.parametrize(
    ("grid", "extra", "match"),
    [
        ({}, {}, r"\[grid\] is empty"),
        ({"lam": []}, {}, "grid axis 'lam' must be a non-empty list"),
        ({"lam": [0.1, 0.1]}, {}, "grid axis 'lam' repeats a value"),
        ({"out": ["a"]}, {}, "`out` is set per cell"),
        ({"epochs": [1]}, {"shared": TINY}, "'epochs' is both in \\[finetune\\] and in \\[grid\\]"),
        ({"lam": [1.5]}, {}, r"cell lam=1.5: lam must be in \[0, 1\]"),
        ({"lamda": [0.5]}, {}, "unknown setting 'lamda'.*did you mean lam"),
        ({"lam": [0.5]}, {"extra": 1}, r"unknown key\(s\) \['extra'\]"),
    ],
)
def test_bad_sweep_files_are_refused(tmp_path: Path, grid: dict, extra: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        spec_of(tmp_path, grid, **extra)


def test_cli_refuses_a_bad_file_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[finetune]\nbackbone = "conv4"\ndataset = "digits"\n[grid]\nlam = [2.0]\n')
    assert main(["sweep", str(path)]) == 2
    assert "fewshot sweep: error:" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    assert main(["sweep", str(tmp_path / "none.toml")]) == 2


@pytest.fixture
def fake_stages(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stand-ins for fine-tuning and extraction (seconds -> milliseconds) that write what the real
    stages write and the manifest check reads; evaluation is the real one. Returns the call log."""
    import fewshot.pipeline
    import fewshot.sweep.cell
    from fewshot._io import save_npz, sha256_arrays, write_json

    calls: list[str] = []

    def finetune(config):
        calls.append(f"finetune {Path(config.out).parent.name}")
        best = Path(config.out) / "best"
        sha = f"sha-{config.lam}-{config.seed}"
        write_json(
            best / "checkpoint.json",
            {"format_version": 1, "backbone": {"name": "conv4", "sha256": sha}, "preprocessing": {}},
        )
        write_json(Path(config.out) / "manifest.json", {"status": "finished", "result": {"epochs": 1, "best_epoch": 1}})

    def extract(out, *, checkpoint, **kwargs):
        calls.append(f"extract {Path(out).parent.name}")
        sha = json.loads((Path(checkpoint) / "checkpoint.json").read_text())["backbone"]["sha256"]
        labels = np.repeat(np.arange(5), 20)
        rng = np.random.default_rng(abs(hash(sha)) % 2**32)
        x = (rng.normal(size=(100, 4)) + np.eye(4)[labels % 4]).astype(np.float32)
        save_npz(
            out,
            features=x,
            labels=labels,
            class_names=np.array(list("56789")),
            dataset=np.array("digits"),
            split=np.array("test"),
            fingerprint=np.array(sha256_arrays(x, labels)),
            manifest=np.array(json.dumps({"source": {"sha256": sha}})),
        )

    monkeypatch.setattr(fewshot.sweep.cell, "_finetune", finetune)
    monkeypatch.setattr(fewshot.pipeline, "extract_to_file", extract)
    return calls


def test_resume_skips_exactly_the_finished_cells_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_stages: list[str]
) -> None:
    import fewshot.pipeline

    spec = spec_of(tmp_path, {"lam": [0.0, 0.5, 0.9], "seed": [0, 1]})
    cells = spec.cells()
    real_evaluate = fewshot.pipeline.evaluate_to_directory

    def interrupted(features, out, *args, **kwargs):
        if cells[2].id in str(out):
            raise KeyboardInterrupt
        fake_stages.append(f"evaluate {Path(out).parent.name}")
        return real_evaluate(features, out, *args, **kwargs)

    monkeypatch.setattr(fewshot.pipeline, "evaluate_to_directory", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec)
    assert [cell_finished(spec, c) for c in cells] == [True, True, False, False, False, False]
    fake_stages.clear()

    def recorded(features, out, *args, **kwargs):
        fake_stages.append(f"evaluate {Path(out).parent.name}")
        return real_evaluate(features, out, *args, **kwargs)

    monkeypatch.setattr(fewshot.pipeline, "evaluate_to_directory", recorded)
    outcomes = run_sweep(spec)
    assert [o.status for o in outcomes] == ["skipped", "skipped", "resumed", "ran", "ran", "ran"]
    assert fake_stages == [f"evaluate {cells[2].id}"] + [
        f"{stage} {c.id}" for c in cells[3:] for stage in ("finetune", "extract", "evaluate")
    ]
    fake_stages.clear()
    assert {o.status for o in run_sweep(spec)} == {"skipped"} and fake_stages == []
    settings = pd.read_csv(spec.out / "settings.csv")
    assert settings["n_runs"].tolist() == [2, 2, 2]  # the two training seeds of each λ
    summary = pd.read_csv(spec.out / "summary.csv")
    for lam, group in summary.groupby("lam"):
        row = settings[settings["lam"] == lam].iloc[0]
        assert row["mean"] == pytest.approx(group["mean"].mean())
        assert row["sd_runs"] == pytest.approx(group["mean"].std(ddof=1))
    # results removed behind the manifest's back: that cell re-evaluates, nothing else runs
    import shutil

    shutil.rmtree(spec.cell_dir(cells[4]) / "results")
    assert [o.status for o in run_sweep(spec)] == ["skipped"] * 4 + ["resumed", "skipped"]
    assert fake_stages == [f"evaluate {cells[4].id}"]


@pytest.mark.slow
def test_resume_skips_exactly_the_finished_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fewshot.pipeline
    import fewshot.sweep.cell

    spec = spec_of(tmp_path, {"lam": [0.0, 0.9], "seed": [0]})
    first, second = spec.cells()
    real_evaluate = fewshot.pipeline.evaluate_to_directory
    calls: list[tuple[str, str]] = []

    def failing_evaluate(features, out, *args, **kwargs):
        if second.id in str(out):
            raise KeyboardInterrupt  # the sweep is stopped while the second cell evaluates
        return real_evaluate(features, out, *args, **kwargs)

    monkeypatch.setattr(fewshot.pipeline, "evaluate_to_directory", failing_evaluate)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec)
    assert cell_finished(spec, first) and not cell_finished(spec, second)
    assert (spec.cell_dir(second) / "features.npz").is_file()
    finished_bytes = {p: p.stat().st_mtime_ns for p in spec.cell_dir(first).rglob("*") if p.is_file()}

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            calls.append((name, str(args[0] if args else kwargs.get("config", ""))))
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(fewshot.pipeline, "evaluate_to_directory", spy("evaluate", real_evaluate))
    monkeypatch.setattr(fewshot.pipeline, "extract_to_file", spy("extract", fewshot.pipeline.extract_to_file))
    monkeypatch.setattr(fewshot.sweep.cell, "_finetune", spy("finetune", fewshot.sweep.cell._finetune))
    outcomes = run_sweep(spec)
    assert [(o.status, o.stages) for o in outcomes] == [("skipped", ()), ("resumed", ("evaluate",))]
    assert [name for name, _ in calls] == ["evaluate"] and second.id in calls[0][1]
    assert {p: p.stat().st_mtime_ns for p in spec.cell_dir(first).rglob("*") if p.is_file()} == finished_bytes

    # everything finished: a third run does nothing
    calls.clear()
    assert [o.status for o in run_sweep(spec)] == ["skipped", "skipped"]
    assert calls == []
    summary = pd.read_csv(spec.out / "summary.csv")
    assert list(summary.columns) == ["lam", "seed", *SUMMARY_COLUMNS]
    assert summary["cell"].tolist() == [first.id, second.id]
    assert (spec.out / "lambda.png").read_bytes().startswith(b"\x89PNG")
    compare = pd.read_csv(spec.out / "compare.csv")
    labels = [", ".join(f"{k}={v}" for k, v in c.values if k not in ("seed", "dataset")) for c in (second, first)]
    assert compare[["method", "baseline"]].drop_duplicates().values.tolist() == [labels]
    assert (compare["level"] == "checkpoint").all()  # one training seed per setting

    # a damaged feature file is caught by the manifest check and only it is recomputed: extraction
    # is deterministic, so the results (recorded against the same fingerprint) stay valid
    with np.load(spec.cell_dir(first) / "features.npz") as data:
        arrays = dict(data)
    arrays["features"] = arrays["features"] + 1
    np.savez(spec.cell_dir(first) / "features.npz", **arrays)
    assert not cell_finished(spec, first)
    outcomes = run_sweep(spec)
    assert [(o.status, o.stages) for o in outcomes] == [("resumed", ("extract",)), ("skipped", ())]
    assert [name for name, _ in calls] == ["extract"]
    assert cell_finished(spec, first)

    # other settings under the same out directory are refused, naming what differs
    other = sweep_from_dict(
        {"finetune": {**TINY, "epochs": 2}, "grid": {"lam": [0.0], "seed": [0]}, "evaluate": PROTOCOL},
        base=tmp_path,
        default_out=tmp_path / "sweep",
    )
    with pytest.raises(ValueError, match=r"lam=0,seed=0 .* was run with other settings \(finetune differ\)"):
        run_sweep(other)


@pytest.mark.slow
def test_submitit_local_executor_runs_the_same_cells(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("submitit")
    path = tmp_path / "s.toml"
    path.write_text(
        'out = "study"\n[finetune]\n'
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in TINY.items() if k != "batch_size")
        + "[grid]\nbatch_size = [64, 128]\n[evaluate]\nshots = [1]\nepisodes = 10\nseeds = [0]\n"
    )
    env = os.environ.get("PYTHONPATH")
    assert main(["sweep", str(path), "--executor", "submitit-local"]) == 0, env
    out = capsys.readouterr().out
    assert out.count("ran ") == 2
    spec = load_sweep(path)
    assert all(cell_finished(spec, c) for c in spec.cells())
    table = (tmp_path / "study" / "batch_size.md").read_text()
    assert table.splitlines()[0].startswith("| batch size | digits 1-shot |") and "| 64 |" in table
    assert main(["sweep", str(path), "--executor", "submitit-local"]) == 0
    assert capsys.readouterr().out.count("skipped") == 2
