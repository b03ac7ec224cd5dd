"""Backbones, weights loading, preprocessing, heads and checkpoints (fewshot.models,
fewshot.backbones, fewshot.checkpoint). Everything runs on the CPU; nothing downloads."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from fewshot import checkpoint as ckpt
from fewshot.backbones import _hub
from fewshot.heads import ClassificationHead, ProjectionHead, head_from_config
from fewshot.backbones import create_backbone
from fewshot.backbones.weights import load_weights, state_dict_sha256
from fewshot.transforms import Preprocessing, eval_transform, resolve_preprocessing, train_transform

REGISTERED = ("conv4", "resnet12", "resnet12_narrow")
DIMS = {"conv4": 64, "resnet12": 640, "resnet12_narrow": 256}


def _tiny(seed: int = 0) -> torch.nn.Module:
    return create_backbone("conv4", width=8, seed=seed)


def _equal_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", REGISTERED)
def test_registered_in_timm(name):
    assert name in timm.list_models()
    model = timm.create_model(name, num_classes=0)
    cfg = timm.data.resolve_data_config({}, model=model)
    assert cfg["input_size"] == (3, 84, 84)
    assert cfg["crop_pct"] == 1.0
    assert cfg["interpolation"] == "bilinear"


@pytest.mark.parametrize("name", REGISTERED)
def test_registered_backbones_pool_to_num_features(name):
    model = create_backbone(name, seed=0).eval()
    assert model.num_features == DIMS[name]
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, DIMS[name])
        for size in (32, 84):
            feats = model.forward_features(torch.randn(1, 3, size, size))
            assert feats.shape == (1, DIMS[name], size // 16, size // 16)
            assert model.forward_head(feats).shape == (1, DIMS[name])


def test_registered_classifier_plumbing():
    model = timm.create_model("resnet12", num_classes=5, widths=(4, 4, 8, 8), drop_rate=0.1)
    assert model.num_features == 8
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    pre = model.forward_head(model.forward_features(torch.randn(2, 3, 32, 32)), pre_logits=True)
    assert pre.shape == (2, 8)
    model.reset_classifier(0)
    assert model.get_classifier().__class__.__name__ == "Identity"
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 8)
    with pytest.raises(ValueError, match="widths must be 4"):
        timm.create_model("resnet12", widths=(8, 8))


def test_timm_model_gives_pooled_prelogits():
    model = create_backbone("resnet10t").eval()
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, model.num_features)


def test_unknown_name_suggests_close_names():
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet19'.*did you mean.*resnet18"):
        create_backbone("resnet19")
    with pytest.raises(ValueError, match=r"did you mean.*resnet12"):
        create_backbone("resnet-12")


def test_num_classes_refused():
    with pytest.raises(ValueError, match="num_classes=0"):
        create_backbone("conv4", num_classes=10)


def test_seed_is_reproducible_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b = _tiny(seed=3), _tiny(seed=3)
    assert torch.equal(state, torch.get_rng_state())
    assert _equal_state(a, b)
    assert not _equal_state(a, _tiny(seed=4))
    assert state_dict_sha256(a) == state_dict_sha256(b) != state_dict_sha256(_tiny(seed=4))


# --------------------------------------------------------------------------- local weights


def _with_classifier(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    state = dict(model.state_dict())
    state["fc.weight"] = torch.randn(10, model.num_features)
    state["fc.bias"] = torch.zeros(10)
    return state


def test_pretrained_from_safetensors_drops_classifier(tmp_path):
    source = _tiny(seed=1)
    path = tmp_path / "w.safetensors"
    save_file(_with_classifier(source), str(path))
    model = create_backbone("conv4", path, width=8)
    assert _equal_state(model, source)


@pytest.mark.parametrize("wrap", ["bare", "state_dict", "model", "ddp", "compiled"])
def test_pretrained_from_pth(tmp_path, wrap):
    source = _tiny(seed=2)
    state = _with_classifier(source)
    obj = {
        "bare": state,
        "state_dict": {"state_dict": state, "epoch": 7},
        "model": {"model": state, "optimizer": {"lr": 0.1}},
        "ddp": {f"module.{k}": v for k, v in state.items()},
        "compiled": {f"_orig_mod.{k}": v for k, v in state.items()},
    }[wrap]
    path = tmp_path / "w.pth"
    torch.save(obj, path)
    assert _equal_state(create_backbone("conv4", path, width=8), source)


class _Payload:
    """Unpickling this would create a directory: torch.load(weights_only=True) must refuse."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_malicious_pth_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": _tiny().state_dict(), "x": _Payload(str(marker))}, path)
    with pytest.raises(ValueError, match=r"refusing to load .*evil\.pth.*weights_only=True"):
        create_backbone("conv4", path, width=8)
    assert not marker.exists()


