"""Fine-tuning: config, data order, every objective end to end, resume, bad input (CPU, tiny models)."""

from __future__ import annotations

import json
import logging
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
from fewshot.training.loop import FinetuneNet, make_optimizer, make_scheduler
from fewshot.training.runner import TEST_EXIT_ENV
from fewshot.training.sampling import TrainBatchSampler, TwoViews, ValBatchSampler, holdout_split

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
        backbone="conv4",
        backbone_kwargs={"width": 8},
        dataset="colours",
        out=str(out),
        img_size=16,
        epochs=3,
        batch_size=16,
        lr=1e-2,
        augment="cifar10",
        threads=1,
        progress=False,
        val_fraction=0.2,
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


@pytest.mark.parametrize("name", ["papers.toml", "beit3-base.toml"])
def test_recipe_files_load_and_validate(name):
    config = load_config(ROOT / "configs" / name, backbone="beit3_base_patch16_224", dataset="digits", out="x")
    config.validate()
    if name == "papers.toml":
        assert (config.optimizer, config.lr, config.weight_decay, config.batch_size, config.dropout) == (
            "adam",
            1e-4,
            0.05,
            1024,
            0.1,
        )
        assert (config.lam, config.temperature, config.epochs, config.patience) == (0.9, 0.5, 100, 10)
    else:
        assert (config.layer_decay, config.lr, config.epochs, config.warmup_epochs, config.drop_path) == (
            0.65,
            7e-4,
            50,
            5,
            0.15,
        )
        assert (config.mixup, config.cutmix, config.smoothing) == (0.8, 1.0, 0.1)


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


DIGITS_YAML = """\
finetune:
  backbone: conv4
  dataset: digits
  img-size: 16
  epochs: 2
  batch_size: 128
  lr: 3.0e-3
  threads: 1
  progress: false
  backbone_kwargs:
    width: 8
"""


def test_yaml_config_loads_to_the_same_config_as_the_toml(tmp_path):
    pytest.importorskip("yaml")
    (tmp_path / "c.toml").write_text(DIGITS_TOML)
    (tmp_path / "c.yml").write_text(DIGITS_YAML)
    toml = load_config(tmp_path / "c.toml", out="r", lam=0.5)
    yaml = load_config(tmp_path / "c.yml", out="r", lam=0.5)
    assert yaml == toml and yaml.to_dict() == toml.to_dict()
    assert (yaml.batch_size, yaml.lr, yaml.backbone_kwargs, yaml.progress, yaml.lam) == (
        128,
        3e-3,
        {"width": 8},
        False,
        0.5,
    )
    assert load_config(tmp_path / "c.yml", out="r") != toml  # the override did something
    (tmp_path / "bad.yaml").write_text("backbone: [conv4\n")
    with pytest.raises(ValueError, match=r"cannot parse .*bad\.yaml"):
        load_config(tmp_path / "bad.yaml")


def test_yaml_config_without_pyyaml_names_the_missing_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)  # `import yaml` raises ImportError, installed or not
    (tmp_path / "c.yaml").write_text("backbone: conv4\n")
    with pytest.raises(ValueError, match=r"reading c\.yaml needs PyYAML, which is not a dependency of fewshot"):
        load_config(tmp_path / "c.yaml")


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
    from fewshot.transforms import Preprocessing, train_transform

    pp = Preprocessing((3, 16, 16), "bilinear", (0.5,) * 3, (0.25,) * 3)
    data = TwoViews(ColourSplit(), np.arange(10, 20), train_transform(pp))
    a, label, instance = data[(3, 77)]
    torch.rand(100)  # whatever the global RNG did in between
    b, _, _ = data[(3, 77)]
    c, _, _ = data[(3, 78)]
    assert a.shape == (2, 3, 16, 16) and (label, instance) == (0, 13)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])


def _lrs(total, warmup, kind, steps=None, **kw):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(opt, total, warmup, kind, **kw)
    out = []
    for t in range(steps or total):
        out.append(opt.param_groups[0]["lr"])
        sched.step_update(num_updates=t + 1)
    return out


