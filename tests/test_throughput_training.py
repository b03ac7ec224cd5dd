"""Training throughput settings that must not change what is computed: channels-last memory
format (loss and gradients equal to the contiguous path within float32 tolerance), uint8 views
normalised on the device (equal to the float pipeline of torchvision's ``ToTensor`` +
``Normalize`` in the workers), and the default number of loader workers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from fewshot.backbones import create_backbone
from fewshot.heads import ClassificationHead
from fewshot.losses import create_objective
from fewshot.training import FinetuneConfig
from fewshot.training.distributed import (
    DistContext,
    available_cores,
    default_num_workers,
)
from fewshot.training.loop import (
    FinetuneNet,
    Trainer,
    compute_loss,
    normalize_views,
    use_channels_last,
)
from fewshot.training.sampling import TwoViews, collate_views
from fewshot.transforms import Preprocessing, frame_transform, train_transform


class NoiseSplit:
    """Random RGB images of several sizes (so framing resizes), labels 0..3."""

    def __init__(self, n: int = 8) -> None:
        rng = np.random.default_rng(0)
        self.arrays = [rng.integers(0, 256, size=(10 + i, 12 + 2 * i, 3), dtype=np.uint8) for i in range(n)]
        self.labels = np.arange(n, dtype=np.int64) % 4
        self.class_names = [str(c) for c in range(4)]

    def __len__(self) -> int:
        return len(self.arrays)

    def image(self, index: int):
        from PIL import Image

        return Image.fromarray(self.arrays[index])


# ---------------------------------------------------------------------------- channels-last


def _step_grads(net: FinetuneNet, views: torch.Tensor, channels_last: bool) -> tuple[float, dict[str, torch.Tensor]]:
    objective = create_objective("schane", lam=0.9, temperature=0.5)
    labels = torch.tensor([0, 1, 0, 1, 2, 3])
    ids = torch.arange(6)
    torch.manual_seed(0)  # the classifier's dropout: the same masks on both paths
    out = compute_loss(net, objective, views, labels, ids, channels_last=channels_last)
    net.zero_grad(set_to_none=True)
    out.total.backward()
    return float(out.total.detach()), {
        n: p.grad.detach().clone() for n, p in net.named_parameters() if p.grad is not None
    }


@pytest.mark.parametrize("backbone", ["conv4", "resnet12"])
def test_channels_last_step_equals_contiguous(backbone):
    """One training step's loss and every parameter's gradient, contiguous vs channels-last
    (weights and inputs), agree to float32 tolerance; both are checked against a float64
    contiguous reference, so a wrong path cannot hide behind a matching wrong one."""
    kwargs = {"width": 8} if backbone == "conv4" else {"widths": (8, 16, 16, 32)}
    size = 16
    body = create_backbone(backbone, None, seed=0, **kwargs)
    net = FinetuneNet(body, ClassificationHead(body.num_features, 4, dropout=0.1, seed=1)).train()
    cl_net = copy.deepcopy(net).to(memory_format=torch.channels_last)
    ref_net = copy.deepcopy(net).double()
    views = torch.randn(6, 2, 3, size, size, generator=torch.Generator().manual_seed(1))
    assert any(p.ndim == 4 and not p.is_contiguous() for p in cl_net.parameters())  # really channels-last

    loss, grads = _step_grads(net, views, channels_last=False)
    cl_loss, cl_grads = _step_grads(cl_net, views, channels_last=True)
    ref_loss, ref_grads = _step_grads(ref_net, views.double(), channels_last=False)

    assert grads.keys() == cl_grads.keys() == ref_grads.keys() and len(grads) > 4
    assert cl_loss == pytest.approx(loss, rel=1e-5, abs=1e-6)
    assert loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-6)
    for name in grads:
        scale = float(ref_grads[name].abs().max()) + 1e-12
        torch.testing.assert_close(cl_grads[name], grads[name], rtol=1e-4, atol=1e-4 * scale, msg=name)
        torch.testing.assert_close(grads[name].double(), ref_grads[name], rtol=1e-4, atol=1e-4 * scale, msg=name)


def test_channels_last_default_per_family_and_setting():
    conv4 = create_backbone("conv4", None, seed=0, width=8)
    assert use_channels_last(conv4, "cpu")
    resnet12 = create_backbone("resnet12", None, seed=0, widths=(8, 8, 8, 8))
    assert use_channels_last(resnet12, "cpu")  # measured 0.81-0.92x the contiguous step at batch 4-16
    assert use_channels_last(resnet12, "cuda")
    resnet18 = create_backbone("resnet18", None, seed=0)
    assert not use_channels_last(resnet18, "cpu")  # measured no faster on the CPU (0.97-1.02x)

    class Rows(torch.nn.Module):  # not a measured family: contiguous on the CPU
        num_features = 8

    assert not use_channels_last(Rows(), "cpu")
    assert use_channels_last(Rows(), "cuda")  # on CUDA every backbone

    def trainer(net, **options):
        loader = torch.utils.data.DataLoader([])
        return Trainer(
            net,
            create_objective("ce"),
            DistContext(),
            loader,
            None,
            lr=1e-3,
            weight_decay=0.0,
            total_steps=2,
            warmup_steps=0,
            scheduler="constant",
            seed=0,
            **options,
        )

    net = FinetuneNet(conv4, ClassificationHead(conv4.num_features, 3, seed=1))
    weight = next(p for p in net.parameters() if p.ndim == 4)
    t = trainer(copy.deepcopy(net), channels_last=False)
    assert t.channels_last is False and all(p.is_contiguous() for p in t.net.parameters())
    t = trainer(copy.deepcopy(net))
    assert t.channels_last is True
    assert any(
        p.ndim == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
        for p in t.net.parameters()
    )
    assert weight.is_contiguous()  # the original net was copied, not converted

    assert FinetuneConfig(backbone="conv4", dataset="digits", out="x").channels_last is None
    assert FinetuneConfig(backbone="conv4", dataset="digits", out="x", channels_last=False).channels_last is False
    with pytest.raises(TypeError, match="channels_last must be true or false, got 'yes'"):
        FinetuneConfig(backbone="conv4", dataset="digits", out="x", channels_last="yes")


def test_channels_last_flag_reaches_the_config():
    from fewshot.cli._finetune import config_flags

    flags = {r["name"]: r for r in config_flags()}
    assert flags["channels_last"]["flags"] == ("--channels-last",)
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument(*flags["channels_last"]["flags"], **flags["channels_last"]["kwargs"])
    assert parser.parse_args(["--no-channels-last"]).channels_last is False
    assert parser.parse_args(["--channels-last"]).channels_last is True
    assert not hasattr(parser.parse_args([]), "channels_last")  # unset: auto


# ---------------------------------------------------------------------------- uint8 views


def _reference_transform(pp: Preprocessing, policy: str, hflip: float):
    """Today's float pipeline, written out: framing, flip, AutoAugment, then ToTensor and
    Normalize in the worker."""
    from torchvision import transforms as T
    from torchvision.transforms import AutoAugmentPolicy

    return T.Compose(
        [
            frame_transform(pp),
            T.RandomHorizontalFlip(hflip),
            T.AutoAugment(AutoAugmentPolicy(policy)),
            T.ToTensor(),
            T.Normalize(pp.mean, pp.std),
        ]
    )


@pytest.mark.parametrize("policy", ["imagenet", "cifar10"])
def test_uint8_views_normalised_on_the_device_equal_the_float_pipeline(policy):
    pp = Preprocessing(
        input_size=(3, 20, 20),
        interpolation="bilinear",
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        crop_pct=0.875,
    )
    split = NoiseSplit()
    positions = np.arange(len(split))
    new = TwoViews(split, positions, train_transform(pp, policy=policy, hflip=0.5, normalize=False))
    old = TwoViews(split, positions, _reference_transform(pp, policy, 0.5))
    keys = [(int(p), 1000 + 7 * int(p)) for p in positions]  # (position, augmentation seed)

    batch = collate_views([new[k] for k in keys])
    reference = collate_views([old[k] for k in keys])
    assert batch[0].dtype == torch.uint8 and batch[0].shape == (8, 2, 3, 20, 20)
    assert reference[0].dtype == torch.float32
    assert torch.equal(batch[1], reference[1]) and torch.equal(batch[2], reference[2])

    mean = torch.tensor(pp.mean).view(-1, 1, 1)
    std = torch.tensor(pp.std).view(-1, 1, 1)
    views = normalize_views(batch[0], mean, std)
    assert views.dtype == torch.float32 and views.shape == reference[0].shape
    bound = 1 / 255 / min(pp.std) + 1e-6  # one uint8 level
    assert float((views - reference[0]).abs().max()) <= bound
    # the same operations in the same order on the CPU: not merely close, equal
    assert torch.equal(views, reference[0])
    # and the augmentation really ran (views of one image differ, images differ)
    assert not torch.equal(views[:, 0], views[:, 1])


def test_normalize_views_passes_floats_and_refuses_uint8_without_stats():
    x = torch.randn(2, 2, 5)
    assert normalize_views(x, None, None) is x  # cached features pass unchanged
    with pytest.raises(ValueError, match="uint8 views need the backbone's mean and std"):
        normalize_views(torch.zeros(1, 2, 3, 4, 4, dtype=torch.uint8), None, None)


def test_uint8_views_in_a_loader_with_a_worker():
    """The DataLoader yields uint8 CHW batches from a worker process too (what fine-tuning runs)."""
    pp = Preprocessing(input_size=(3, 12, 12), interpolation="bilinear", mean=(0.5,) * 3, std=(0.25,) * 3)
    data = TwoViews(NoiseSplit(4), np.arange(4), train_transform(pp, policy="svhn", normalize=False))
    loader = torch.utils.data.DataLoader(
        data, batch_sampler=[[(0, 1), (1, 2)], [(2, 3), (3, 4)]], collate_fn=collate_views, num_workers=1
    )
    batches = list(loader)
    assert [b[0].dtype for b in batches] == [torch.uint8, torch.uint8]
    assert batches[0][0].shape == (2, 2, 3, 12, 12)
    assert torch.equal(batches[0][0][0], data[(0, 1)][0])  # the same views as in this process


# ---------------------------------------------------------------------------- workers


@pytest.mark.parametrize(
    ("cores", "local_world", "expected"),
    [(2, 1, 1), (1, 1, 0), (16, 1, 15), (16, 8, 1), (16, 16, 0), (16, 32, 0), (64, 8, 7), (3, 2, 0)],
)
def test_default_workers_per_local_rank(monkeypatch, cores, local_world, expected):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert available_cores() == cores
    assert default_num_workers(local_world) == expected


def test_default_workers_without_affinity_and_bad_world(monkeypatch):
    monkeypatch.delattr("os.sched_getaffinity", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert available_cores() == 6 and default_num_workers(2) == 2
    with pytest.raises(ValueError, match="local_world_size must be a positive integer, got 0"):
        default_num_workers(0)


def test_runner_default_workers_follow_the_node(monkeypatch):
    from fewshot.training.runner import _default_workers

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)), raising=False)
    config = FinetuneConfig(backbone="conv4", dataset="digits", out="x")
    assert _default_workers(config, DistContext(local_world_size=8)) == 1
    assert _default_workers(config, DistContext(local_world_size=1)) == 15
    assert _default_workers(config.replace(num_workers=0), DistContext(local_world_size=1)) == 0


def test_bf16_autocast_is_opt_in_on_the_cpu_and_stays_close_to_float32():
    conv4 = create_backbone("conv4", None, seed=0, width=8)
    net = FinetuneNet(conv4, ClassificationHead(conv4.num_features, 3, seed=1))
    loader = torch.utils.data.DataLoader([])
    options = dict(lr=1e-3, weight_decay=0.0, total_steps=2, warmup_steps=0, scheduler="constant", seed=0)
    objective = create_objective("schane", lam=0.9, temperature=0.5)
    default = Trainer(copy.deepcopy(net), objective, DistContext(), loader, None, **options)
    assert default.bf16 is False  # CPU: float32 unless asked
    bf16 = Trainer(copy.deepcopy(net), objective, DistContext(), loader, None, bf16=True, **options)
    assert bf16.bf16 is True
    g = torch.Generator().manual_seed(0)
    views = torch.randn(6, 2, 3, 16, 16, generator=g)
    labels, ids = torch.tensor([0, 1, 2, 0, 1, 2]), torch.arange(6)
    with bf16.autocast():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    with torch.no_grad():
        lo = compute_loss(bf16.net, objective, views, labels, ids, autocast=bf16.autocast())
        hi = compute_loss(default.net, objective, views, labels, ids, autocast=default.autocast())
    assert lo.total.dtype == torch.float32  # the loss itself is float32
    assert lo.total.item() != hi.total.item()  # bf16 really ran
    torch.testing.assert_close(lo.total, hi.total, rtol=2e-2, atol=2e-2)
    assert FinetuneConfig(backbone="conv4", dataset="digits", out="x").bf16 is None
    with pytest.raises(TypeError, match="bf16 must be true or false, got 1"):
        FinetuneConfig(backbone="conv4", dataset="digits", out="x", bf16=1)