def test_weights_that_do_not_match_are_reported(tmp_path):
    path = tmp_path / "other.safetensors"
    state = dict(_tiny().state_dict())
    del state["stages.0.conv.weight"]
    state["extra.weight"] = torch.zeros(3)
    save_file(state, str(path))
    with pytest.raises(ValueError, match=r"1 missing keys \(stages\.0\.conv\.weight\).*1 unexpected keys \(extra\.weight\)"):
        create_backbone("conv4", path, width=8)
    report = load_weights(_tiny(), path, strict=False)
    assert report.missing == ("stages.0.conv.weight",) and report.unexpected == ("extra.weight",)

    wide = tmp_path / "wide.safetensors"
    save_file(create_backbone("conv4", width=16).state_dict(), str(wide))
    with pytest.raises(ValueError, match=r"20 shape mismatches \(file vs model\): stages\.0\.bn\.bias \(16,\) vs \(8,\)"):
        create_backbone("conv4", wide, width=8)


def test_bad_weights_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        create_backbone("conv4", tmp_path / "missing.safetensors")
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"unknown weights format 'w\.npz'"):
        create_backbone("conv4", tmp_path / "w.npz")
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00garbage")
    with pytest.raises(ValueError, match="cannot read safetensors file"):
        create_backbone("conv4", tmp_path / "broken.safetensors")
    (tmp_path / "broken.pth").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read weights file"):
        create_backbone("conv4", tmp_path / "broken.pth")
    torch.save({"epoch": 3}, tmp_path / "nostate.pth")
    with pytest.raises(ValueError, match="holds no state dict"):
        create_backbone("conv4", tmp_path / "nostate.pth")


# --------------------------------------------------------------------------- hub


