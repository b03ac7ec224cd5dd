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
    "backbone": "conv4", "dataset": "digits", "img_size": 16, "epochs": 1, "batch_size": 128,
    "hflip": 0.0, "num_workers": 0, "threads": 1, "val_fraction": 0.1,
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


@pytest.mark.parametrize(("grid", "extra", "match"), [
    ({}, {}, r"\[grid\] is empty"),
    ({"lam": []}, {}, "grid axis 'lam' must be a non-empty list"),
    ({"lam": [0.1, 0.1]}, {}, "grid axis 'lam' repeats a value"),
    ({"out": ["a"]}, {}, "`out` is set per cell"),
    ({"epochs": [1]}, {"shared": TINY}, "'epochs' is both in \\[finetune\\] and in \\[grid\\]"),
    ({"lam": [1.5]}, {}, r"cell lam=1.5: lam must be in \[0, 1\]"),
    ({"lamda": [0.5]}, {}, "unknown setting 'lamda'.*did you mean lam"),
    ({"lam": [0.5]}, {"extra": 1}, r"unknown key\(s\) \['extra'\]"),
])
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


def test_resume_skips_exactly_the_finished_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fewshot.evaluation
    import fewshot.features
    import fewshot.sweep.cell

    spec = spec_of(tmp_path, {"lam": [0.0, 0.9], "seed": [0]})
    first, second = spec.cells()
    real_evaluate = fewshot.evaluation.evaluate_to_directory
    calls: list[tuple[str, str]] = []

    def failing_evaluate(features, out, *args, **kwargs):
        if second.id in str(out):
            raise KeyboardInterrupt  # the sweep is stopped while the second cell evaluates
        return real_evaluate(features, out, *args, **kwargs)

    monkeypatch.setattr(fewshot.evaluation, "evaluate_to_directory", failing_evaluate)
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

    monkeypatch.setattr(fewshot.evaluation, "evaluate_to_directory", spy("evaluate", real_evaluate))
    monkeypatch.setattr(fewshot.features, "extract_to_file", spy("extract", fewshot.features.extract_to_file))
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
    assert compare[["method", "baseline"]].values.tolist() == [[second.id, first.id]]

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
    other = sweep_from_dict({"finetune": {**TINY, "epochs": 2}, "grid": {"lam": [0.0], "seed": [0]},
                             "evaluate": PROTOCOL}, base=tmp_path, default_out=tmp_path / "sweep")
    with pytest.raises(ValueError, match=r"lam=0,seed=0 .* was run with other settings \(finetune differ\)"):
        run_sweep(other)


@pytest.mark.slow
def test_submitit_local_executor_runs_the_same_cells(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("submitit")
    path = tmp_path / "s.toml"
    path.write_text(
        'out = "study"\n[finetune]\n' + "".join(f"{k} = {json.dumps(v)}\n" for k, v in TINY.items() if k != "batch_size")
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
