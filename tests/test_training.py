"""Fine-tuning: config, data order, every objective end to end, resume, bad input (CPU, tiny models)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from fewshot.checkpoint import load_checkpoint, load_heads, read_checkpoint_meta
from fewshot.data._base import ImageSplit
from fewshot.features import extract_features
from fewshot.losses import OBJECTIVES
from fewshot.training import FinetuneConfig, finetune, load_config
from fewshot.training.config import config_diff
from fewshot.training.data import TrainBatchSampler, TwoViews, ValBatchSampler, holdout_split
from fewshot.training.loop import lr_factor
from fewshot.training.runner import TEST_EXIT_ENV

ROOT = Path(__file__).resolve().parents[1]


class ColourSplit(ImageSplit):
    """Noisy images whose class is their mean colour: learnable in a few steps."""

    def __init__(self, n_classes=4, per_class=20, size=12, seed=0, split="train"):
        rng = np.random.default_rng(seed)
        labels = np.repeat(np.arange(n_classes), per_class)
        colours = np.random.default_rng(123).integers(0, 256, (n_classes, 3))
        pixels = colours[labels][:, None, None, :] + rng.normal(0, 25, (labels.size, size, size, 3))
        self.pixels = np.clip(pixels, 0, 255).astype(np.uint8)
        super().__init__("colours", split, labels, [f"c{k}" for k in range(n_classes)], source="memory")

    def _load(self, index):
        return Image.fromarray(self.pixels[index])


def tiny_config(out, **overrides) -> FinetuneConfig:
    settings = dict(
        backbone="conv4", backbone_kwargs={"width": 8}, dataset="colours", out=str(out), img_size=16,
        epochs=3, batch_size=16, lr=1e-2, augment="cifar10", threads=1, progress=False, val_fraction=0.2,
    )
    settings.update(overrides)
    return FinetuneConfig(**settings)


DIGITS_TOML = """\
backbone = "conv4"
dataset = "digits"
img-size = 16
epochs = 2
batch-size = 128
lr = 3e-3
threads = 1
progress = false

