"""Two gloo processes on the CPU against one: same loss, same gradients, same run.

One ``torch.multiprocessing.spawn`` of two ranks does two things (process start-up is the
expensive part on a 2-core machine):

1. one training step of a BatchNorm-free model under DDP, with each rank holding half of a
   fixed global batch; the loss (averaged over ranks) and the DDP-averaged gradients must equal
   those of one process holding the whole batch, to 1e-6, for every contrastive objective;
2. ``finetune`` itself, launched the way ``torchrun`` does (RANK/WORLD_SIZE/MASTER_* in the
   environment), on a small in-memory split (96 images, 5 global batches of 16) with a tiny
   ViT (LayerNorm: no batch statistics) and dropout 0; its log and weights must match a
   one-process run.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from fewshot.data import ArraySplit
from fewshot.losses import create_objective
from fewshot.training.loop import FinetuneNet, compute_loss

WORLD = 2
OBJECTIVES = ("schane", "simclr", "supcon", "hscl")
VIT = {"img_size": 16, "patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2}


class TinyNet(nn.Module):
    """Conv + GroupNorm + pooling: no batch statistics, so rank-local forward passes are exact."""

    num_features = 12

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 12, 3, padding=1), nn.GroupNorm(3, 12), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )

    def forward(self, x):
        return self.body(x)


def make_net(seed: int = 0) -> FinetuneNet:
    from fewshot.heads import ClassificationHead, ProjectionHead

    torch.manual_seed(seed)
    return FinetuneNet(TinyNet(), ClassificationHead(12, 3, seed=seed + 1), ProjectionHead(12, 6, seed=seed + 2))


def make_batch(images: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    views = torch.randn(images, 2, 3, 8, 8, generator=g)
    labels = torch.randint(0, 3, (images,), generator=g)
    ids = torch.arange(100, 100 + images)
    return views, labels, ids


def step(model, objective, views, labels, ids, gather):
    out = compute_loss(model, objective, views, labels, ids, gather=gather)
    out.total.backward()
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def colour_split(n_classes: int = 4, per_class: int = 24) -> ArraySplit:
    """Noisy 16x16 images whose class is their mean colour (the same in every process)."""
    labels = np.repeat(np.arange(n_classes), per_class)
    colours = np.random.default_rng(123).integers(0, 256, (n_classes, 3))
    pixels = colours[labels][:, None, None, :] + np.random.default_rng(0).normal(0, 25, (labels.size, 16, 16, 3))
    images = np.clip(pixels, 0, 255).astype(np.uint8)
    return ArraySplit("colours", "train", labels, [f"c{k}" for k in range(n_classes)], images, source="memory")


COLOURS_VIT = dict(
    backbone="vit_tiny_patch16_224",
    backbone_kwargs=VIT,
    dataset="colours",
    img_size=16,
    epochs=1,
    batch_size=16,
    lr=3e-3,
    dropout=0.0,
    threads=1,
    progress=False,
    objective="schane",
    # timm's optimiser state: layer-wise lr decay, min lr, model EMA (best/ holds the EMA weights)
    layer_decay=0.75,
    min_lr=1e-5,
    ema_decay=0.9,
)


def _worker(rank: int, tmp: str, port: int) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    # 1. one step, DDP, half of the global batch per rank
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=WORLD)
    views, labels, ids = make_batch()
    half = views.shape[0] // WORLD
    local = slice(rank * half, (rank + 1) * half)
    results = {}
    for name in OBJECTIVES:
        net = make_net()
        model = DistributedDataParallel(net)
        out = step(model, create_objective(name, lam=0.7), views[local], labels[local], ids[local], gather=True)
        losses = torch.stack([out.total.detach(), out.ce.detach(), out.contrastive.detach()])
        dist.all_reduce(losses)
        results[name] = {
            "losses": (losses / WORLD).tolist(),
            "grads": {k: p.grad.clone() for k, p in net.named_parameters()},
        }
    if rank == 0:
        torch.save(results, f"{tmp}/step.pt")
    dist.destroy_process_group()

    # 2. finetune as torchrun launches it
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_WORLD_SIZE=str(WORLD),
    )
    from fewshot.training import FinetuneConfig, finetune

    finetune(FinetuneConfig(out=f"{tmp}/ddp", **COLOURS_VIT), split=colour_split())


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    import torch.multiprocessing as mp

    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(tmp), _free_port()), nprocs=WORLD, join=True)
    return Path(tmp)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_two_processes_give_the_loss_and_gradients_of_one(two_ranks, name):
    views, labels, ids = make_batch()
    net = make_net()
    out = step(net, create_objective(name, lam=0.7), views, labels, ids, gather=False)
    got = torch.load(two_ranks / "step.pt", weights_only=True)[name]
    expected = [out.total.item(), out.ce.item(), out.contrastive.item()]
    assert got["losses"] == pytest.approx(expected, abs=1e-6, rel=1e-6)
    for key, p in net.named_parameters():
        torch.testing.assert_close(got["grads"][key], p.grad, atol=1e-6, rtol=1e-6, msg=key)


def test_contrastive_share_of_the_gradient_is_large_enough_to_catch_a_scaling_error(two_ranks):
    """A gather that returned only local gradients would scale the contrastive part by 1/2:
    check that part is far above the 1e-6 tolerance, so the test above would catch it."""
    views, labels, ids = make_batch()
    with_con, ce_only = make_net(), make_net()
    step(with_con, create_objective("schane", lam=0.7), views, labels, ids, gather=False)
    step(ce_only, create_objective("schane", lam=0.0), views, labels, ids, gather=False)
    key = "backbone.body.0.weight"
    contrastive_part = dict(with_con.named_parameters())[key].grad - 0.3 * dict(ce_only.named_parameters())[key].grad
    assert contrastive_part.abs().max() > 1e-3


def test_two_process_finetune_matches_one_process(two_ranks, tmp_path):
    from fewshot.training import FinetuneConfig, finetune

    single = finetune(FinetuneConfig(out=str(tmp_path / "one"), **COLOURS_VIT), split=colour_split())
    ddp_log = [json.loads(line) for line in (two_ranks / "ddp" / "log.jsonl").read_text().splitlines()]
    assert len(ddp_log) == len(single.history) == 1
    for key in ("total", "ce", "contrastive", "val_loss", "val_ce", "val_contrastive", "lr"):
        assert ddp_log[0][key] == pytest.approx(single.history[0][key], rel=1e-5, abs=1e-6), key
    manifest = json.loads((two_ranks / "ddp" / "manifest.json").read_text())
    assert manifest["run"]["world_size"] == WORLD and manifest["status"] == "finished"
    assert manifest["data"]["steps_per_epoch"] == single.steps == 5  # several steps: the optimiser state matters
    for ckpt, name in [(c, n) for c in ("last", "best") for n in ("backbone.safetensors", "heads.safetensors")]:
        a, b = load_file(two_ranks / "ddp" / ckpt / name), load_file(single.run_dir / ckpt / name)
        for k in a:
            # a handful of Adam steps amplify float rounding of tiny gradients; stay well below lr
            torch.testing.assert_close(a[k], b[k], atol=5e-4, rtol=0, msg=k)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
