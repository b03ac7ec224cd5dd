"""Frozen feature extraction, the feature cache and ``fewshot extract`` (CPU, tiny models)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image

from fewshot._io import sha256_arrays
from fewshot.backbones import create_backbone
from fewshot.checkpoint import save_checkpoint
from fewshot.cli import main
from fewshot.data import list_datasets, load_split
from fewshot.data._base import ImageSplit
from fewshot.features import FEATURE_KEYS, default_channels_last, extract_cached, extract_features, save_features
from fewshot.results import read_results
from fewshot.transforms import eval_transform, resolve_preprocessing


class MemorySplit(ImageSplit):
    """Random uint8 RGB images held in memory."""

    def __init__(self, n_classes=3, per_class=4, size=24, seed=0, name="toy", split="test", source="memory"):
        rng = np.random.default_rng(seed)
        self.pixels = rng.integers(0, 256, (n_classes * per_class, size, size, 3), dtype=np.uint8)
        labels = np.repeat(np.arange(n_classes), per_class)
        super().__init__(name, split, labels, [f"class{k}" for k in range(n_classes)], source=source)

    def _load(self, index):
        return Image.fromarray(self.pixels[index])


def _model(seed=0, **kwargs):
    return create_backbone("conv4", width=8, seed=seed, **kwargs)


def _reference(model, split, pp):
    """Per-image timm transform, one stacked forward pass in eval mode."""
    tf = eval_transform(pp)
    x = torch.stack([tf(split.image(i)) for i in range(len(split))])
    model.eval()
    with torch.no_grad():
        return model(x).numpy()


class _Counter:
    def __init__(self, model):
        self.calls = 0
        model.register_forward_hook(self)

    def __call__(self, module, inputs, output):
        self.calls += 1


@pytest.mark.parametrize("workers", [0, 1])
def test_extract_matches_per_image_reference(workers):
    split, model = MemorySplit(), _model()
    pp = resolve_preprocessing(model, img_size=32)
    feats, labels = extract_features(model, split, preprocessing=pp, batch_size=5, num_workers=workers, progress=False)
    assert feats.shape == (12, 8) and feats.dtype == np.float32
    assert labels.dtype == np.int64 and np.array_equal(labels, split.labels)
    ref = _reference(model, split, pp)
    np.testing.assert_allclose(feats, ref, rtol=0, atol=1e-5 * np.abs(ref).max())  # BatchNorm folded: float rounding


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("tensor_images", [False, True])
def test_extract_feeds_bitwise_the_per_image_timm_inputs(channels_last, tensor_images):
    # the batch the model sees (HWC pixels permuted, normalised on the device) equals timm's
    # per-image ToTensor + Normalize for PIL images; its uint8 output for (C, H, W) tensor images
    split, model = MemorySplit(size=20), _model()
    pp = resolve_preprocessing(model, img_size=32)
    tf = eval_transform(pp)
    want = torch.stack([tf(split.image(i)) for i in range(len(split))])
    if tensor_images:  # timm's uint8 path (its Normalize takes floats only), normalised here
        pil = split.image
        split.image = lambda i: torch.from_numpy(np.array(pil(i))).permute(2, 0, 1)
        raw = eval_transform(pp, normalize=False)
        mean, std = (torch.tensor(v).view(-1, 1, 1) for v in (pp.mean, pp.std))
        want = torch.stack([raw(split.image(i)).float().div(255).sub(mean).div(std) for i in range(len(split))])
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    extract_features(
        model, split, preprocessing=pp, batch_size=5, num_workers=0, progress=False, channels_last=channels_last
    )
    got = torch.cat(seen)
    assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    assert torch.equal(got, want)


@pytest.mark.parametrize("channels_last", [False, True])
def test_normalizer_is_bitwise_the_broadcast_normalisation(channels_last):
    # the tiled channels-last path against the plain (1, C, 1, 1) broadcast, for two input sizes
    from fewshot.features.extract import _Normalizer
    from fewshot.transforms import Preprocessing

    pp = Preprocessing((3, 7, 5), "bicubic", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 0.875, "center")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    normalize = _Normalizer(pp, torch.device("cpu"), fmt)
    mean, std = torch.tensor(pp.mean).view(1, -1, 1, 1), torch.tensor(pp.std).view(1, -1, 1, 1)
    g = torch.Generator().manual_seed(0)
    for shape in [(4, 7, 5, 3), (2, 6, 9, 3), (4, 7, 5, 3)]:
        pixels = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
        got = normalize(pixels)
        want = pixels.permute(0, 3, 1, 2).float().div(255).sub(mean).div(std)
        assert got.shape == want.shape and got.is_contiguous(memory_format=fmt)
        assert torch.equal(got, want)


def test_extract_restores_mode_and_uses_model_preprocessing():
    split, model = MemorySplit(size=8), _model()
    model.train()
    feats, _ = extract_features(model, split, progress=False)  # default: the model's 84 px
    assert model.training
    ref = _reference(model, split, resolve_preprocessing(model))
    np.testing.assert_allclose(feats, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_extract_with_classifier_gives_prelogits():
    split = MemorySplit()
    import timm

    with_fc = timm.create_model("conv4", num_classes=5, width=8)
    pp = resolve_preprocessing(with_fc, img_size=32)
    feats, _ = extract_features(with_fc, split, preprocessing=pp, progress=False)
    assert feats.shape == (12, 8)


class BrokenSplit(MemorySplit):
    def _load(self, index):
        if index == 7:
            raise ValueError(f"cannot decode image {index} of broken.pkl")
        return super()._load(index)


def _prefetch_threads():
    import threading

    return [t for t in threading.enumerate() if t.name == "fewshot-prefetch"]


def test_loader_errors_propagate_and_stop_the_prefetch_thread():
    model = _model()
    pp = resolve_preprocessing(model, img_size=16)
    with pytest.raises(ValueError, match="cannot decode image 7 of broken.pkl"):
        extract_features(model, BrokenSplit(), preprocessing=pp, batch_size=2, progress=False)
    assert not _prefetch_threads()

    def explode(module, inputs, output):
        raise RuntimeError("forward failed")

    handle = model.register_forward_hook(explode)
    with pytest.raises(RuntimeError, match="forward failed"):
        extract_features(model, MemorySplit(), preprocessing=pp, batch_size=2, progress=False)
    handle.remove()
    assert not _prefetch_threads()


def test_extract_bad_input():
    model = _model()
    with pytest.raises(ValueError, match="has no images"):
        extract_features(model, MemorySplit(n_classes=0), progress=False)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        extract_features(model, MemorySplit(), batch_size=0, progress=False)
    with pytest.raises(ValueError, match="num_workers must be a non-negative integer, got -1"):
        extract_features(model, MemorySplit(), num_workers=-1, progress=False)
    with pytest.raises(ValueError, match=r"backbone output has shape \(12, 8, 2, 2\)"):
        extract_features(
            model.stages,
            MemorySplit(),
            preprocessing=resolve_preprocessing(model, img_size=32),
            batch_size=12,
            progress=False,
        )


@pytest.mark.parametrize(
    "name, kwargs",
    [("conv4", {"width": 8}), ("resnet12_narrow", {}), pytest.param("resnet12", {}, marks=pytest.mark.slow)],
)
def test_channels_last_features_equal_the_contiguous_path(name, kwargs):
    split = MemorySplit()
    model = create_backbone(name, seed=0, **kwargs)
    pp = resolve_preprocessing(model, img_size=16)
    contiguous, _ = extract_features(model, split, preprocessing=pp, batch_size=5, progress=False, channels_last=False)
    channels_last, _ = extract_features(
        model, split, preprocessing=pp, batch_size=5, progress=False, channels_last=True
    )
    assert default_channels_last(model)
    scale = np.abs(contiguous).max()
    np.testing.assert_allclose(channels_last, contiguous, rtol=0, atol=1e-5 * scale)
    # and both agree with a float64 forward pass of the per-image timm transform
    tf = eval_transform(pp)
    x = torch.stack([tf(split.image(i)) for i in range(len(split))]).double()
    with torch.no_grad():
        reference = copy.deepcopy(model).double().eval()(x).numpy()
    np.testing.assert_allclose(channels_last, reference, rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(contiguous, reference, rtol=0, atol=1e-5 * scale)
    # the model's parameters are contiguous again afterwards
    assert all(p.is_contiguous() for p in model.parameters())


def test_channels_last_choice_is_validated_and_keyed(tmp_path):
    split, model = MemorySplit(), _model()
    pp = resolve_preprocessing(model, img_size=32)
    with pytest.raises(ValueError, match=r"channels_last must be True, False or None \(auto\), got 'yes'"):
        extract_features(model, split, preprocessing=pp, progress=False, channels_last="yes")
    auto, _ = extract_cached(model, split, tmp_path, preprocessing=pp, progress=False)
    assert extract_cached(model, split, tmp_path, preprocessing=pp, progress=False, channels_last=True) == (auto, True)
    contiguous, hit = extract_cached(model, split, tmp_path, preprocessing=pp, progress=False, channels_last=False)
    assert not hit and contiguous != auto
    with np.load(auto) as a, np.load(contiguous) as c:
        assert json.loads(str(a["manifest"]))["memory_format"] == "channels_last"
        assert json.loads(str(c["manifest"]))["memory_format"] == "contiguous"
    # a model already in channels-last format stays so
    model.to(memory_format=torch.channels_last)
    extract_features(model, split, preprocessing=pp, progress=False, channels_last=True)
    assert not model.stages[0].conv.weight.is_contiguous()


def test_timm_model_end_to_end_into_npz(tmp_path):
    split = MemorySplit(n_classes=2, per_class=3, size=32)
    model = create_backbone("resnet10t", seed=0)
    pp = resolve_preprocessing(model, img_size=32)
    path, hit = extract_cached(model, split, tmp_path, preprocessing=pp, progress=False)
    assert not hit and path.parent == tmp_path and path.name.startswith("toy-test-")
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == sorted(FEATURE_KEYS)
        feats, labels = data["features"], data["labels"]
        assert feats.shape == (6, model.num_features) and feats.dtype == np.float32
        assert labels.dtype == np.int64 and np.array_equal(labels, split.labels)
        assert list(data["class_names"]) == ["class0", "class1"]
        assert str(data["fingerprint"]) == sha256_arrays(feats, labels)
        assert (str(data["dataset"]), str(data["split"])) == ("toy", "test")
        manifest = json.loads(str(data["manifest"]))
    assert manifest["preprocessing"] == pp.to_dict() and manifest["precision"] == "fp32"
    np.testing.assert_allclose(feats, _reference(model, split, pp), atol=1e-5)


def test_cache_hit_runs_no_forward_pass(tmp_path):
    split, model = MemorySplit(), _model()
    pp = resolve_preprocessing(model, img_size=32)
    counter = _Counter(model)
    first, hit1 = extract_cached(model, split, tmp_path, preprocessing=pp, batch_size=4, progress=False)
    assert not hit1 and counter.calls == 3
    again, hit2 = extract_cached(model, split, tmp_path, preprocessing=pp, batch_size=4, progress=False)
    assert hit2 and again == first and counter.calls == 3


def test_cache_key_covers_weights_preprocessing_and_split(tmp_path):
    split, model = MemorySplit(), _model()
    pp = resolve_preprocessing(model, img_size=32)
    base, _ = extract_cached(model, split, tmp_path, preprocessing=pp, progress=False)
    other_pp, hit = extract_cached(
        model, split, tmp_path, preprocessing=resolve_preprocessing(model, img_size=16), progress=False
    )
    assert not hit and other_pp != base
    other_w, hit = extract_cached(_model(seed=1), split, tmp_path, preprocessing=pp, progress=False)
    assert not hit and other_w != base
    other_split, hit = extract_cached(model, MemorySplit(split="val"), tmp_path, preprocessing=pp, progress=False)
    assert not hit and other_split.name.startswith("toy-val-")
    same_id, hit = extract_cached(model, split, tmp_path, preprocessing=pp, model_id="ckpt-sha", progress=False)
    assert not hit
    assert extract_cached(_model(seed=1), split, tmp_path, preprocessing=pp, model_id="ckpt-sha", progress=False)[1]


def test_damaged_cache_entry_is_recomputed(tmp_path):
    split, model = MemorySplit(), _model()
    pp = resolve_preprocessing(model, img_size=32)
    path, _ = extract_cached(model, split, tmp_path, preprocessing=pp, progress=False)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match="damaged feature cache entry"):
        again, hit = extract_cached(model, split, tmp_path, preprocessing=pp, progress=False)
    assert not hit and again == path
    assert extract_cached(model, split, tmp_path, preprocessing=pp, progress=False)[1]


def test_save_features_validates(tmp_path):
    with pytest.raises(ValueError, match=r"need features \(N, d\) and labels \(N,\)"):
        save_features(tmp_path / "f.npz", np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="labels span 0..3 but there are 2 class names"):
        save_features(tmp_path / "f.npz", np.zeros((2, 2)), np.array([0, 3]), class_names=["a", "b"])


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def toy_data(monkeypatch):
    """``load_split`` (as ``fewshot extract`` calls it) answering with an in-memory split."""
    import fewshot.pipeline

    calls = []

    def load_split(name, split, root=None, **kwargs):
        calls.append((name, split, root))
        return MemorySplit(name=name, split=split, size=16)

    monkeypatch.setattr(fewshot.pipeline, "load_split", load_split)  # raises if the pipeline lost load_split
    return calls


def test_cli_extract_backbone(tmp_path, toy_data, capsys):
    out = tmp_path / "feats.npz"
    argv = [
        "extract",
        "--backbone",
        "conv4",
        "--dataset",
        "digits",
        "--split",
        "test",
        "--data-root",
        str(tmp_path),
        "--img-size",
        "32",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert toy_data == [("digits", "test", str(tmp_path))]
    with np.load(out, allow_pickle=False) as data:
        assert data["features"].shape == (12, 64)
        manifest = json.loads(str(data["manifest"]))
    assert manifest["preprocessing"]["input_size"] == [3, 32, 32]
    assert manifest["backbone"] == "conv4" and manifest["source"] == {"pretrained": None, "seed": 0}
    assert manifest["batchnorm"] == "folded"
    assert "wrote" in capsys.readouterr().out
    plain = tmp_path / "plain.npz"
    assert main([*argv[:-1], str(plain), "--no-fold-batchnorm"]) == 0
    with np.load(out, allow_pickle=False) as a, np.load(plain, allow_pickle=False) as b:
        assert json.loads(str(b["manifest"]))["batchnorm"] == "as trained"
        np.testing.assert_allclose(a["features"], b["features"], rtol=0, atol=1e-5 * np.abs(b["features"]).max())


def test_cli_extract_checkpoint_uses_recorded_preprocessing_and_cache(tmp_path, toy_data, capsys):
    backbone = _model(seed=4)
    pp = resolve_preprocessing(backbone, img_size=24)
    save_checkpoint(tmp_path / "best", backbone, backbone_name="conv4", backbone_kwargs={"width": 8}, preprocessing=pp)
    argv = [
        "extract",
        "--checkpoint",
        str(tmp_path / "best"),
        "--dataset",
        "digits",
        "--no-progress",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "a.npz"),
    ]
    assert main(argv) == 0
    assert main(argv[:-1] + [str(tmp_path / "b.npz")]) == 0
    assert "from cache" in capsys.readouterr().out.splitlines()[-1]
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert str(a["fingerprint"]) == str(b["fingerprint"])
    assert json.loads(str(a["manifest"]))["preprocessing"] == pp.to_dict()
    ref = _reference(backbone, MemorySplit(size=16), pp)
    np.testing.assert_allclose(a["features"], ref, rtol=0, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--backbone", "resnet19"], "unknown backbone 'resnet19'; did you mean"),
        (["--backbone", "conv4", "--pretrained", "missing.pth"], "weights file not found: missing.pth"),
        (["--checkpoint", "no-such-dir"], "checkpoint directory not found: no-such-dir"),
        ([], "give a backbone name (--backbone) or a checkpoint directory (--checkpoint)"),
        (["--backbone", "conv4", "--batch-size", "0"], "batch_size must be a positive integer, got 0"),
        (["--backbone", "conv4", "--device", "gpu0"], "invalid device 'gpu0'"),
    ],
)
def test_cli_extract_bad_input(tmp_path, toy_data, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    assert main(["extract", "--dataset", "digits", "--out", "f.npz", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_extract_digits_end_to_end(tmp_path):
    """With the real registry (fewshot.data.load_split) and the embedded digits data."""
    assert "digits" in list_datasets()
    out = tmp_path / "digits.npz"
    argv = [
        "extract",
        "--backbone",
        "conv4",
        "--dataset",
        "digits",
        "--split",
        "test",
        "--img-size",
        "16",
        "--batch-size",
        "512",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    split = load_split("digits", "test")
    with np.load(out, allow_pickle=False) as f:
        assert f["features"].shape == (len(split), 64)
        assert np.array_equal(f["labels"], split.labels)
        assert list(f["class_names"]) == list(split.class_names)


def test_extracted_digits_feed_fewshot_evaluate(tmp_path):
    """Registry → tiny backbone → features → ``fewshot evaluate --features``."""
    out = tmp_path / "digits.npz"
    assert (
        main(
            [
                "extract",
                "--backbone",
                "resnet10t",
                "--dataset",
                "digits",
                "--img-size",
                "16",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    results = tmp_path / "results"
    assert (
        main(
            [
                "evaluate",
                "--features",
                str(out),
                "--ways",
                "5",
                "--shots",
                "1",
                "--queries",
                "5",
                "--episodes",
                "5",
                "--seeds",
                "0",
                "--classifier",
                "prototype",
                "--device",
                "cpu",
                "--out",
                str(results),
            ]
        )
        == 0
    )
    res = read_results(results)  # was: any(results.iterdir()), true of a half-written directory
    assert len(res.episodes) == 5 and set(res.episodes.dataset) == {"digits"}
    assert res.episodes.accuracy.between(0, 1).all()


class _Slice(ImageSplit):
    """The first ``per_class`` items of the first ``n_classes`` classes of a split."""

    def __init__(self, base, n_classes, per_class):
        keep = np.concatenate([np.flatnonzero(base.labels == k)[:per_class] for k in range(n_classes)])
        super().__init__(base.name, base.split, base.labels[keep], base.class_names[:n_classes], base.source)
        self.base, self.keep = base, keep

    def _load(self, index):
        return self.base.image(int(self.keep[index]))


@pytest.mark.realdata
def test_real_mini_imagenet_slice_to_evaluate(tmp_path):
    """Real miniImageNet test images → conv4 → feature file → ``fewshot evaluate``."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (root / "mini-imagenet").is_dir():
        pytest.skip(f"{root / 'mini-imagenet'} is absent")
    from fewshot.data import load_split

    split = _Slice(load_split("mini-imagenet", "test", root), n_classes=5, per_class=12)
    model = _model()
    path, _ = extract_cached(
        model, split, tmp_path, preprocessing=resolve_preprocessing(model, img_size=32), progress=False
    )
    with np.load(path, allow_pickle=False) as data:
        assert data["features"].shape == (60, 8) and np.isfinite(data["features"]).all()
        assert str(data["dataset"]) == "mini-imagenet"
    assert (
        main(
            [
                "evaluate",
                "--features",
                str(path),
                "--ways",
                "5",
                "--shots",
                "1",
                "--queries",
                "5",
                "--episodes",
                "5",
                "--seeds",
                "0",
                "--classifier",
                "prototype",
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "results"),
            ]
        )
        == 0
    )