[backbone_kwargs]
width = 8
"""


# ---------------------------------------------------------------------------- config


def test_defaults_are_the_papers():
    c = FinetuneConfig(backbone="resnet18", dataset="cifar-fs", out="x")
    assert (c.objective, c.lam, c.temperature) == ("schane", 0.9, 0.5)
    assert (c.lr, c.weight_decay, c.dropout, c.batch_size, c.epochs, c.patience) == (1e-4, 0.05, 0.1, 1024, 100, 10)
    assert (c.scheduler, c.val_fraction, c.projection_dim) == ("cosine", 0.1, 0)


def test_load_config_toml_table_dashes_and_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[finetune]\nbackbone = "conv4"\ndataset = "digits"\nout = "r"\nbatch-size = 64\nlam = 1\n')
    c = load_config(path, lr=0.5, **{"weight-decay": 0})
    assert (c.batch_size, c.lam, c.lr, c.weight_decay) == (64, 1.0, 0.5, 0.0)
    assert isinstance(c.lam, float)
    assert FinetuneConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match=r"unknown setting 'bach_size'.*did you mean batch_size"):
        load_config(None, backbone="conv4", dataset="digits", out="r", bach_size=3)
    with pytest.raises(ValueError, match="missing required setting.*backbone"):
        load_config(None, dataset="digits", out="r")
    yaml_path = tmp_path / "c.yaml"
    yaml_path.write_text("backbone: conv4\n")
    try:
        import yaml  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="PyYAML"):
            load_config(yaml_path)


def test_config_diff_ignores_execution_keys():
    a = tiny_config("a").to_dict()
    b = tiny_config("b", num_workers=2, threads=2, lr=1.0, epochs=9).to_dict()
    assert config_diff(a, b) == ["epochs", "lr"]


# ---------------------------------------------------------------------------- data


def test_holdout_split_is_stratified_seeded_and_disjoint():
    labels = np.repeat(np.arange(4), [10, 20, 3, 2])
    train, val = holdout_split(labels, 0.1, seed=0)
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(labels.size))
    assert np.bincount(labels[val], minlength=4).tolist() == [1, 2, 1, 1]
    again, val2 = holdout_split(labels, 0.1, seed=0)
    assert np.array_equal(val, val2)
    assert not np.array_equal(holdout_split(labels, 0.5, seed=1)[1], holdout_split(labels, 0.5, seed=2)[1])
    assert holdout_split(labels, 0.0, seed=0)[1].size == 0
    with pytest.raises(ValueError, match="class 1 has 1 image"):
        holdout_split(np.array([0, 0, 1]), 0.1, seed=0)


def test_sampler_ranks_partition_the_global_batch_and_resume_mid_epoch():
    one = TrainBatchSampler(50, 8, seed=3)
    ranks = [TrainBatchSampler(50, 8, seed=3, rank=r, world_size=2) for r in range(2)]
    for s in (one, *ranks):
        s.set_epoch(1)
    batches = list(one)
    assert len(batches) == one.steps_per_epoch == 6
    for step, (a, b) in enumerate(zip(*ranks)):
        assert a + b == batches[step]
    one.set_epoch(1, start_step=4)
    assert list(one) == batches[4:]
    one.set_epoch(2)
    assert list(one) != batches
    with pytest.raises(ValueError, match="not divisible"):
        TrainBatchSampler(50, 9, seed=0, world_size=2)
    with pytest.raises(ValueError, match="make no batch"):
        TrainBatchSampler(5, 8, seed=0)
    val = [ValBatchSampler(11, 4, seed=0, rank=r, world_size=3) for r in range(3)]
    chunks = [list(v) for v in val]
    assert [len(c) for c in chunks] == [3, 3, 3]
    assert sorted(p for rank in chunks for batch in rank for p, _ in batch) == list(range(11))


def test_views_depend_only_on_the_item_seed():
    from fewshot.models import Preprocessing, train_transform

    pp = Preprocessing((3, 16, 16), "bilinear", (0.5,) * 3, (0.25,) * 3)
    data = TwoViews(ColourSplit(), np.arange(10, 20), train_transform(pp))
    a, label, instance = data[(3, 77)]
    torch.rand(100)  # whatever the global RNG did in between
    b, _, _ = data[(3, 77)]
    c, _, _ = data[(3, 78)]
    assert a.shape == (2, 3, 16, 16) and (label, instance) == (0, 13)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])


def test_lr_schedule():
    assert lr_factor(0, 100) == 1.0
    assert lr_factor(50, 100) == pytest.approx(0.5)
    assert lr_factor(99, 100) == pytest.approx(0.5 * (1 + np.cos(np.pi * 0.99)))
    assert [lr_factor(s, 100, 4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(70, 100, 4, "constant") == 1.0


# ---------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_each_objective_learns_and_feeds_extraction(tmp_path, objective):
    rng_before = torch.get_rng_state()
    projection = 8 if objective == "supcon" else 0
    config = tiny_config(tmp_path / "run", objective=objective, projection_dim=projection)
    result = finetune(config, split=ColourSplit())
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is untouched
    history = result.history
    assert result.epochs == 3 and result.steps == 3 * 4 and len(history) == 3
    assert history[-1]["total"] < history[0]["total"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    if objective == "ce":
        assert all(r["contrastive"] == 0 for r in history)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log == list(history)
    assert set(log[0]) >= {"epoch", "total", "ce", "contrastive", "val_loss", "lr", "images_per_s", "time"}

    model, pp, meta = load_checkpoint(result.best)
    assert pp.input_size == (3, 16, 16) and meta["config"]["objective"] == objective
    heads = load_heads(result.best)
    assert sorted(heads) == (["classifier", "projection"] if projection else ["classifier"])
    novel = ColourSplit(n_classes=2, per_class=3, seed=5, split="test")
    feats, labels = extract_features(model, novel, preprocessing=pp, batch_size=4, progress=False)
    assert feats.shape == (6, 8) and np.isfinite(feats).all()


def test_loader_workers_do_not_change_the_result(tmp_path):
    runs = [finetune(tiny_config(tmp_path / f"w{w}", epochs=1, objective="simclr", num_workers=w), split=ColourSplit())
            for w in (0, 2)]
    a, b = (load_file(r.last / "backbone.safetensors") for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0].history[0]["val_loss"] == runs[1].history[0]["val_loss"]


def test_log_manifest_and_checkpoint_layout(tmp_path):
    from safetensors.torch import save_file

    from fewshot._io import sha256_file
    from fewshot.models import create_backbone

    weights = tmp_path / "init.safetensors"
    save_file(create_backbone("conv4", width=8, seed=7).state_dict(), str(weights))
    result = finetune(tiny_config(tmp_path / "run", epochs=2, pretrained=str(weights)), split=ColourSplit())
    run = result.run_dir
    assert sorted(p.name for p in run.iterdir()) == ["best", "last", "log.jsonl", "manifest.json"]
    assert sorted(p.name for p in result.last.iterdir()) == [
        "backbone.safetensors", "checkpoint.json", "heads.safetensors", "training_state.pt"]
    assert sorted(p.name for p in result.best.iterdir()) == ["backbone.safetensors", "checkpoint.json", "heads.safetensors"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["kind"] == "finetune" and manifest["status"] == "finished"
    assert manifest["data"]["train_images"] + manifest["data"]["val_images"] == 80
    assert manifest["result"]["epochs"] == 2
    assert manifest["run"]["pretrained_sha256"] == sha256_file(weights)
    assert manifest["config"]["pretrained"] == str(weights)
    assert manifest["checkpoints"]["best"] == read_checkpoint_meta(result.best)["backbone"]["sha256"]
    best = read_checkpoint_meta(result.best)["extra"]
    assert best["epoch"] == result.best_epoch and best["val_loss"] == result.best_val_loss


def test_early_stopping_keeps_the_best_epoch(tmp_path, monkeypatch):
    from fewshot.training.loop import Trainer

    scripted = iter([3.0, 2.0, 2.5, 2.6, 1.0])
    monkeypatch.setattr(
        Trainer, "validate",
        lambda self: {"val_loss": next(scripted), "val_ce": 0.0, "val_contrastive": 0.0, "val_acc": 0.0},
    )
    result = finetune(tiny_config(tmp_path / "run", epochs=5, patience=2, objective="ce"), split=ColourSplit())
    assert result.stopped_early and result.epochs == 4
    assert result.best_epoch == 2 and result.best_val_loss == 2.0
    assert [r["best"] for r in result.history] == [True, True, False, False]
    assert read_checkpoint_meta(result.best)["extra"]["epoch"] == 2
    # resuming a finished run does nothing
    again = finetune(tiny_config(tmp_path / "run", epochs=5, patience=2, objective="ce"), resume=True, split=ColourSplit())
    assert again.epochs == 4 and again.stopped_early


def test_without_validation_best_is_the_last_epoch(tmp_path):
    result = finetune(tiny_config(tmp_path / "run", epochs=2, val_fraction=0.0, objective="ce"), split=ColourSplit())
    assert result.best_epoch == 2 and result.best_val_loss is None
    assert result.history[-1]["val_loss"] is None
    a = load_file(result.best / "backbone.safetensors")
    b = load_file(result.last / "backbone.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_kill_matches_uninterrupted_run(tmp_path, run_cli):
    """A run hard-killed mid-epoch 2 (after a mid-epoch checkpoint) and resumed ends bitwise equal."""
    config = tmp_path / "c.toml"
    config.write_text(DIGITS_TOML)
    # digits: 901 base images, 90% for training -> 6 steps of 128 per epoch; die after step 10,
    # with last/ written at step 9 (every 3 steps), in the middle of epoch 2
    env = {**os.environ, TEST_EXIT_ENV: "10", "PYTHONPATH": str(ROOT)}
    killed = subprocess.run(
        [sys.executable, "-m", "fewshot", "finetune", "--config", config, "--objective", "simclr",
         "--save-every-steps", "3", "--out", tmp_path / "killed"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert killed.returncode == 75, killed.stderr
    progress = read_checkpoint_meta(tmp_path / "killed" / "last")["extra"]["progress"]
    assert (progress["epoch"], progress["step"], progress["global_step"]) == (1, 3, 9)

    status, out, err = run_cli("finetune", "--resume", tmp_path / "killed")
    assert status == 0, err
    assert "resuming" in out and "epoch 2, step 3/6" in out
    status, _, err = run_cli("finetune", "--config", config, "--objective", "simclr", "--out", tmp_path / "whole")
    assert status == 0, err

    for name in ("backbone.safetensors", "heads.safetensors"):
        a = load_file(tmp_path / "killed" / "last" / name)
        b = load_file(tmp_path / "whole" / "last" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    drop = ("time", "images_per_s")
    logs = [[{k: v for k, v in json.loads(line).items() if k not in drop}
             for line in (tmp_path / run / "log.jsonl").read_text().splitlines()] for run in ("killed", "whole")]
    assert logs[0] == logs[1] and len(logs[0]) == 2


def test_resume_refuses_a_different_config(tmp_path, run_cli):
    config = tmp_path / "c.toml"
    config.write_text(DIGITS_TOML.replace("epochs = 2", "epochs = 1"))
    status, out, err = run_cli("finetune", "--config", config, "--objective", "ce", "--out", tmp_path / "run")
    assert status == 0, err
    status, _, err = run_cli("finetune", "--resume", tmp_path / "run", "--lr", "0.5", "--temperature", "0.1", "--threads", "2")
    assert status == 2
    assert len(err.strip().splitlines()) == 1
    assert "lr: run has 0.003, given 0.5" in err and "temperature" in err and "threads" not in err
    # a fresh run into the same directory is refused too
    status, _, err = run_cli("finetune", "--config", config, "--out", tmp_path / "run")
    assert status == 2 and "--resume" in err
    # the same settings resume (here: a finished run, nothing to do)
    status, out, err = run_cli("finetune", "--resume", tmp_path / "run", "--config", config, "--objective", "ce")
    assert status == 0 and "already finished" in out


def test_cli_checkpoint_feeds_fewshot_extract(tmp_path, run_cli):
    config = tmp_path / "c.toml"
    config.write_text(DIGITS_TOML.replace("epochs = 2", "epochs = 1"))
    status, out, err = run_cli("finetune", "--config", config, "--objective", "schane", "--out", tmp_path / "run")
    assert status == 0, err
    assert "epoch 1/1" in out and "best: epoch 1" in out
    status, out, err = run_cli("extract", "--checkpoint", tmp_path / "run" / "best", "--dataset", "digits",
                               "--out", tmp_path / "f.npz", "--no-progress")
    assert status == 0, err
    with np.load(tmp_path / "f.npz") as data:
        assert data["features"].shape == (896, 8) and str(data["split"]) == "test"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backbone", "resnet181"], r"unknown backbone 'resnet181'; did you mean .*resnet18"),
        (["--objective", "triplet"], r"invalid choice: 'triplet' \(choose from 'ce', 'schane', 'supcon', 'simclr', 'hscl'\)"),
        (["--lam", "1.5"], r"lam must be in \[0, 1\], got 1.5"),
        (["--lam", "-0.1"], r"lam must be in \[0, 1\]"),
        (["--temperature", "0"], r"temperature must be > 0, got 0.0"),
        (["--temperature", "-1"], r"temperature must be > 0"),
        (["--batch-size", "1"], r"batch_size must be >= 2"),
        (["--split", "val"], r"dataset 'digits' has no split 'val'; it has train, test"),
        (["--dataset", "cifar-fs", "--data-root", "/nonexistent/data"], r"data root not found: /nonexistent/data"),
        (["--dataset", "nope"], r"invalid choice: 'nope'"),
        (["--pretrained", "/nonexistent/w.safetensors"], r"pretrained weights file not found"),
        (["--pretrained", "GARBAGE"], r"cannot read safetensors file"),
        (["--epochs", "0"], r"epochs must be >= 1"),
        (["--scheduler", "step"], r"invalid choice: 'step'"),
        (["--batch-size", "4096"], r"make no batch of batch_size=4096"),
        (["--device", "cuda"], r"CUDA is not available"),
        (["--projection-dim", "-1"], r"projection_dim must be >= 0"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(tmp_path, run_cli, args, message):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    if "GARBAGE" in args:
        garbage = tmp_path / "w.safetensors"
        garbage.write_bytes(b"not a safetensors file")
        args = [str(garbage) if a == "GARBAGE" else a for a in args]
    config = tmp_path / "c.toml"
    config.write_text(DIGITS_TOML)
    status, _, err = run_cli("finetune", "--config", config, "--out", tmp_path / "run", *args)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fewshot finetune: error:"), err
    assert __import__("re").search(message, lines[0]), lines[0]


def test_cli_resume_errors(tmp_path, run_cli):
    status, _, err = run_cli("finetune", "--resume", tmp_path / "missing")
    assert status == 2 and "run directory not found" in err
    (tmp_path / "empty").mkdir()
    status, _, err = run_cli("finetune", "--resume", tmp_path / "empty")
    assert status == 2 and "nothing to resume" in err
    broken = tmp_path / "broken" / "last"
    broken.mkdir(parents=True)
    (broken / "checkpoint.json").write_text("{not json")
    status, _, err = run_cli("finetune", "--resume", tmp_path / "broken")
    assert status == 2 and "cannot parse" in err
    status, _, err = run_cli("finetune", "--config", tmp_path / "none.toml", "--out", tmp_path / "r")
    assert status == 2 and "config file not found" in err