def test_lr_schedule_is_timms_warmup_then_cosine():
    cosine = _lrs(100, 0, "cosine")
    assert cosine[0] == 1.0 and cosine[50] == pytest.approx(0.5)
    assert cosine == pytest.approx([0.5 * (1 + np.cos(np.pi * t / 100)) for t in range(100)], rel=1e-12, abs=1e-15)
    warm = _lrs(100, 4, "cosine", warmup_lr=0.0)
    assert warm[:5] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert warm[4 + 48] == pytest.approx(0.5)  # the cosine runs over the 96 steps after the warm-up
    assert _lrs(100, 4, "constant", warmup_lr=0.0)[70] == 1.0
    assert _lrs(10, 0, "cosine", steps=12, min_lr=0.1)[-2:] == [0.1, 0.1]


def _net(backbone):
    from fewshot.heads import ClassificationHead, ProjectionHead

    return FinetuneNet(backbone, ClassificationHead(backbone.num_features, 3), ProjectionHead(backbone.num_features, 4))


def _decay_of(net, opt):
    ids = {id(p): n for n, p in net.named_parameters()}
    return {ids[id(p)]: (g["weight_decay"], g.get("lr_scale", 1.0)) for g in opt.param_groups for p in g["params"]}


@pytest.mark.parametrize("opt_name", ["adamw", "adam", "sgd", "lamb"])
def test_weight_decay_groups_of_a_vit_exclude_its_no_weight_decay_set(opt_name):
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", img_size=32, depth=2, num_classes=0)
    assert {"cls_token", "pos_embed"} <= set(vit.no_weight_decay())
    net = _net(vit)
    opt = make_optimizer(net, 1e-3, 0.05, opt=opt_name)
    assert type(opt).__name__.lower() == {"adamw": "adamw", "adam": "adam", "sgd": "sgd", "lamb": "lamb"}[opt_name]
    wd = {n: d for n, (d, _) in _decay_of(net, opt).items()}
    assert wd["backbone.cls_token"] == wd["backbone.pos_embed"] == 0.0  # 3-D, excluded by no_weight_decay()
    assert wd["backbone.blocks.0.norm1.weight"] == wd["backbone.blocks.0.attn.qkv.bias"] == 0.0
    assert wd["classifier.fc.bias"] == wd["projection.mlp.0.bias"] == 0.0
    assert wd["backbone.patch_embed.proj.weight"] == wd["backbone.blocks.1.mlp.fc1.weight"] == 0.05
    assert wd["classifier.fc.weight"] == wd["projection.mlp.2.weight"] == 0.05
    assert len(wd) == len(list(net.parameters()))


def _reference_updates(opt_name, groups, params, grads_per_step):
    """float64 loop of torch's AdamW / Adam (L2 decay) / SGD (Nesterov momentum) updates."""
    out = []
    for group, p0 in zip(groups, params):
        p, m, v, buf = p0.double().clone(), 0.0, 0.0, None
        lr, wd = group["lr"], group["weight_decay"]
        for t, grads in enumerate(grads_per_step, start=1):
            g = grads[len(out)].double()
            if opt_name == "sgd":
                g = g + wd * p
                buf = g.clone() if buf is None else group["momentum"] * buf + g
                p = p - lr * (g + group["momentum"] * buf)
                continue
            b1, b2 = group["betas"]
            if opt_name == "adamw":
                p = p * (1 - lr * wd)
            else:
                g = g + wd * p
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            p = p - lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + group["eps"])
        out.append(p)
    return out


@pytest.mark.parametrize("opt_name", ["adamw", "adam", "sgd"])
def test_fused_optimizers_match_a_float64_reference(opt_name):
    from fewshot.backbones import create_backbone
    from fewshot.training.loop import FUSED_OPTIMIZERS

    net = _net(create_backbone("conv4", width=4, seed=0))
    opt = make_optimizer(net, 1e-2, 0.05, opt=opt_name)
    assert opt_name in FUSED_OPTIMIZERS and opt.defaults["fused"] is True
    flat = [(group, p) for group in opt.param_groups for p in group["params"]]
    start = [p.detach().clone() for _, p in flat]
    g = torch.Generator().manual_seed(0)
    steps = [[torch.randn(p.shape, generator=g) for _, p in flat] for _ in range(3)]
    for grads in steps:
        for (_, p), grad in zip(flat, grads):
            p.grad = grad.clone()
        opt.step()
    want = _reference_updates(opt_name, [group for group, _ in flat], start, steps)
    for (_, p), w in zip(flat, want):
        torch.testing.assert_close(p.detach().double(), w, rtol=1e-5, atol=1e-6)


def test_lamb_is_not_fused():
    from fewshot.backbones import create_backbone

    net = _net(create_backbone("conv4", width=4, seed=0))
    assert not make_optimizer(net, 1e-3, 0.05, opt="lamb").defaults.get("fused")


