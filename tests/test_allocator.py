"""reuse_freed_memory: large tensors reuse freed pages inside the block, glibc's defaults after it."""

from __future__ import annotations

import platform
import resource
import threading

import numpy as np
import pytest
import torch

import fewshot
from fewshot import allocator
from fewshot.allocator import reuse_freed_memory, reuse_freed_memory_on, reuses_freed_memory

glibc = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)

BIG = 256 << 20  # bytes: above glibc's largest mmap threshold (32 MiB), so mmap'd by default, and
# larger than any hole earlier tests leave in the heap (which malloc would serve it from)


def _faults_of_a_second_allocation(tries: int = 3) -> int:
    """Minor page faults of allocating and touching a BIG tensor right after freeing one
    (the fewest of ``tries``: a first try may still grow the heap)."""
    counts = []
    for _ in range(tries):
        torch.ones(BIG // 4).sum()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(BIG // 4).sum()
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return min(counts)


@glibc
def test_freed_pages_are_reused_inside_and_mmapped_again_after():
    pages = BIG // resource.getpagesize()
    assert _faults_of_a_second_allocation() > pages // 2  # glibc default: fresh mmap pages
    with reuse_freed_memory():
        assert reuses_freed_memory()
        assert _faults_of_a_second_allocation() < pages // 4
    assert not reuses_freed_memory()
    assert _faults_of_a_second_allocation() > pages // 2  # defaults restored


@glibc
def test_nested_and_threaded_blocks_undo_the_setting_once_the_last_is_left():
    pages = BIG // resource.getpagesize()
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with reuse_freed_memory():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    inside.wait(10)
    with reuse_freed_memory():
        with reuse_freed_memory():
            pass
        assert reuses_freed_memory()  # the inner block left, the outer is still in
    assert reuses_freed_memory()  # the other thread is still inside
    assert _faults_of_a_second_allocation() < pages // 4
    release.set()
    thread.join()
    assert not reuses_freed_memory()
    assert _faults_of_a_second_allocation() > pages // 2


def test_turned_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("FEWSHOT_REUSE_MEMORY", "0")
    with reuse_freed_memory():
        assert not reuses_freed_memory()


def test_an_exception_leaves_the_block():
    with pytest.raises(KeyError, match="boom"), reuse_freed_memory():
        raise KeyError("boom")
    assert not reuses_freed_memory()


@pytest.mark.parametrize(("device", "reuses"), [("cpu", True), (torch.device("cpu"), True), ("cuda:0", False)])
def test_only_the_cpu_reuses(device, reuses):
    with reuse_freed_memory_on(device):
        assert reuses_freed_memory() == (reuses and allocator._glibc() is not None)


def test_exported():
    assert fewshot.reuse_freed_memory is reuse_freed_memory


@glibc
def test_extraction_runs_inside_it_and_gives_the_same_features(monkeypatch):
    from fewshot.backbones import create_backbone
    from fewshot.data import load_split
    from fewshot.features import extract_features

    split = load_split("digits", "test")
    model = create_backbone("conv4", seed=0).eval()
    seen = []
    forward = model.forward

    def spy(x):
        seen.append(reuses_freed_memory())
        return forward(x)

    monkeypatch.setattr(model, "forward", spy)
    on, _ = extract_features(model, split, batch_size=64, progress=False, device="cpu")
    assert seen and all(seen)
    monkeypatch.setenv("FEWSHOT_REUSE_MEMORY", "0")
    seen.clear()
    off, _ = extract_features(model, split, batch_size=64, progress=False, device="cpu")
    assert seen and not any(seen)
    np.testing.assert_array_equal(on, off)
