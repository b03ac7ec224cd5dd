"""fewshot.transforms: preprocessing resolved from a backbone, eval and training transforms.

Everything runs on the CPU; nothing downloads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from fewshot.backbones import create_backbone
from fewshot.transforms import Preprocessing, eval_transform, resolve_preprocessing, train_transform


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
