"""Every subcommand driven with the bad inputs of its kind.

The promise under test (README, "Errors"): bad input ends a command with one line
``fewshot <cmd>: error: ...`` on stderr and exit status 2, and nothing is written; an output
directory is replaced only when it holds fewshot's own output of that kind; no output replaces
an input; a kill never leaves anything a later command trusts.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_features

SMALL = ["--ways", "5", "--shots", "1", "--queries", "5", "--episodes", "20", "--seeds", "0", "--no-progress"]
DIGITS = ["--dataset", "digits", "--backbone", "conv4", "--img-size", "16", "--no-progress"]


# ---------------------------------------------------------------------------- helpers


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and directory under ``root`` with its size and mtime."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
    return out


def refused(run_cli, root: Path, command: str, *args, match: str) -> str:
    """Run ``fewshot command args``; assert exit 2, one matching line, nothing written."""
    before = snapshot(root)
    status, _, err = run_cli(command, *args)
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"fewshot {command}"), lines[0]
    assert ": error: " in lines[0], lines[0]
    assert re.search(match, lines[0]), lines[0]
    assert snapshot(root) == before, "a refused command wrote something"
    return lines[0]


@pytest.fixture
def results_dir(tmp_path, features_file, run_cli):
    out = tmp_path / "res"
    status, _, err = run_cli("evaluate", "--features", features_file, *SMALL, "--out", out)
    assert status == 0, err
    return out


def _edit_rows(results: Path, edit) -> None:
    table = results / "per_episode.csv.gz"
    df = pd.read_csv(table)
    df = edit(df)
    table.write_bytes(gzip.compress(df.to_csv(index=False).encode()))


def _edit_manifest(results: Path, edit) -> None:
    path = results / "manifest.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps(edit(data)))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _host() -> str:
    import socket

    return "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname()) or "host"


# ---------------------------------------------------------------------------- evaluate


def _npz_bytes(tmp_path: Path, compressed: bool = False) -> bytes:
    feats, labels = make_features()
    p = tmp_path / "ok-src.npz"
    (np.savez_compressed if compressed else np.savez)(p, features=feats, labels=labels)
    data = p.read_bytes()
    p.unlink()
    return data


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", r"not a readable \.npz"),
        (b"features,labels\n1,2\n", r"not a readable \.npz"),
        ("truncated", r"not a readable \.npz"),
        ("corrupt", r"not a readable \.npz"),
    ],
)
def test_evaluate_refuses_damaged_npz(tmp_path, run_cli, content, match):
    path = tmp_path / "f.npz"
    if content == "truncated":
        data = _npz_bytes(tmp_path)
        content = data[: len(data) // 2]
    elif content == "corrupt":
        data = bytearray(_npz_bytes(tmp_path, compressed=True))
        mid = len(data) // 2
        data[mid : mid + 64] = bytes(64)  # zero a stretch of the deflate stream
        content = bytes(data)
    path.write_bytes(content)
    refused(run_cli, tmp_path, "evaluate", "--features", path, *SMALL, "--out", tmp_path / "out", match=match)


@pytest.mark.parametrize(
    "arrays, match",
    [
        (lambda f, y: {"features": f.astype(np.int32), "labels": y}, r"floating point"),
        (lambda f, y: {"features": f, "labels": y.astype(np.float32)}, r"labels must be integers"),
        (lambda f, y: {"features": f[:, 0], "labels": y}, r"2-D array"),
        (lambda f, y: {"features": f, "labels": y[:-1]}, r"labels for .* feature rows"),
        (
            lambda f, y: {"features": np.where(np.arange(f.size).reshape(f.shape) == 7, np.nan, f), "labels": y},
            r"NaN or Inf",
        ),
        (
            lambda f, y: {"features": np.where(np.arange(f.size).reshape(f.shape) == 7, np.inf, f), "labels": y},
            r"NaN or Inf",
        ),
        (lambda f, y: {"labels": y}, r"missing key"),
        (lambda f, y: {"features": f[:0], "labels": y[:0]}, r"empty"),
        (lambda f, y: {"features": f.astype(np.float64) * 1e200, "labels": y}, r"cannot be evaluated"),
    ],
)
def test_evaluate_refuses_bad_arrays(tmp_path, run_cli, arrays, match):
    feats, labels = make_features()
    path = tmp_path / "f.npz"
    np.savez(path, **arrays(feats, labels))
    refused(run_cli, tmp_path, "evaluate", "--features", path, *SMALL, "--out", tmp_path / "out", match=match)


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--ways", "100"], r"class"),
        (["--shots", "0"], r"shots"),
        (["--episodes", "0"], r"episodes"),
        (["--queries", "1000"], r"quer|items|images"),
        (["--seeds", "0", "0"], r"seeds must not repeat"),
        (["--shots", "1", "1"], r"shots must not repeat"),
        (["--classifier", "svm2"], r"invalid choice: 'svm2'"),
        (["--ways", "five"], r"invalid int value"),
        (["--bogus"], r"unrecognized arguments: --bogus"),
    ],
)
def test_evaluate_refuses_bad_protocol(tmp_path, features_file, run_cli, flags, match):
    refused(
        run_cli,
        tmp_path,
        "evaluate",
        "--features",
        features_file,
        *SMALL,
        *flags,
        "--out",
        tmp_path / "out",
        match=match,
    )


def test_evaluate_refuses_missing_features_and_protocol(tmp_path, features_file, run_cli):
    refused(
        run_cli, tmp_path, "evaluate", "--features", tmp_path / "none.npz", "--out", tmp_path / "o", match=r"not found"
    )
    bad = tmp_path / "p.toml"
    bad.write_text("ways = [")
    refused(
        run_cli,
        tmp_path,
        "evaluate",
        "--features",
        features_file,
        "--protocol",
        bad,
        "--out",
        tmp_path / "o",
        match=r"invalid TOML",
    )
    bad.write_text("ways = 5\nshots = [1, 1]\n")
    refused(
        run_cli,
        tmp_path,
        "evaluate",
        "--features",
        features_file,
        "--protocol",
        bad,
        "--out",
        tmp_path / "o",
        match=r"must not repeat",
    )


def test_evaluate_cuda_without_gpu(tmp_path, features_file, run_cli):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    refused(
        run_cli,
        tmp_path,
        "evaluate",
        "--features",
        features_file,
        *SMALL,
        "--device",
        "cuda",
        "--out",
        tmp_path / "o",
        match=r"CUDA is not available",
    )
    refused(
        run_cli,
        tmp_path,
        "evaluate",
        "--features",
        features_file,
        *SMALL,
        "--device",
        "gpu0",
        "--out",
        tmp_path / "o",
        match=r"invalid device",
    )


def test_evaluate_out_never_destroys_user_files(tmp_path, features_file, run_cli):
    # a directory that is not a results directory: refused, left untouched
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    refused(
        run_cli, tmp_path, "evaluate", "--features", features_file, *SMALL, "--out", mine, match=r"refusing to replace"
    )
    assert (mine / "thesis.tex").read_text() == "years of work"
    # an existing file
    note = tmp_path / "note.txt"
    note.write_text("keep")
    refused(run_cli, tmp_path, "evaluate", "--features", features_file, *SMALL, "--out", note, match=r"not a directory")
    # the features file itself, and a directory holding it
    refused(
        run_cli,
        tmp_path,
        "evaluate",
        "--features",
        features_file,
        *SMALL,
        "--out",
        features_file,
        match=r"replace an input",
    )
    refused(
        run_cli, tmp_path, "evaluate", "--features", features_file, *SMALL, "--out", tmp_path, match=r"replace an input"
    )
    # a results directory of an earlier evaluation is replaced
    out = tmp_path / "res"
    assert run_cli("evaluate", "--features", features_file, *SMALL, "--out", out)[0] == 0
    first = (out / "per_episode.csv.gz").read_bytes()
    assert run_cli("evaluate", "--features", features_file, *SMALL, "--C", "0.5", "--out", out)[0] == 0
    assert json.loads((out / "manifest.json").read_text())["config"]["classifier_kwargs"] == {"C": 0.5}
    # replaced in place: the rows are those of a fresh run with --C 0.5 (written with gzip mtime 0)
    assert run_cli("evaluate", "--features", features_file, *SMALL, "--C", "0.5", "--out", tmp_path / "fresh")[0] == 0
    assert (out / "per_episode.csv.gz").read_bytes() == (tmp_path / "fresh" / "per_episode.csv.gz").read_bytes()
    assert (tmp_path / "fresh" / "per_episode.csv.gz").read_bytes() != first  # C=0.5 scores differently here
    # an empty directory is fine too
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("evaluate", "--features", features_file, *SMALL, "--out", empty)[0] == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_evaluate_unwritable_out(tmp_path, features_file, run_cli):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        refused(
            run_cli,
            tmp_path,
            "evaluate",
            "--features",
            features_file,
            *SMALL,
            "--out",
            ro / "res",
            match=r"not writable",
        )
    finally:
        ro.chmod(0o755)


def test_huge_finite_features_are_evaluated_exactly(tmp_path, features_file, run_cli):
    """Features scaled by 1e30 overflow a float32 Gram matrix; the L2-normalised solvers are
    scale-invariant, so the accuracies must equal those of the unscaled features."""
    with np.load(features_file) as z:
        feats, labels = z["features"], z["labels"]
    big = tmp_path / "big.npz"
    np.savez(big, features=(feats * np.float32(1e30)).astype(np.float32), labels=labels)
    assert np.isfinite(np.load(big)["features"]).all()
    for name, path in (("a", features_file), ("b", big)):
        status, _, err = run_cli("evaluate", "--features", path, *SMALL, "--out", tmp_path / name)
        assert status == 0, err
    acc = [pd.read_csv(tmp_path / n / "per_episode.csv.gz")["accuracy"].to_numpy() for n in ("a", "b")]
    np.testing.assert_array_equal(acc[0], acc[1])


def test_evaluate_cleans_debris_of_killed_runs(tmp_path, features_file, run_cli):
    pid = _dead_pid()
    debris = tmp_path / f".res.{_host()}.{pid}.abc123.tmp"
    debris.mkdir()
    (debris / "per_episode.csv.gz").write_bytes(b"half")
    live = tmp_path / f".res.{_host()}.{os.getppid()}.abc124.tmp"  # a live process's: kept
    live.mkdir()
    assert run_cli("evaluate", "--features", features_file, *SMALL, "--out", tmp_path / "res")[0] == 0
    assert not debris.exists() and live.exists()


# ---------------------------------------------------------------------------- compare / table / plot


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            lambda df: df.assign(accuracy=np.where(df.index == 3, 7.0, df.accuracy)),
            r"accuracy must be a fraction in \[0, 1\], got 7\.0",
        ),
        (lambda df: df.assign(accuracy=np.where(df.index == 0, -0.4, df.accuracy)), r"got -0\.4"),
        (lambda df: df.assign(accuracy=np.where(df.index == 0, np.nan, df.accuracy)), r"accuracy must be a fraction"),
        (lambda df: pd.concat([df, df.iloc[:5]]), r"appears more than once"),
        (lambda df: df.assign(features_fingerprint="0" * 64), r"features fingerprint"),
        (lambda df: df.assign(episode=df.episode.astype(float) + 0.5), r"must hold integers"),
        (lambda df: df.iloc[:0], r"no rows"),
    ],
)
@pytest.mark.parametrize("command", ["compare", "table", "plot"])
def test_edited_rows_are_refused(tmp_path, results_dir, run_cli, edit, match, command):
    other = tmp_path / "other"
    import shutil

    shutil.copytree(results_dir, other)
    _edit_manifest(other, lambda m: {**m, "label": "other"})
    _edit_rows(results_dir, edit)
    out = {
        "compare": [],
        "table": ["--baseline", "res", "--out", tmp_path / "t.md"],
        "plot": ["--out", tmp_path / "p.png"],
    }
    line = refused(run_cli, tmp_path, command, results_dir, other, *out[command], match=match)
    assert "per_episode.csv.gz" in line


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: [m], r"manifest\.json: expected a JSON object, got list"),
        (lambda m: "text", r"expected a JSON object, got str"),
        (lambda m: {**m, "features": {**m["features"], "fingerprint": "f" * 64}}, r"manifest records"),
        (lambda m: {**m, "config": {**m["config"], "queries": 15}}, r"queries = 15"),
        (lambda m: {**m, "config": {**m["config"], "episodes": 3000}}, r"episodes = 3000"),
        (lambda m: {**m, "config": {**m["config"], "seeds": [0, 1]}}, r"seeds = \[0, 1\]"),
        (lambda m: {**m, "episodes": {k: "0" * 64 for k in m["episodes"]}}, r"episode files"),
    ],
)
@pytest.mark.parametrize("command", ["compare", "table", "plot"])
def test_edited_manifests_are_refused(tmp_path, results_dir, run_cli, edit, match, command):
    _edit_manifest(results_dir, edit)
    out = {
        "compare": [],
        "table": ["--baseline", "res", "--out", tmp_path / "t.md"],
        "plot": ["--out", tmp_path / "p.png"],
    }
    line = refused(run_cli, tmp_path, command, results_dir, results_dir, *out[command], match=match)
    assert str(results_dir) in line


@pytest.mark.parametrize("damage", ["truncated", "garbage", "bad-json", "missing"])
def test_damaged_results_files(tmp_path, results_dir, run_cli, damage):
    table = results_dir / "per_episode.csv.gz"
    if damage == "truncated":
        table.write_bytes(table.read_bytes()[:-40])
        match = r"per_episode\.csv\.gz: not a readable per-episode table"
    elif damage == "garbage":
        table.write_bytes(b"\x1f\x8b\x08\x00garbage" * 5)
        match = r"per_episode\.csv\.gz: not a readable"
    elif damage == "bad-json":
        (results_dir / "manifest.json").write_text("{not json")
        match = r"manifest\.json: not a readable manifest"
    else:
        table.unlink()
        match = r"is missing"
    for command, extra in (
        ("compare", []),
        ("table", ["--baseline", "res", "--out", tmp_path / "t.md"]),
        ("plot", ["--out", tmp_path / "p.png"]),
    ):
        refused(run_cli, tmp_path, command, results_dir, results_dir, *extra, match=match)


def test_report_outputs_never_replace_inputs(tmp_path, results_dir, run_cli):
    quoted = tmp_path / "quoted.csv"
    quoted.write_text("method,dataset,n_shot,mean,half_width\nProtoNet,cifar-fs,1,50.0,0.5\n")
    refused(
        run_cli,
        tmp_path,
        "table",
        results_dir,
        "--baseline",
        "res",
        "--quoted",
        quoted,
        "--out",
        quoted,
        match=r"replace an input",
    )
    refused(
        run_cli,
        tmp_path,
        "table",
        results_dir,
        "--baseline",
        "res",
        "--out",
        results_dir / "summary.csv",
        match=r"replace an input",
    )
    refused(
        run_cli, tmp_path, "table", results_dir, "--baseline", "res", "--out", results_dir, match=r"existing directory"
    )
    refused(run_cli, tmp_path, "plot", results_dir, "--out", results_dir / "manifest.json", match=r"replace an input")
    refused(
        run_cli,
        tmp_path,
        "compare",
        results_dir,
        results_dir,
        "--out",
        results_dir / "summary.csv",
        match=r"replace an input",
    )
    quoted.write_bytes(b"\xff\xfe\x00garbage\x00")
    refused(
        run_cli,
        tmp_path,
        "table",
        results_dir,
        "--baseline",
        "res",
        "--quoted",
        quoted,
        "--out",
        tmp_path / "t.md",
        match=r"quoted\.csv: not a readable CSV",
    )


def test_compare_missing_results(tmp_path, results_dir, run_cli):
    refused(run_cli, tmp_path, "compare", results_dir, tmp_path / "nope", match=r"results directory not found")
    refused(run_cli, tmp_path, "compare", results_dir, results_dir, "--test", "z", match=r"invalid choice: 'z'")


# ---------------------------------------------------------------------------- extract


def test_extract_no_cache_is_honoured(tmp_path, run_cli, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FEWSHOT_CACHE_DIR", str(cache))
    status, _, err = run_cli("extract", *DIGITS, "--no-cache", "--out", tmp_path / "f.npz")
    assert status == 0, err
    assert not cache.exists() or not any(cache.iterdir())
    status, _, err = run_cli("extract", *DIGITS, "--out", tmp_path / "g.npz")
    assert status == 0 and len(list(cache.iterdir())) == 1
    np.testing.assert_array_equal(np.load(tmp_path / "f.npz")["features"], np.load(tmp_path / "g.npz")["features"])


def test_extract_checks_out_before_any_work(tmp_path, run_cli, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FEWSHOT_CACHE_DIR", str(cache))
    (tmp_path / "dir.npz").mkdir()
    refused(run_cli, tmp_path, "extract", *DIGITS, "--out", tmp_path / "dir.npz", match=r"existing directory")
    refused(run_cli, tmp_path, "extract", *DIGITS, "--out", tmp_path / "f.txt", match=r"must end in \.npz")
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"x")
    refused(
        run_cli, tmp_path, "extract", *DIGITS, "--pretrained", weights, "--out", weights, match=r"must end in \.npz"
    )
    npz_weights = tmp_path / "w.npz"
    npz_weights.write_bytes(b"x")
    refused(
        run_cli,
        tmp_path,
        "extract",
        *DIGITS,
        "--pretrained",
        npz_weights,
        "--out",
        npz_weights,
        match=r"replace an input",
    )
    assert not cache.exists()


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--img-size", "1"], r"input size 1×1 does not fit this backbone"),
        (["--dataset", "imagenet-22k"], r"invalid choice: 'imagenet-22k'"),
        (["--batch-size", "0"], r"batch_size must be a positive integer"),
        (["--backbone", "resnet9000"], r"unknown|resnet9000"),
    ],
)
def test_extract_bad_settings(tmp_path, run_cli, flags, match, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE_DIR", str(tmp_path / "cache"))
    refused(run_cli, tmp_path, "extract", *DIGITS, *flags, "--out", tmp_path / "f.npz", match=match)


def test_extract_cuda_without_gpu(tmp_path, run_cli, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    monkeypatch.setenv("FEWSHOT_CACHE_DIR", str(tmp_path / "cache"))
    refused(
        run_cli,
        tmp_path,
        "extract",
        *DIGITS,
        "--device",
        "cuda",
        "--out",
        tmp_path / "f.npz",
        match=r"CUDA is not available",
    )


def test_extract_refuses_nan_weights(tmp_path, run_cli, monkeypatch):
    from safetensors.torch import save_file

    from fewshot.backbones import create_backbone

    monkeypatch.setenv("FEWSHOT_CACHE_DIR", str(tmp_path / "cache"))
    model = create_backbone("conv4", None, seed=0)
    state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    weights = tmp_path / "nan.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, weights)
    refused(
        run_cli,
        tmp_path,
        "extract",
        *DIGITS,
        "--pretrained",
        weights,
        "--out",
        tmp_path / "f.npz",
        match=r"NaN or Inf features",
    )


def test_cache_key_covers_pixels(tmp_path):
    from PIL import Image

    from fewshot.data import ArraySplit, FileSplit
    from fewshot.features import split_identity

    images = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    a = ArraySplit("toy", "test", np.arange(4) % 2, ["a", "b"], images.copy())
    changed = images.copy()
    changed[2, 3, 3, 0] = 1
    b = ArraySplit("toy", "test", np.arange(4) % 2, ["a", "b"], changed)
    assert split_identity(a) != split_identity(b)
    paths = []
    for i in range(2):
        p = tmp_path / f"{i}.png"
        Image.fromarray(images[i]).save(p)
        paths.append(p)
    before = split_identity(FileSplit("toy", "test", [0, 1], ["a", "b"], paths))
    Image.fromarray(changed[2]).save(paths[1])
    os.utime(paths[1], ns=(1, 10**18))  # a new modification time, as any rewrite gives
    after = split_identity(FileSplit("toy", "test", [0, 1], ["a", "b"], paths))
    assert before != after


# ---------------------------------------------------------------------------- finetune

FT = [
    "--dataset",
    "digits",
    "--backbone",
    "conv4",
    "--backbone-kwargs",
    "width=8",
    "--img-size",
    "16",
    "--epochs",
    "1",
    "--batch-size",
    "128",
    "--threads",
    "1",
    "--no-progress",
]


def test_finetune_img_size_too_small_writes_nothing(tmp_path, run_cli):
    line = refused(
        run_cli,
        tmp_path,
        "finetune",
        *FT[:-5],
        "--img-size",
        "1",
        "--epochs",
        "1",
        "--batch-size",
        "128",
        "--threads",
        "1",
        "--no-progress",
        "--out",
        tmp_path / "run",
        match=r"input size 1×1 does not fit",
    )
    assert not (tmp_path / "run").exists(), line


def test_finetune_refuses_foreign_out(tmp_path, run_cli):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.csv").write_text("1,2\n")
    refused(run_cli, tmp_path, "finetune", *FT, "--out", mine, match=r"refusing to replace")
    note = tmp_path / "note"
    note.write_text("x")
    refused(run_cli, tmp_path, "finetune", *FT, "--out", note, match=r"not a directory")


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--objective", "triplet"], r"invalid choice: 'triplet'"),
        (["--augment", "randaug"], r"invalid choice: 'randaug'"),
        (["--crop-scale", "0.9", "0.1"], r"crop_scale must be"),
        (["--objective", "hscl", "--objective-options", "gamma=1"], r"gamma"),
        (["--objective-options", "beta"], r"expected KEY=VALUE"),
        (["--lam", "nan"], r"lam"),
    ],
)
def test_finetune_bad_settings(tmp_path, run_cli, flags, match):
    refused(run_cli, tmp_path, "finetune", *FT, *flags, "--out", tmp_path / "run", match=match)


def test_finetune_resume_damaged_state_and_kill_inside_replace(tmp_path, run_cli):
    run = tmp_path / "run"
    status, _, err = run_cli("finetune", *FT, "--objective", "ce", "--out", run)
    assert status == 0, err
    # a last/ that a killed replace_dir had moved aside is put back, and resume finds it
    pid = _dead_pid()
    aside = tmp_path / "run" / f".last.{_host()}.{pid}.zz.old"
    os.replace(run / "last", aside)
    status, out, err = run_cli("finetune", "--resume", run)
    assert status == 0, err
    assert "already finished" in out and (run / "last").is_dir() and not aside.exists()
    # a training_state.pt that is not a torch archive: refused in one line, nothing executed
    (run / "last" / "training_state.pt").write_bytes(b"\x80\x04garbage")
    refused(run_cli, tmp_path, "finetune", "--resume", run, match=r"training_state\.pt: not a training state")
    # nor a zip that asks for a huge allocation
    (run / "last" / "training_state.pt").write_bytes(b"PK\x03\x04" + b"\xff" * 60)
    refused(run_cli, tmp_path, "finetune", "--resume", run, match=r"not a training state")


def test_resume_with_other_thread_count_warns(tmp_path):
    from fewshot.training.runner import _warn_threads
    from fewshot.training.state import Progress

    progress = Progress()
    progress.history.append({"epoch": 1, "threads": torch.get_num_threads() + 1})
    with pytest.warns(RuntimeWarning, match=r"final weights will differ"):
        _warn_threads(tmp_path, progress)
    progress.history[-1]["threads"] = torch.get_num_threads()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_threads(tmp_path, progress)


def test_every_config_field_has_a_flag():
    import dataclasses

    from fewshot.cli import build_parser
    from fewshot.cli._finetune import config_flags
    from fewshot.training.config import FinetuneConfig

    records = {r["name"]: r for r in config_flags()}
    assert set(records) == {f.name for f in dataclasses.fields(FinetuneConfig)}
    for rec in records.values():
        assert (
            rec["kwargs"]["help"].strip() and "default" in rec["kwargs"]["help"] or "required" in rec["kwargs"]["help"]
        )
    parser = build_parser()
    args = parser.parse_args(
        [
            "finetune",
            "--backbone",
            "conv4",
            "--dataset",
            "digits",
            "--out",
            "r",
            "--objective",
            "hscl",
            "--objective-options",
            "beta=0.5",
            "detach_weights=true",
            "--crop-scale",
            "0.5",
            "1",
            "--workers",
            "2",
            "--root",
            "/data",
            "--no-sync-batchnorm",
            "--compile",
            "--backbone-kwargs",
            "width=8",
        ]
    )
    given = {k: v for k, v in vars(args).items() if k not in ("config", "resume", "command", "func")}
    config = FinetuneConfig.from_dict(given)
    assert config.objective_options == {"beta": 0.5, "detach_weights": True}
    assert config.crop_scale == (0.5, 1.0) and config.num_workers == 2 and config.data_root == "/data"
    assert config.sync_batchnorm is False and config.compile is True and config.backbone_kwargs == {"width": 8}
    # a default is stated once: the help shows the dataclass's value
    lam = records["lam"]["kwargs"]["help"]
    assert lam.count("0.9") == 1 and "(default: 0.9)" in lam


def test_a_new_config_field_gets_a_flag():
    import dataclasses

    from fewshot.cli._finetune import config_flags

    @dataclasses.dataclass(frozen=True)
    class Extended:
        """Settings.

        Optimisation:
            layer_decay: learning-rate decay per layer towards the input.
        """

        layer_decay: float = 1.0
        mixup: float = dataclasses.field(default=0.0, metadata={"help": "Mixup alpha"})

    recs = {r["name"]: r for r in config_flags(Extended)}
    assert recs["layer_decay"]["flags"] == ("--layer-decay",) and recs["layer_decay"]["group"] == "optimisation"
    assert recs["layer_decay"]["kwargs"]["help"].startswith("learning-rate decay per layer")
    assert recs["mixup"]["kwargs"]["help"] == "Mixup alpha (default: 0.0)"


# ---------------------------------------------------------------------------- data, demo


def test_data_bad_inputs(tmp_path, run_cli):
    refused(run_cli, tmp_path, "data", "classes", "nope", "train", match=r"nope")
    refused(
        run_cli,
        tmp_path,
        "data",
        "check",
        "cifar-fs",
        "--data-root",
        tmp_path / "none",
        match=r"does not exist|not found",
    )
    (tmp_path / "t.csv").mkdir()
    refused(run_cli, tmp_path, "data", "check", "digits", "--csv", tmp_path / "t.csv", match=r"existing directory")


def test_demo_refuses_foreign_directories(tmp_path, run_cli):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "table1.md").write_text("my own table")
    refused(run_cli, tmp_path, "demo", "--quick", "--no-progress", "--out", mine, match=r"refusing to replace")
    demo = tmp_path / "demo"
    (demo / "runs" / "ce").mkdir(parents=True)
    (demo / "manifest.json").write_text(json.dumps({"kind": "demo"}))
    (demo / "runs" / "ce" / "notes.txt").write_text("mine")
    refused(
        run_cli,
        tmp_path,
        "demo",
        "--quick",
        "--no-progress",
        "--out",
        demo,
        match=r"runs/ce.*refusing|refusing to replace .*runs/ce",
    )
    assert (demo / "runs" / "ce" / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------------------- CLI behaviour


def test_usage_errors_are_one_line(run_cli):
    for argv in (
        ["evaluate"],
        ["nope"],
        ["table", "x"],
        ["finetune", "--epochs"],
        [],
        ["data"],
        ["data", "check"],
        ["data", "check", "digits", "--bogus"],
    ):
        status, _, err = run_cli(*argv)
        lines = err.strip().splitlines()
        assert status == 2 and len(lines) == 1 and ": error: " in lines[0], err


def test_closed_pipe_is_quiet():
    proc = subprocess.Popen(
        [sys.executable, "-m", "fewshot", "data", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    proc.stdout.close()  # the reader goes away before the command writes
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Broken pipe" not in err and err == "", err


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["--version"]]
    + [[c, "--help"] for c in ("data", "extract", "finetune", "evaluate", "compare", "table", "plot", "demo")],
)
def test_cli_starts_without_torch(argv):
    code = (
        "import sys\nfrom fewshot.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:3]\n"
        "assert 'numpy' not in sys.modules, 'numpy imported'\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert res.returncode == 0, res.stderr


def test_name_lists_match_registries():
    from fewshot import _names
    from fewshot.classifiers import CLASSIFIERS
    from fewshot.losses import OBJECTIVES
    from fewshot.stats import _TESTS

    assert _names.CLASSIFIER_NAMES == tuple(CLASSIFIERS)
    assert _names.OBJECTIVE_NAMES == tuple(OBJECTIVES)
    from fewshot.losses import list_objectives

    assert list_objectives() == list(OBJECTIVES) and list_objectives("supcon*") == ["supcon", "supcon-in"]
    assert list_objectives("nothing*") == []
    assert _names.TEST_NAMES == tuple(_TESTS)
    from fewshot.data import list_datasets

    assert _names.DATASET_NAMES == tuple(list_datasets())
    from fewshot.training.config import FinetuneConfig

    for policy in _names.AUGMENT_POLICIES:  # each is accepted by validation and the transform
        FinetuneConfig(backbone="conv4", dataset="digits", out="r", augment=policy).validate()
    with pytest.raises(ValueError, match="unknown AutoAugment policy"):
        FinetuneConfig(backbone="conv4", dataset="digits", out="r", augment="x").validate()


def test_omp_wait_policy_default_set_before_torch():
    # set by `import fewshot`, which loads no torch, so it is in place before torch loads OpenMP
    code = "import os, sys, fewshot; assert 'torch' not in sys.modules; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = str(Path(__file__).parents[1])
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.stdout.strip() == "PASSIVE", res.stderr
    env["OMP_WAIT_POLICY"] = "ACTIVE"  # the user's choice is kept
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.stdout.strip() == "ACTIVE", res.stderr


def test_manifest_records_the_cpu(results_dir):
    cpu = json.loads((results_dir / "manifest.json").read_text())["environment"]["cpu"]
    assert cpu["model"] and cpu["torch_capability"] == torch.backends.cpu.get_cpu_capability()


# ---------------------------------------------------------------------------- permissions, atomic replacement


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_outputs_honour_the_umask(tmp_path, features_file, run_cli, mask):
    old = os.umask(mask)
    try:
        status, _, err = run_cli("evaluate", "--features", features_file, *SMALL, "--out", tmp_path / "res")
    finally:
        os.umask(old)
    assert status == 0, err
    res = tmp_path / "res"
    assert res.stat().st_mode & 0o777 == 0o777 & ~mask
    assert (res / "episodes").stat().st_mode & 0o777 == 0o777 & ~mask
    for f in [res / "manifest.json", res / "per_episode.csv.gz", res / "summary.csv", *res.glob("episodes/*.npz")]:
        assert f.stat().st_mode & 0o777 == 0o666 & ~mask, f


def test_umask_is_read_without_changing_it():
    from fewshot._io import umask

    old = os.umask(0o027)
    try:
        assert umask() == 0o027 and umask() == 0o027
    finally:
        os.umask(old)


@pytest.mark.parametrize("exchange", [True, False])
def test_replace_dir_keeps_a_complete_target(tmp_path, monkeypatch, exchange):
    import fewshot._io as io_

    if not exchange:
        monkeypatch.setattr(io_, "_exchange", lambda a, b: False)
    target = tmp_path / "last"
    target.mkdir()
    (target / "v").write_text("old")
    with io_.atomic_dir(target) as tmp:
        (tmp / "v").write_text("new")
    assert (target / "v").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["last"]  # no debris


def test_kill_between_the_renames_is_recovered(tmp_path):
    from fewshot._io import clean_debris, recover_dir

    pid = _dead_pid()
    aside = tmp_path / f".last.{_host()}.{pid}.q1.old"  # the complete old copy
    aside.mkdir()
    (aside / "v").write_text("old")
    new = tmp_path / f".last.{_host()}.{pid}.q2.tmp"  # the complete new one, never renamed in
    new.mkdir()
    (new / "v").write_text("new")
    assert recover_dir(tmp_path / "last")
    assert (tmp_path / "last" / "v").read_text() == "old"
    assert clean_debris(tmp_path / "last") == 1 and not new.exists()


def test_unwritable_out_is_refused_before_work(tmp_path, features_file, run_cli, monkeypatch):
    import fewshot._io as io_

    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.setattr(io_.os, "access", lambda path, mode: Path(path) != ro)  # as for a non-root user
    refused(
        run_cli,
        tmp_path,
        "evaluate",
        "--features",
        features_file,
        *SMALL,
        "--out",
        ro / "res",
        match=r"ro is not writable",
    )
    refused(run_cli, tmp_path, "table", tmp_path, "--baseline", "x", "--out", ro / "t.md", match=r"not writable")
