"""fewshot.backbones: the registered few-shot backbones, create_backbone with local weights and
the hub (offline: nothing downloads). Everything runs on the CPU."""

from __future__ import annotations

import inspect
import os

import pytest
import timm
import torch
from safetensors.torch import save_file

from fewshot.backbones import Conv4, FewShotResNet12, ResNet12, _hub, create_backbone
from fewshot.backbones.weights import load_weights, state_dict_sha256
from fewshot.features.cache import model_identity

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


@pytest.mark.parametrize(
    ("name", "cls"),
    [("conv4", Conv4), ("resnet12", ResNet12), ("resnet12_narrow", ResNet12), ("resnet12_fsl", FewShotResNet12)],
)
def test_cache_identity_names_the_package(name, cls):
    # fewshot.features.model_identity records the class path in every feature cache key: it is
    # the public one (fewshot.backbones.<Class>), the path before fewshot/backbones.py became a
    # package, so caches stay valid; the class itself keeps its real module (inspect works).
    model = timm.create_model(name, **({"width": 4} if cls is Conv4 else {"widths": (4, 4, 8, 8)}))
    assert type(model) is cls and type(model).__module__.startswith("fewshot.backbones.")
    assert model_identity(model)["class"] == f"fewshot.backbones.{cls.__name__}"
    assert "class " + cls.__name__ in inspect.getsource(cls)


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
    with pytest.raises(
        ValueError, match=r"1 missing keys \(stages\.0\.conv\.weight\).*1 unexpected keys \(extra\.weight\)"
    ):
        create_backbone("conv4", path, width=8)
    report = load_weights(_tiny(), path, strict=False)
    assert report.missing == ("stages.0.conv.weight",) and report.unexpected == ("extra.weight",)

    wide = tmp_path / "wide.safetensors"
    save_file(create_backbone("conv4", width=16).state_dict(), str(wide))
    with pytest.raises(
        ValueError, match=r"20 shape mismatches \(file vs model\): stages\.0\.bn\.bias \(16,\) vs \(8,\)"
    ):
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


def _conv4_pool_after_relu(model: Conv4, x: torch.Tensor) -> torch.Tensor:
    """Conv-4's forward in the published order, conv -> BN -> ReLU -> max-pool (functional)."""
    import torch.nn.functional as F

    for block in model.stages:
        bn = block.bn
        x = F.conv2d(x, block.conv.weight, padding=1)
        x = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, training=True, momentum=bn.momentum)
        x = F.max_pool2d(F.relu(x), 2)
    return x.mean(dim=(2, 3))


@pytest.mark.parametrize("channels_last", [False, True])
def test_conv4_relu_after_pool_is_exactly_the_published_order(channels_last):
    # Conv-4 runs ReLU after the max-pool (cheaper); values, gradients and BN running
    # statistics must be bitwise those of conv -> BN -> ReLU -> pool.
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = create_backbone("conv4", width=16, seed=3).train().to(memory_format=fmt)
    reference = create_backbone("conv4", width=16, seed=3).train().to(memory_format=fmt)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 32, 32, generator=g).contiguous(memory_format=fmt)
    x[:2] = -x[:2].abs()  # images whose first-block windows are mostly all-negative
    weights = torch.randn(6, 16, generator=g)
    out, ref = model(x), _conv4_pool_after_relu(reference, x)
    assert torch.equal(out, ref)
    (out * weights).sum().backward()
    (ref * weights).sum().backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert torch.equal(p.grad, q.grad), name
    for (name, b), c in zip(model.named_buffers(), reference.buffers()):
        if not name.endswith("num_batches_tracked"):  # F.batch_norm does not count
            assert torch.equal(b, c), name