def test_hub_refused_when_offline_env(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(timm, "create_model", _no_download)
    with pytest.raises(ConnectionError, match=r"HF_HUB_OFFLINE is set.*pass a local weights file"):
        create_backbone("resnet10t", "hub")


def _no_download(*args, **kwargs):
    raise AssertionError("the hub must not be contacted in this test")


def test_hub_refused_when_unreachable(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TIMM_OFFLINE", raising=False)
    monkeypatch.setattr(_hub, "_reachable", lambda url, timeout=3.0: False)
    monkeypatch.setattr(timm, "create_model", _no_download)
    with pytest.raises(ConnectionError, match=r"huggingface\.co.* unreachable.*pass a local weights file"):
        create_backbone("resnet10t", "hub")


def test_hub_download_failure_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TIMM_OFFLINE", raising=False)
    monkeypatch.setattr(_hub, "_reachable", lambda url, timeout=3.0: True)

    def failing(name, pretrained=False, **kwargs):
        raise OSError("Name or service not known\nmore detail")

    monkeypatch.setattr(timm, "create_model", failing)
    with pytest.raises(ConnectionError, match=r"download failed: OSError: Name or service not known\).*weights file"):
        create_backbone("resnet10t", "hub")


def test_hub_for_model_without_weights():
    with pytest.raises(ValueError, match="'conv4' has no pretrained weights on the hub"):
        create_backbone("conv4", "hub")


# --------------------------------------------------------------------------- preprocessing


def test_preprocessing_from_backbone_and_overrides():
    model = create_backbone("resnet10t")
    pp = resolve_preprocessing(model)
    cfg = timm.data.resolve_data_config({}, model=model)
    assert pp.input_size == tuple(cfg["input_size"]) and pp.crop_pct == cfg["crop_pct"]
    assert pp.interpolation == cfg["interpolation"] and pp.mean == tuple(cfg["mean"])
    small = resolve_preprocessing(model, img_size=32, crop_pct=1.0)
    assert small.input_size == (3, 32, 32) and small.crop_pct == 1.0
    assert resolve_preprocessing(model, img_size=(40, 48)).img_size == (40, 48)
    with pytest.raises(ValueError, match="img_size must be a positive int"):
        resolve_preprocessing(model, img_size=0)
    with pytest.raises(ValueError, match=r"crop_pct must be in \(0, 1\], got 1.5"):
        resolve_preprocessing(model, crop_pct=1.5)


def test_preprocessing_json_round_trip():
    pp = resolve_preprocessing(create_backbone("resnet10t"), img_size=84)
    again = Preprocessing.from_dict(json.loads(json.dumps(pp.to_dict())))
    assert again == pp
    with pytest.raises(ValueError, match=r"missing \['mean'\], unknown \['colour'\]"):
        Preprocessing.from_dict({**{k: v for k, v in pp.to_dict().items() if k != "mean"}, "colour": 1})
    with pytest.raises(ValueError, match="mean and std need 3 values"):
        Preprocessing((3, 8, 8), "bilinear", (0.5,), (0.5,))


@pytest.mark.parametrize("size", [8, 32, 84])
def test_small_inputs_are_resized_to_the_model_input(size):
    pp = resolve_preprocessing(create_backbone("conv4", width=8))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8))
    x = eval_transform(pp)(image)
    assert x.shape == (3, 84, 84) and x.dtype == torch.float32
    u = eval_transform(pp, normalize=False)(image)
    assert u.shape == (3, 84, 84) and u.dtype == torch.uint8
    mean, std = torch.tensor(pp.mean).view(3, 1, 1), torch.tensor(pp.std).view(3, 1, 1)
    assert torch.equal(u.float().div(255).sub(mean).div(std), x)


def test_train_transform_autoaugment_views():
    pp = resolve_preprocessing(create_backbone("conv4", width=8), img_size=32)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    tf = train_transform(pp, views=2)
    torch.manual_seed(0)
    a, b = tf(image)
    assert a.shape == b.shape == (3, 32, 32) and a.dtype == torch.float32
    assert "AutoAugment" in repr(tf)
    single = train_transform(pp, policy="cifar10", scale=(0.5, 1.0))
    assert single(image).shape == (3, 32, 32)
    with pytest.raises(ValueError, match="unknown AutoAugment policy 'rand'"):
        train_transform(pp, policy="rand")


# --------------------------------------------------------------------------- heads


def test_heads_shapes_config_and_seed():
    head = ClassificationHead(16, 5, dropout=0.1, seed=0)
    assert head(torch.randn(4, 16)).shape == (4, 5)
    proj = ProjectionHead(16, out_features=8, seed=0)
    assert proj(torch.randn(4, 16)).shape == (4, 8)
    assert _equal_state(proj, ProjectionHead(16, out_features=8, seed=0))
    rebuilt = head_from_config("ProjectionHead", proj.config())
    assert rebuilt.config() == proj.config()
    assert ProjectionHead(16, 8, num_layers=1).mlp[0].out_features == 8
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        ClassificationHead(16, 5, dropout=1.0)
    with pytest.raises(ValueError, match="unknown head type 'Mlp'"):
        head_from_config("Mlp", {})


# --------------------------------------------------------------------------- checkpoints


def _save(directory, backbone=None, **kwargs):
    backbone = backbone if backbone is not None else _tiny(seed=5)
    pp = resolve_preprocessing(backbone, img_size=32)
    kwargs.setdefault("backbone_kwargs", {"width": 8})
    return ckpt.save_checkpoint(directory, backbone, backbone_name="conv4", preprocessing=pp, **kwargs), backbone, pp