def test_weight_decay_groups_of_a_resnet_and_layer_decay():
    import timm

    net = _net(timm.create_model("resnet18", num_classes=0))
    groups = _decay_of(net, make_optimizer(net, 1e-3, 0.05))
    assert groups["backbone.conv1.weight"][0] == groups["backbone.layer4.1.conv2.weight"][0] == 0.05
    assert groups["backbone.bn1.weight"][0] == groups["backbone.layer1.0.bn2.bias"][0] == 0.0
    # layer decay: timm's resnet groups are stem, layer1..4 (one group per block when fine)
    groups = _decay_of(net, make_optimizer(net, 1e-3, 0.05, layer_decay=0.5))
    scale = {n: s for n, (_, s) in groups.items()}
    assert (
        scale["classifier.fc.weight"]
        == scale["projection.mlp.0.weight"]
        == scale["backbone.layer4.1.conv2.weight"]
        == 1.0
    )
    assert scale["backbone.layer4.0.conv1.weight"] == 0.5
    assert scale["backbone.conv1.weight"] == 0.5**8  # stem + 8 basic blocks, heads with the last
    assert groups["backbone.bn1.weight"][0] == 0.0 and groups["backbone.conv1.weight"][0] == 0.05


def test_layer_decay_reaches_the_learning_rates_through_timms_scheduler():
    from fewshot.backbones import create_backbone

    net = _net(create_backbone("conv4", width=4))
    opt = make_optimizer(net, 1.0, 0.0, layer_decay=0.5)
    make_scheduler(opt, 10, 0, "constant")
    lrs = {round(g["lr"], 6) for g in opt.param_groups}
    assert lrs == {1.0, 0.5, 0.25, 0.125}  # conv4: four stages, heads with the last


def test_mixup_mixes_the_ce_term_only_and_the_contrastive_term_sees_clean_views():
    from fewshot.backbones import create_backbone
    from fewshot.losses import create_objective
    from fewshot.training.loop import _numpy_seeded, compute_loss, make_mixup

    net = _net(create_backbone("conv4", width=4, seed=0)).eval()  # eval: BatchNorm independent of the batch
    objective = create_objective("supcon", lam=0.5)
    g = torch.Generator().manual_seed(0)
    views, labels, ids = torch.randn(4, 2, 3, 16, 16, generator=g), torch.tensor([0, 1, 2, 0]), torch.arange(4)
    mixup = make_mixup(3, mixup=1.0, cutmix=1.0, smoothing=0.1)
    before = np.random.get_state()[1].copy()
    with _numpy_seeded(7):
        out = compute_loss(net, objective, views, labels, ids, mixup=mixup)
    assert np.array_equal(np.random.get_state()[1], before)  # numpy's global RNG is restored
    x, y = views.flatten(0, 1), labels.repeat_interleave(2)
    with _numpy_seeded(7):
        mixed, soft = mixup(x.clone(), y)
    assert not torch.equal(mixed, x) and soft.shape == (8, 3) and not torch.equal(soft.argmax(1), soft.argmin(1))
    logits, _ = net(mixed)
    _, clean = net(x)
    ce = -(soft * torch.log_softmax(logits, 1)).sum(1).mean()
    torch.testing.assert_close(out.ce, ce)
    torch.testing.assert_close(out.contrastive, objective(net(x)[0], clean, y).contrastive)


def test_training_views_are_framed_like_extraction_at_crop_pct():
    from fewshot.transforms import Preprocessing, eval_transform, frame_transform, train_transform

    pp = Preprocessing((3, 24, 24), "bilinear", (0.5,) * 3, (0.5,) * 3, crop_pct=0.75)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8))
    framed = np.asarray(frame_transform(pp)(image))
    assert framed.shape == (24, 24, 3)
    np.testing.assert_array_equal(framed, eval_transform(pp, normalize=False)(image).permute(1, 2, 0).numpy())
    first = train_transform(pp).transforms[0]
    np.testing.assert_array_equal(np.asarray(first(image)), framed)


def test_crop_pct_is_recorded_in_the_checkpoint_and_reused_by_extraction(tmp_path):
    result = finetune(tiny_config(tmp_path / "run", epochs=1, objective="ce", crop_pct=0.5), split=ColourSplit())
    _, pp, meta = load_checkpoint(result.best)
    assert pp.crop_pct == 0.5 and meta["config"]["crop_pct"] == 0.5


