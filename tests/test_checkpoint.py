"""fewshot.checkpoint: saving and loading a backbone with its preprocessing and heads, atomically.

Everything runs on the CPU; nothing downloads."""

from __future__ import annotations

import pytest
import torch

from fewshot import checkpoint as ckpt
from fewshot.backbones import create_backbone
from fewshot.heads import ClassificationHead, ProjectionHead
from fewshot.transforms import resolve_preprocessing


def _tiny(seed: int = 0) -> torch.nn.Module:
    return create_backbone("conv4", width=8, seed=seed)


def _equal_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


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
        "backbone.safetensors",
        "checkpoint.json",
        "heads.safetensors",
        "optimizer.pt",
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
        tmp_path / "r12",
        backbone,
        backbone_name="resnet12",
        backbone_kwargs={"widths": [4, 4, 8, 8]},
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