def test_checkpoint_round_trip(tmp_path):
    heads = {"classifier": ClassificationHead(8, 4, 0.1, seed=1), "projection": ProjectionHead(8, 6, seed=2)}
    directory, backbone, pp = _save(
        tmp_path / "best", heads=heads, config={"lr": 1e-4}, extra={"epoch": 3}, files={"optimizer.pt": b"opt"}
    )
    assert sorted(p.name for p in directory.iterdir()) == [
        "backbone.safetensors", "checkpoint.json", "heads.safetensors", "optimizer.pt"
    ]
    rng = torch.get_rng_state()
    loaded, pp2, meta = ckpt.load_checkpoint(directory)
    assert torch.equal(rng, torch.get_rng_state())
    assert _equal_state(loaded, backbone) and pp2 == pp
    assert meta["backbone"]["name"] == "conv4" and meta["backbone"]["num_features"] == 8
    assert meta["config"] == {"lr": 1e-4} and meta["extra"] == {"epoch": 3}
    assert meta["files"]["optimizer.pt"] == __import__("hashlib").sha256(b"opt").hexdigest()
    assert ckpt.read_checkpoint_file(directory, "optimizer.pt") == b"opt"
    with pytest.raises(FileNotFoundError, match=r"has no file 'rng.pt' \(it has \['optimizer.pt'\]\)"):
        ckpt.read_checkpoint_file(directory, "rng.pt")
    rebuilt = ckpt.load_heads(directory)
    assert set(rebuilt) == set(heads) and all(_equal_state(rebuilt[k], heads[k]) for k in heads)
    into = {"classifier": ClassificationHead(8, 4), "projection": ProjectionHead(8, 6)}
    ckpt.load_heads(directory, into)
    assert _equal_state(into["classifier"], heads["classifier"])
    # the backbone alone: readable without any fewshot code
    from safetensors.torch import load_file

    assert set(load_file(str(directory / "backbone.safetensors"))) == set(backbone.state_dict())


def test_checkpoint_of_registered_resnet12_with_kwargs(tmp_path):
    backbone = create_backbone("resnet12", widths=(4, 4, 8, 8), seed=0)
    pp = resolve_preprocessing(backbone)
    ckpt.save_checkpoint(
        tmp_path / "r12", backbone, backbone_name="resnet12", backbone_kwargs={"widths": [4, 4, 8, 8]},
        preprocessing=pp,
    )
    loaded, pp2, meta = ckpt.load_checkpoint(tmp_path / "r12")
    assert meta["backbone"]["name"] == "resnet12" and loaded.num_features == 8
    assert _equal_state(loaded, backbone) and pp2 == pp and pp2.input_size == (3, 84, 84)


def test_checkpoint_replaced_atomically(tmp_path):
    directory, first, _ = _save(tmp_path / "last", extra={"epoch": 1})
    _save(tmp_path / "last", _tiny(seed=9), extra={"epoch": 2})
    loaded, _, meta = ckpt.load_checkpoint(directory)
    assert meta["extra"] == {"epoch": 2} and _equal_state(loaded, _tiny(seed=9))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # no temporary leftovers


def test_checkpoint_refuses_to_replace_other_directories(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.txt").write_text("keep")
    with pytest.raises(ValueError, match="refusing to replace .*data: it exists and is not a checkpoint"):
        _save(tmp_path / "data")
    assert (tmp_path / "data" / "precious.txt").read_text() == "keep"


def test_checkpoint_save_failure_leaves_old_checkpoint(tmp_path):
    directory, first, _ = _save(tmp_path / "ck", extra={"epoch": 1})
    with pytest.raises(TypeError):
        _save(tmp_path / "ck", extra={"epoch": object()})
    _, _, meta = ckpt.load_checkpoint(directory)
    assert meta["extra"] == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_checkpoint_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint directory not found"):
        ckpt.load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"not a checkpoint directory \(no checkpoint.json\)"):
        ckpt.load_checkpoint(tmp_path / "empty")
    directory, _, _ = _save(tmp_path / "ck")
    raw = bytearray((directory / "backbone.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (directory / "backbone.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="backbone.safetensors is corrupted"):
        ckpt.load_checkpoint(directory)
    (directory / "checkpoint.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot parse"):
        ckpt.load_checkpoint(directory)
    with pytest.raises(ValueError, match="bad extra file name"):
        _save(tmp_path / "ck2", files={"checkpoint.json": b""})