def test_pretrained_file_is_converted_and_reported_and_drop_path_reaches_timm(tmp_path, monkeypatch):
    import timm

    vit = {"img_size": 16, "patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2}
    src = timm.create_model("vit_tiny_patch16_224", num_classes=0, **vit)
    path = tmp_path / "dino.pth"
    torch.save({"teacher": {f"backbone.{k}": v for k, v in src.state_dict().items()}}, path)
    seen = []
    create = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: seen.append(k) or create(*a, **k))
    config = tiny_config(
        tmp_path / "run",
        backbone="vit_tiny_patch16_224",
        backbone_kwargs=vit,
        epochs=1,
        pretrained=str(path),
        drop_path=0.1,
        objective="ce",
    )
    finetune(config, split=ColourSplit())
    report = json.loads((tmp_path / "run" / "manifest.json").read_text())["run"]["pretrained_load"]
    assert report["converted"][:2] == ["wrapper 'teacher'", "prefix 'backbone.'"]
    assert report["missing"] == report["unexpected"] == []
    assert seen[0]["drop_path_rate"] == 0.1
    assert "drop_path_rate" not in read_checkpoint_meta(tmp_path / "run" / "best")["backbone"].get("kwargs", {})


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
    runs = [
        finetune(tiny_config(tmp_path / f"w{w}", epochs=1, objective="simclr", num_workers=w), split=ColourSplit())
        for w in (0, 2)
    ]
    a, b = (load_file(r.last / "backbone.safetensors") for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0].history[0]["val_loss"] == runs[1].history[0]["val_loss"]


def test_log_manifest_and_checkpoint_layout(tmp_path):
    from safetensors.torch import save_file

    from fewshot._io import sha256_file
    from fewshot.backbones import create_backbone

    weights = tmp_path / "init.safetensors"
    save_file(create_backbone("conv4", width=8, seed=7).state_dict(), str(weights))
    result = finetune(tiny_config(tmp_path / "run", epochs=2, pretrained=str(weights)), split=ColourSplit())
    run = result.run_dir
    assert sorted(p.name for p in run.iterdir()) == ["best", "last", "log.jsonl", "manifest.json"]
    assert sorted(p.name for p in result.last.iterdir()) == [
        "backbone.safetensors",
        "checkpoint.json",
        "heads.safetensors",
        "training_state.pt",
    ]
    assert sorted(p.name for p in result.best.iterdir()) == [
        "backbone.safetensors",
        "checkpoint.json",
        "heads.safetensors",
    ]
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
        Trainer,
        "validate",
        lambda self: {"val_loss": next(scripted), "val_ce": 0.0, "val_contrastive": 0.0, "val_acc": 0.0},
    )
    result = finetune(tiny_config(tmp_path / "run", epochs=5, patience=2, objective="ce"), split=ColourSplit())
    assert result.stopped_early and result.epochs == 4
    assert result.best_epoch == 2 and result.best_val_loss == 2.0
    assert [r["best"] for r in result.history] == [True, True, False, False]
    assert read_checkpoint_meta(result.best)["extra"]["epoch"] == 2
    # resuming a finished run does nothing
    again = finetune(
        tiny_config(tmp_path / "run", epochs=5, patience=2, objective="ce"), resume=True, split=ColourSplit()
    )
    assert again.epochs == 4 and again.stopped_early


