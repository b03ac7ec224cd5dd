"""Frozen-backbone fine-tuning: a trainable neck on a frozen backbone, cached features, the
neck in checkpoints and extraction, resume, DDP, determinism, and the CUDA paths (CPU, tiny models)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fewshot.checkpoint import load_checkpoint, load_heads, read_checkpoint_meta
from fewshot.data import load_split
from fewshot.features import extract_features
from fewshot.heads import NeckHead
from fewshot.training import FinetuneConfig, finetune
from fewshot.training.runner import TEST_EXIT_ENV

ROOT = Path(__file__).resolve().parents[1]

FROZEN = dict(
    backbone="conv4",
    backbone_kwargs={"width": 8},
    dataset="digits",
    img_size=16,
    epochs=2,
    batch_size=128,
    lr=3e-3,
    threads=1,
    progress=False,
    objective="schane",
    freeze_backbone=True,
    neck_dims=(16, 8),
    augment="none",
    hflip=0.0,
    dropout=0.0,
)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE_DIR", str(tmp_path / "cache"))


def _tensors(directory: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(directory / name)


# ---------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"neck_dims": ()}, "freeze_backbone needs neck_dims"),
        ({"neck_dims": (8, 0)}, r"neck_dims must be positive sizes, got \[8, 0\]"),
        ({"mixup": 0.4}, "mixup/cutmix mix images"),
    ],
)
def test_bad_frozen_settings_are_refused(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        FinetuneConfig(out=str(tmp_path / "r"), **{**FROZEN, **changes})


def test_features_are_cached_only_without_augmentation(tmp_path):
    base = FinetuneConfig(out=str(tmp_path / "r"), **FROZEN)
    assert base.features_cached
    assert not base.replace(hflip=0.5).features_cached
    assert not base.replace(augment="cifar10").features_cached
    assert not base.replace(crop_scale=(0.5, 1.0)).features_cached
    assert not base.replace(freeze_backbone=False).features_cached
    # mixup is fine when the backbone runs per view
    assert base.replace(augment="cifar10", mixup=0.4).mixup == 0.4
    assert base.to_dict()["neck_dims"] == [16, 8]
    assert FinetuneConfig.from_dict(base.to_dict()) == base


def test_neck_head_is_an_mlp_with_relu_between_layers():
    neck = NeckHead(6, [5, 3], seed=0)
    x = torch.randn(4, 6, dtype=torch.float64)
    l1, l2 = neck.mlp[0], neck.mlp[2]
    expected = torch.relu(x @ l1.weight.double().T + l1.bias.double()) @ l2.weight.double().T + l2.bias.double()
    torch.testing.assert_close(neck.double()(x), expected)
    assert neck.out_features == 3 and neck.config() == {"in_features": 6, "dims": [5, 3]}
    with pytest.raises(ValueError, match="at least one size"):
        NeckHead(6, [])


# ---------------------------------------------------------------------------- training


def _pretrained(tmp_path: Path) -> str:
    """A conv4 state dict to start from, so the frozen weights are not a fresh random init."""
    from safetensors.torch import save_file

    from fewshot.backbones import create_backbone

    net = create_backbone("conv4", None, seed=7, width=8)
    path = tmp_path / "start.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, path)
    return str(path)


@pytest.mark.parametrize("cached", [True, False], ids=["cached-features", "backbone-per-view"])
def test_frozen_backbone_does_not_change_and_the_neck_learns(tmp_path, cached):
    start = _pretrained(tmp_path)
    aug = {} if cached else {"augment": "cifar10", "hflip": 0.5}
    config = FinetuneConfig(out=str(tmp_path / "run"), pretrained=start, **{**FROZEN, **aug, "epochs": 1})
    assert config.features_cached == cached
    result = finetune(config)
    # every backbone tensor (BatchNorm running statistics included) is the starting one, bitwise
    first = load_file(start)
    for ckpt in (result.best, result.last):
        saved = _tensors(ckpt, "backbone.safetensors")
        assert saved.keys() == first.keys() and all(torch.equal(saved[k], first[k]) for k in saved)
        meta = read_checkpoint_meta(ckpt)
        assert set(meta["heads"]) == {"classifier", "neck"}
        assert meta["heads"]["neck"]["config"] == {"in_features": 8, "dims": [16, 8]}
        assert meta["heads"]["classifier"]["config"]["in_features"] == 8
    init = NeckHead(8, [16, 8], seed=config.seed + 3).state_dict()
    trained = load_heads(result.best)["neck"].state_dict()
    assert any(not torch.equal(init[k], trained[k]) for k in init)
    assert all(np.isfinite(r["total"]) and np.isfinite(r["val_loss"]) for r in result.history)


def test_cached_features_train_like_running_the_backbone(tmp_path, monkeypatch):
    """The reference: the same run with the frozen backbone run on every (fixed) view."""
    start = _pretrained(tmp_path)
    cached = finetune(FinetuneConfig(out=str(tmp_path / "cached"), pretrained=start, **FROZEN))
    assert len(list((tmp_path / "cache").glob("digits-train-*.npz"))) == 1
    monkeypatch.setattr(FinetuneConfig, "features_cached", property(lambda self: False))
    direct = finetune(FinetuneConfig(out=str(tmp_path / "direct"), pretrained=start, **FROZEN))
    for a, b in zip(cached.history, direct.history, strict=True):
        for key in ("total", "ce", "contrastive", "val_loss", "val_acc"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
    a, b = _tensors(cached.best, "heads.safetensors"), _tensors(direct.best, "heads.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-4, rtol=0, msg=k)


def test_frozen_runs_are_deterministic(tmp_path):
    runs = [finetune(FinetuneConfig(out=str(tmp_path / f"r{i}"), **{**FROZEN, "dropout": 0.1})) for i in range(2)]
    a, b = (_tensors(r.best, "heads.safetensors") for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["total"] for r in runs[0].history] == [r["total"] for r in runs[1].history]
    other = finetune(FinetuneConfig(out=str(tmp_path / "seed1"), **{**FROZEN, "seed": 1}))
    c = _tensors(other.best, "heads.safetensors")
    assert not torch.equal(a["neck.mlp.0.weight"], c["neck.mlp.0.weight"])


def test_resume_after_kill_matches_uninterrupted_frozen_run(tmp_path, run_cli):
    flags = [
        "--backbone",
        "conv4",
        "--dataset",
        "digits",
        "--img-size",
        "16",
        "--epochs",
        "2",
        "--batch-size",
        "128",
        "--lr",
        "3e-3",
        "--threads",
        "1",
        "--no-progress",
        "--freeze-backbone",
        "--neck-dims",
        "16",
        "8",
        "--augment",
        "none",
        "--hflip",
        "0",
        "--objective",
        "supcon",
    ]
    config = tmp_path / "c.toml"
    config.write_text("[backbone_kwargs]\nwidth = 8\n")
    env = {**os.environ, TEST_EXIT_ENV: "10", "PYTHONPATH": str(ROOT)}
    killed = subprocess.run(
        [
            sys.executable,
            "-m",
            "fewshot",
            "finetune",
            "--config",
            config,
            *flags,
            "--save-every-steps",
            "3",
            "--out",
            tmp_path / "killed",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == 75, killed.stderr
    progress = read_checkpoint_meta(tmp_path / "killed" / "last")["extra"]["progress"]
    assert (progress["epoch"], progress["step"], progress["global_step"]) == (1, 3, 9)
    status, out, err = run_cli("finetune", "--resume", tmp_path / "killed")
    assert status == 0, err
    assert "epoch 2, step 3/6" in out
    status, _, err = run_cli("finetune", "--config", config, *flags, "--out", tmp_path / "whole")
    assert status == 0, err
    for ckpt in ("last", "best"):
        for name in ("backbone.safetensors", "heads.safetensors"):
            a, b = _tensors(tmp_path / "killed" / ckpt, name), _tensors(tmp_path / "whole" / ckpt, name)
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (ckpt, name)
    drop = ("time", "images_per_s")
    logs = [
        [
            {k: v for k, v in json.loads(line).items() if k not in drop}
            for line in (tmp_path / r / "log.jsonl").read_text().splitlines()
        ]
        for r in ("killed", "whole")
    ]
    assert logs[0] == logs[1] and len(logs[0]) == 2


# ---------------------------------------------------------------------------- extraction


def test_extract_checkpoint_applies_backbone_and_neck(tmp_path, run_cli):
    result = finetune(FinetuneConfig(out=str(tmp_path / "run"), **FROZEN))
    status, out, err = run_cli(
        "extract", "--checkpoint", result.best, "--dataset", "digits", "--out", tmp_path / "f.npz", "--no-progress"
    )
    assert status == 0, err
    assert "conv4+neck" in out and "× 8 features" in out
    # independent reference: the checkpoint's backbone on the images, then the neck in float64
    backbone, pp, _ = load_checkpoint(result.best)
    neck = load_heads(result.best)["neck"].double().eval()
    split = load_split("digits", "test")
    base, labels = extract_features(backbone, split, preprocessing=pp, device="cpu", progress=False)
    with torch.no_grad():
        expected = neck(torch.from_numpy(base).double()).numpy()
    with np.load(tmp_path / "f.npz") as data:
        np.testing.assert_allclose(data["features"], expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(data["labels"], labels)
        assert str(data["run"]) == "seed-0"
        manifest = json.loads(str(data["manifest"]))
        assert manifest["neck"]["dims"] == [16, 8]
    # a second extraction reads the backbone's features from the cache; --no-cache gives the same file content
    status, out, err = run_cli(
        "extract", "--checkpoint", result.best, "--dataset", "digits", "--out", tmp_path / "g.npz", "--no-progress"
    )
    assert status == 0 and "from cache" in out, err
    status, _, err = run_cli(
        "extract",
        "--checkpoint",
        result.best,
        "--dataset",
        "digits",
        "--no-cache",
        "--out",
        tmp_path / "h.npz",
        "--no-progress",
    )
    assert status == 0, err
    with np.load(tmp_path / "f.npz") as f, np.load(tmp_path / "h.npz") as h:
        np.testing.assert_array_equal(f["features"], h["features"])
        assert str(f["fingerprint"]) == str(h["fingerprint"])
    assert not (tmp_path / "h.npz.backbone.npz").exists()


def test_cli_frozen_flags_reach_the_config(tmp_path, run_cli):
    status, _, err = run_cli(
        "finetune", "--backbone", "conv4", "--dataset", "digits", "--freeze-backbone", "--out", tmp_path / "r"
    )
    assert status == 2 and "freeze_backbone needs neck_dims" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
    status, _, err = run_cli(
        "finetune", "--backbone", "conv4", "--dataset", "digits", "--augment", "nope", "--out", tmp_path / "r"
    )
    assert status == 2 and "none" in err


# ---------------------------------------------------------------------------- DDP

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, tmp: str, port: int) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_WORLD_SIZE=str(WORLD),
        FEWSHOT_CACHE_DIR=f"{tmp}/cache",
    )
    finetune(FinetuneConfig(out=f"{tmp}/ddp", **FROZEN))


@pytest.mark.slow
def test_two_process_frozen_finetune_matches_one_process(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(str(tmp_path), _free_port()), nprocs=WORLD, join=True)
    single = finetune(FinetuneConfig(out=str(tmp_path / "one"), **FROZEN))
    ddp_log = [json.loads(line) for line in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert len(ddp_log) == len(single.history) == 2
    for a, b in zip(ddp_log, single.history, strict=True):
        for key in ("total", "ce", "contrastive", "val_loss", "val_ce", "val_contrastive", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
    for ckpt in ("last", "best"):
        a = _tensors(tmp_path / "ddp" / ckpt, "heads.safetensors")
        b = _tensors(single.run_dir / ckpt, "heads.safetensors")
        for k in a:
            torch.testing.assert_close(a[k], b[k], atol=5e-4, rtol=0, msg=k)
        a = _tensors(tmp_path / "ddp" / ckpt, "backbone.safetensors")
        b = _tensors(single.run_dir / ckpt, "backbone.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
@pytest.mark.parametrize("frozen", [False, True], ids=["full", "frozen-per-view"])
def test_cuda_bf16_channels_last_and_compile_smoke(tmp_path, frozen):
    """bf16 autocast, channels-last and torch.compile on a GPU: a short run gives finite losses
    and a checkpoint that extracts. Skipped without CUDA."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    settings = {**FROZEN, "augment": "cifar10", "hflip": 0.5, "device": "cuda", "compile": True, "epochs": 1}
    if not frozen:
        settings.update(freeze_backbone=False, neck_dims=())
    result = finetune(FinetuneConfig(out=str(tmp_path / "run"), **settings))
    assert all(np.isfinite(r["total"]) and np.isfinite(r["val_loss"]) for r in result.history)
    from fewshot.pipeline import extract_to_file

    res = extract_to_file(
        tmp_path / "f.npz", dataset="digits", checkpoint=result.best, device="cuda", use_cache=False, progress=False
    )
    assert res.n == 896 and res.dim == 8
