"""BatchNorm folding (fewshot.backbones.fold) against the unfolded network in float64."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import timm
import torch
from test_features import MemorySplit
from torch import nn

from fewshot.backbones import create_backbone, fold_batchnorm, foldable_pairs
from fewshot.features import extract_cached, extract_features
from fewshot.transforms import resolve_preprocessing


def _randomise_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Running statistics and affine parameters far from the identity, so folding is not a no-op."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.2)
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(c, generator=g) * 0.3)
    return model.eval()


def _batch(n=4, size=32, seed=1):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


FAMILIES = [
    ("conv4", {"width": 8}),
    ("resnet12_narrow", {}),
    ("resnet18", {}),
    ("tf_efficientnet_lite0", {}),  # timm's BatchNormAct2d and Conv2dSame
]


@pytest.mark.parametrize("name, kwargs", FAMILIES)
def test_folded_network_computes_the_float64_function(name, kwargs):
    model = _randomise_norms(create_backbone(name, seed=0, **kwargs))
    before = _state(model)
    x = _batch()
    folded = fold_batchnorm(model, x[:2])
    n_norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert n_norms > 0 and len(foldable_pairs(model, x[:2])) == n_norms
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        reference = copy.deepcopy(model).double()(x.double())
        got = folded(x)
    scale = float(reference.abs().max())
    np.testing.assert_allclose(got.double().numpy(), reference.numpy(), rtol=0, atol=1e-5 * scale)
    # the model itself is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == n_norms


class _Tapped(nn.Module):
    """conv -> bn, and the conv's raw output also feeds the result: folding would be wrong."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        z = self.conv(x)
        return (self.bn(z) + z).mean((2, 3))


class _Shared(nn.Module):
    """one conv called twice, each time into its own BatchNorm."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn1, self.bn2 = nn.BatchNorm2d(3), nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn2(self.conv(self.bn1(self.conv(x)))).mean((2, 3))


def test_a_convolution_output_used_elsewhere_is_caught_by_the_check(caplog):
    model = _randomise_norms(_Tapped())
    assert foldable_pairs(model, _batch(2)) == [("conv", "bn")]  # the hooks cannot see the tap
    with caplog.at_level(logging.WARNING, logger="fewshot.backbones.fold"):
        assert fold_batchnorm(model, _batch(2)) is model
    assert "not folding BatchNorm into 1 convolutions of _Tapped" in caplog.text


def test_shared_convs_running_stats_free_norms_and_std_convs_are_not_folded():
    assert foldable_pairs(_randomise_norms(_Shared()), _batch(2)) == []
    free = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)).eval()
    assert fold_batchnorm(free, _batch(2)) is free
    std = nn.Sequential(timm.layers.StdConv2d(3, 4, 3), _randomise_norms(nn.BatchNorm2d(4))).eval()
    assert foldable_pairs(std, _batch(2)) == []


def test_hooked_models_and_training_mode():
    model = _randomise_norms(create_backbone("conv4", width=8, seed=0))
    calls = []
    model.stages[0].bn.register_forward_hook(lambda *a: calls.append(1))
    assert fold_batchnorm(model, _batch(2)) is model and calls == []  # nothing run, hooks kept
    with pytest.raises(ValueError, match="fold_batchnorm needs a model in eval mode, got Conv4 in training mode"):
        fold_batchnorm(model.train(), _batch(2))


def test_extraction_folds_by_default_and_keys_it(tmp_path):
    split = MemorySplit()
    model = _randomise_norms(create_backbone("conv4", width=8, seed=0))
    model.train()
    pp = resolve_preprocessing(model, img_size=32)
    before = _state(model)
    folded, _ = extract_features(model, split, preprocessing=pp, batch_size=5, progress=False)
    plain, _ = extract_features(model, split, preprocessing=pp, batch_size=5, progress=False, fold_batchnorm=False)
    scale = np.abs(plain).max()
    np.testing.assert_allclose(folded, plain, rtol=0, atol=1e-5 * scale)
    assert not np.array_equal(folded, plain)  # a different network ran
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="fold_batchnorm must be True or False, got 'yes'"):
        extract_features(model, split, preprocessing=pp, progress=False, fold_batchnorm="yes")
    a, hit_a = extract_cached(model, split, tmp_path, preprocessing=pp, progress=False)
    with pytest.raises(ValueError, match="fold_batchnorm must be True or False, got 1"):  # a hit, too
        extract_cached(model, split, tmp_path, preprocessing=pp, progress=False, fold_batchnorm=1)
    b, hit_b = extract_cached(model, split, tmp_path, preprocessing=pp, progress=False, fold_batchnorm=False)
    assert not hit_a and not hit_b and a != b
    import json

    with np.load(a) as fa, np.load(b) as fb:
        assert json.loads(str(fa["manifest"]))["batchnorm"] == "folded"
        assert json.loads(str(fb["manifest"]))["batchnorm"] == "as trained"


def test_the_copy_shares_only_what_folding_does_not_change():
    model = _randomise_norms(create_backbone("resnet12_narrow", seed=0))
    folded = fold_batchnorm(model, _batch(1))
    mine = {id(p) for p in model.parameters()}
    convs = {n for n, _ in foldable_pairs(model, _batch(1))}
    for name, p in folded.named_parameters():
        module = name.rpartition(".")[0]
        assert (id(p) in mine) == (module not in convs), name