def test_without_validation_best_is_the_last_epoch(tmp_path):
    result = finetune(tiny_config(tmp_path / "run", epochs=2, val_fraction=0.0, objective="ce"), split=ColourSplit())
    assert result.best_epoch == 2 and result.best_val_loss is None
    assert result.history[-1]["val_loss"] is None
    a = load_file(result.best / "backbone.safetensors")
    b = load_file(result.last / "backbone.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


# timm's recipe components whose state a resumed run must restore: optimiser (LAMB), layer-decay
# lr scales, warm-up + cosine schedule, model EMA, and the seeded Mixup/CutMix draws
RECIPE = dict(optimizer="lamb", layer_decay=0.8, warmup_epochs=1, ema_decay=0.9, mixup=0.4, cutmix=1.0, smoothing=0.1)
RECIPE_FLAGS = [
    "--optimizer",
    "lamb",
    "--layer-decay",
    "0.8",
    "--warmup-epochs",
    "1",
    "--ema-decay",
    "0.9",
    "--mixup",
    "0.4",
    "--cutmix",
    "1.0",
    "--smoothing",
    "0.1",
]


def colour_run(out, recipe: bool = False, resume: bool = False):
    """The run of the resume test: colours (64 training images, 4 steps of 16 per epoch), 2 epochs,
    ``last/`` every 3 steps. Also the entry point of its killed subprocess."""
    config = tiny_config(out, epochs=2, objective="simclr", save_every_steps=3, **(RECIPE if recipe else {}))
    return finetune(config, resume=resume, split=ColourSplit())


def _assert_same_run(killed: Path, whole: Path, epochs: int) -> None:
    for ckpt, name in [(c, n) for c in ("last", "best") for n in ("backbone.safetensors", "heads.safetensors")]:
        a = load_file(killed / ckpt / name)
        b = load_file(whole / ckpt / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    drop = ("time", "images_per_s")
    logs = [
        [
            {k: v for k, v in json.loads(line).items() if k not in drop}
            for line in (run / "log.jsonl").read_text().splitlines()
        ]
        for run in (killed, whole)
    ]
    assert logs[0] == logs[1] and len(logs[0]) == epochs


@pytest.mark.parametrize("recipe", [pytest.param(False, id="default"), pytest.param(True, id="timm-recipe")])
def test_resume_after_kill_matches_uninterrupted_run(tmp_path, caplog, recipe):
    """A run hard-killed mid-epoch 2 (after a mid-epoch checkpoint) and resumed ends bitwise equal."""
    # 4 steps per epoch, last/ every 3 steps and at each epoch's end: die after step 7, with
    # last/ written at step 6 (epoch 2, step 2), so the resumed run redoes steps 3-4 of epoch 2
    code = f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); import test_training as t; t.colour_run(sys.argv[1], {recipe})"
    env = {**os.environ, TEST_EXIT_ENV: "7", "PYTHONPATH": str(ROOT)}
    killed = subprocess.run(
        [sys.executable, "-c", code, tmp_path / "killed"], env=env, capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == 75, killed.stderr
    progress = read_checkpoint_meta(tmp_path / "killed" / "last")["extra"]["progress"]
    assert (progress["epoch"], progress["step"], progress["global_step"]) == (1, 2, 6)

    with caplog.at_level(logging.INFO, logger="fewshot.training"):
        resumed = colour_run(tmp_path / "killed", recipe, resume=True)
    assert f"resuming {tmp_path / 'killed'} at epoch 2, step 2/4" in caplog.messages
    assert resumed.steps == 8 and resumed.epochs == 2
    colour_run(tmp_path / "whole", recipe)
    _assert_same_run(tmp_path / "killed", tmp_path / "whole", epochs=2)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [pytest.param(False, id="default"), pytest.param(True, id="timm-recipe")])
def test_cli_resume_after_kill_matches_uninterrupted_run(tmp_path, run_cli, recipe):
    """The same through ``fewshot finetune`` on digits (killed, ``--resume``, uninterrupted)."""
    config = tmp_path / "c.toml"
    config.write_text(DIGITS_TOML)
    extra = RECIPE_FLAGS if recipe else []
    # digits: 901 base images, 90% for training -> 6 steps of 128 per epoch; die after step 10,
    # with last/ written at step 9 (every 3 steps), in the middle of epoch 2
    env = {**os.environ, TEST_EXIT_ENV: "10", "PYTHONPATH": str(ROOT)}
    killed = subprocess.run(
        [
            sys.executable,
            "-m",
            "fewshot",
            "finetune",
            "--config",
            config,
            "--objective",
            "simclr",
            "--save-every-steps",
            "3",
            "--out",
            tmp_path / "killed",
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == 75, killed.stderr
    progress = read_checkpoint_meta(tmp_path / "killed" / "last")["extra"]["progress"]
    assert (progress["epoch"], progress["step"], progress["global_step"]) == (1, 3, 9)

    status, out, err = run_cli("finetune", "--resume", tmp_path / "killed")
    assert status == 0, err
    assert "resuming" in out and "epoch 2, step 3/6" in out
    status, _, err = run_cli(
        "finetune", "--config", config, "--objective", "simclr", "--out", tmp_path / "whole", *extra
    )
    assert status == 0, err
    _assert_same_run(tmp_path / "killed", tmp_path / "whole", epochs=2)


def test_resume_refuses_a_different_config(tmp_path, run_cli):
    config = tmp_path / "c.toml"
    config.write_text(DIGITS_TOML.replace("epochs = 2", "epochs = 1"))
    status, out, err = run_cli("finetune", "--config", config, "--objective", "ce", "--out", tmp_path / "run")
    assert status == 0, err
    status, _, err = run_cli(
        "finetune", "--resume", tmp_path / "run", "--lr", "0.5", "--temperature", "0.1", "--threads", "2"
    )
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
    status, out, err = run_cli(
        "extract",
        "--checkpoint",
        tmp_path / "run" / "best",
        "--dataset",
        "digits",
        "--out",
        tmp_path / "f.npz",
        "--no-progress",
    )
    assert status == 0, err
    with np.load(tmp_path / "f.npz") as data:
        assert data["features"].shape == (896, 8) and str(data["split"]) == "test"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backbone", "resnet181"], r"unknown backbone 'resnet181'; did you mean .*resnet18"),
        (
            ["--objective", "triplet"],
            r"invalid choice: 'triplet' \(choose from 'ce', 'schane', 'supcon', 'supcon-in', 'simclr', 'hscl'\)",
        ),
        (["--lam", "1.5"], r"lam must be in \[0, 1\], got 1.5"),
        (["--lam", "-0.1"], r"lam must be in \[0, 1\]"),
        (["--temperature", "0"], r"temperature must be a positive number, got 0.0"),
        (["--temperature", "-1"], r"temperature must be a positive number"),
        (["--batch-size", "1"], r"batch_size must be >= 2"),
        (["--split", "val"], r"dataset 'digits' has no split 'val'; it has train, test"),
        (["--dataset", "cifar-fs", "--data-root", "/nonexistent/data"], r"data root not found: /nonexistent/data"),
        (["--dataset", "nope"], r"invalid choice: 'nope'"),
        (["--pretrained", "/nonexistent/w.safetensors"], r"pretrained weights file not found"),
        (["--pretrained", "GARBAGE"], r"cannot read safetensors file"),
        (["--epochs", "0"], r"epochs must be a positive integer"),
        (["--scheduler", "step"], r"invalid choice: 'step'"),
        (["--batch-size", "4096"], r"make no batch of batch_size=4096"),
        (["--device", "cuda"], r"CUDA is not available"),
        (["--projection-dim", "-1"], r"projection_dim must be a non-negative integer"),
        (["--optimizer", "rmsprop"], r"invalid choice: 'rmsprop' \(choose from 'adamw', 'adam', 'sgd', 'lamb'\)"),
        (["--layer-decay", "0"], r"layer_decay must be in \(0, 1\] or None, got 0.0"),
        (["--drop-path", "1"], r"drop_path must be in \[0, 1\), got 1.0"),
        (["--drop-path", "0.1"], r"backbone 'conv4' does not take these arguments \(\['drop_path_rate', 'width'\]\)"),
        (["--crop-pct", "1.5"], r"crop_pct must be in \(0, 1\], got 1.5"),
        (["--smoothing", "0.1"], r"smoothing=0.1 applies to the Mixup/CutMix targets; set mixup or cutmix > 0"),
        (["--mixup-prob", "2"], r"mixup_prob must be a probability in \[0, 1\], got 2.0"),
        (["--ema-decay", "1"], r"ema_decay must be in \[0, 1\), got 1.0"),
        (["--backbone", "resnet18.nope"], r"unknown pretrained tag 'nope' of backbone 'resnet18'; its tags: "),
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


def test_training_and_validation_steps_run_reusing_freed_memory(tmp_path, monkeypatch):
    from fewshot.allocator import _glibc, reuses_freed_memory
    from fewshot.training.loop import FinetuneNet

    seen = []
    forward = FinetuneNet.forward

    def spy(self, x):
        seen.append(reuses_freed_memory())
        return forward(self, x)

    monkeypatch.setattr(FinetuneNet, "forward", spy)
    on = finetune(tiny_config(tmp_path / "on", epochs=1, objective="schane"), split=ColourSplit())
    assert seen and all(seen) == (_glibc() is not None)  # training steps and validation batches
    assert not reuses_freed_memory()
    monkeypatch.setenv("FEWSHOT_REUSE_MEMORY", "0")
    seen.clear()
    off = finetune(tiny_config(tmp_path / "off", epochs=1, objective="schane"), split=ColourSplit())
    assert seen and not any(seen)
    for name in ("backbone.safetensors", "heads.safetensors"):  # where tensors live changes, not values
        assert (on.best / name).read_bytes() == (off.best / name).read_bytes()
