"""CLI-facing pipelines: what a ``fewshot`` subcommand does, as one library call.

Each validates its arguments first, does the work and writes one output atomically, recording
provenance:

- :func:`extract_to_file` (``fewshot extract``) writes the features of one split;
- :func:`evaluate_to_directory` (``fewshot evaluate``, the demo and every sweep cell) runs a
  protocol on a features file and writes a results directory.

The computations live in :mod:`fewshot.features` and :mod:`fewshot.evaluation`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from fewshot._device import resolve_device
from fewshot._io import atomic_dir, check_output_dir, check_output_file, write_bytes
from fewshot._manifest import environment_info, make_manifest
from fewshot._validate import check_int
from fewshot.classifiers import is_transductive
from fewshot.classifiers.options import classifier_parameters
from fewshot.data import load_split
from fewshot.episode_cache import default_episode_cache_dir
from fewshot.episodes import episodes_filename
from fewshot.evaluation import run_protocol
from fewshot.features import features_image_size, load_features, save_features
from fewshot.overlap import label_set_of_model, label_set_synsets, warn_overlap
from fewshot.protocol import EvalProtocol
from fewshot.results import read_results, write_results
from fewshot.runs import check_run_name
from fewshot.stats import summarize

__all__ = ["ExtractResult", "evaluate_to_directory", "extract_to_file"]


class ExtractResult(NamedTuple):
    """What :func:`extract_to_file` wrote."""

    path: Path
    fingerprint: str
    n: int
    dim: int
    backbone: str
    input_size: tuple[int, int, int]
    cache_hit: bool
    seconds: float


def extract_to_file(
    out: str | os.PathLike,
    *,
    dataset: str,
    split: str = "test",
    data_root: str | os.PathLike | None = None,
    backbone: str | None = None,
    pretrained: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    seed: int | None = 0,
    img_size: int | None = None,
    crop_pct: float | None = None,
    batch_size: int = 256,
    num_workers: int | None = None,
    device: torch.device | str | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    progress: bool = True,
    run: str | None = None,
    pretrained_on: str | None = None,
    channels_last: bool | None = None,
    fold_batchnorm: bool = True,
) -> ExtractResult:
    """Features of ``dataset``/``split`` from a backbone or a fine-tuned checkpoint, to ``out``.

    What ``fewshot extract`` runs. Give either ``backbone`` (a timm name, with ``pretrained``
    None/"hub"/PATH and ``seed`` for a random initialisation) or ``checkpoint`` (a directory
    from ``fewshot finetune``; its backbone and recorded preprocessing are used). With
    ``use_cache`` the extraction goes through :func:`extract_cached` in ``cache_dir``
    (default :func:`default_cache_dir`), so a repeat is read from disk without a forward pass.
    ``run`` names the training run in the file (key ``run``); default: the checkpoint's run
    (``seed-<S>`` for ``fewshot finetune`` runs), ``""`` for a plain backbone.

    Pretraining overlap: the label set the weights were trained on is ``pretrained_on`` (a
    key of :data:`fewshot.overlap.LABEL_SETS`), else, for timm's weights (``pretrained="hub"``,
    or a checkpoint fine-tuned from them), the one its pretrained tag names
    (:func:`fewshot.overlap.label_set_of_model`). A checkpoint with a neck (``fewshot finetune
    --neck-dims``) gives the neck's output: the backbone's features (through the cache, so the
    frozen backbone of many runs is run once per split) mapped by the neck in float32. When the split shares classes with it, one
    :class:`~fewshot.overlap.PretrainingOverlapWarning` is issued and the feature file's
    manifest records ``pretraining_overlap`` (:func:`fewshot.overlap.overlap_summary`).
    ``channels_last``: the memory format of the forward passes, as
    :func:`~fewshot.features.extract_features` (None: by backbone family); ``fold_batchnorm``:
    BatchNorm folded into the convolutions for the forward passes (default), as there.

    Raises:
        ValueError: conflicting or missing arguments, an output not ending in ``.npz``, a bad
            dataset/split/backbone; FileNotFoundError: missing data, weights or checkpoint.
    """
    from fewshot.features import default_cache_dir  # timm-backed: see _ExtractSource

    if checkpoint is None and backbone is None:
        raise ValueError("give a backbone name (--backbone) or a checkpoint directory (--checkpoint)")
    check_int("batch_size", batch_size)
    out = Path(out)
    if out.suffix != ".npz":
        raise ValueError(f"output must end in .npz, got {out}")
    if run is not None:
        check_run_name(run, "run")
    inputs = [checkpoint, data_root]
    if pretrained not in (None, "hub"):
        inputs.append(pretrained)
    check_output_file(out, inputs=inputs)
    resolve_device(device)  # a device this machine has, before any work

    src = _load_source(backbone, pretrained, checkpoint, seed=seed, img_size=img_size, crop_pct=crop_pct, run=run)
    pretrained_on = _label_set(src, pretrained_on)
    split_data = load_split(dataset, split, data_root)
    record = _extract_record(src, dataset, split, pretrained_on)
    options: dict[str, Any] = dict(
        preprocessing=src.preprocessing,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        progress=progress,
        manifest=record,
        run=src.run,
        channels_last=channels_last,
        fold_batchnorm=fold_batchnorm,
    )
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if use_cache and out.parent.resolve() == cache.resolve():
        raise ValueError(f"output {out} lies in the feature cache {cache}; write it elsewhere or pass --no-cache")
    t0 = time.perf_counter()
    hit = _write_extracted(out, src, split_data, use_cache=use_cache, cache=cache, options=options)
    with np.load(out, allow_pickle=False) as data:
        shape, fingerprint = data["features"].shape, str(data["fingerprint"])
    name = f"{src.name}+neck" if src.neck is not None else src.name
    return ExtractResult(
        out,
        fingerprint,
        int(shape[0]),
        int(shape[1]),
        name,
        tuple(src.preprocessing.input_size),
        hit,
        time.perf_counter() - t0,
    )


@dataclasses.dataclass
class _ExtractSource:
    """What features are extracted with: the backbone (and a checkpoint's neck), its
    preprocessing, its name, where its weights came from and the training run's name.

    The timm-backed modules (backbones, checkpoint, features' extraction) are imported by the
    functions that need them: importing this module (it also serves ``fewshot evaluate``)
    loads no timm."""

    model: nn.Module
    preprocessing: Any
    name: str
    source: dict[str, Any]
    run: str
    neck: nn.Module | None = None


def _load_source(
    backbone: str | None,
    pretrained: str | None,
    checkpoint: str | os.PathLike | None,
    *,
    seed: int | None,
    img_size: int | None,
    crop_pct: float | None,
    run: str | None,
) -> _ExtractSource:
    """The backbone of a checkpoint directory (its recorded preprocessing, resized on request,
    its run and neck) or a timm backbone (random init with ``seed``, hub or file weights),
    checked against the preprocessing's input size."""
    from fewshot.backbones import create_backbone
    from fewshot.checkpoint import checkpoint_run, load_checkpoint, load_heads
    from fewshot.features import check_input_size
    from fewshot.transforms import resolve_preprocessing

    neck: nn.Module | None = None
    if checkpoint is not None:
        if pretrained is not None:
            raise ValueError("pretrained weights conflict with a checkpoint (the checkpoint holds the weights)")
        model, pp, meta = load_checkpoint(checkpoint)
        if "neck" in (meta.get("heads") or {}):
            neck = load_heads(checkpoint)["neck"]
        name = meta["backbone"]["name"]
        if backbone is not None and backbone != name:
            raise ValueError(f"backbone {backbone} differs from the checkpoint's backbone {name}")
        if img_size is not None or crop_pct is not None:
            size = pp.input_size if img_size is None else (pp.input_size[0], img_size, img_size)
            pp = dataclasses.replace(pp, input_size=size, crop_pct=crop_pct or pp.crop_pct)
        source = {"checkpoint": str(Path(checkpoint).resolve()), "sha256": meta["backbone"]["sha256"]}
        if run is None:
            run = checkpoint_run(meta)
        if (meta.get("config") or {}).get("pretrained") == "hub":
            source["from_hub"] = True
    else:
        name = str(backbone)
        model = create_backbone(name, pretrained, seed=seed)
        pp = resolve_preprocessing(model, img_size=img_size, crop_pct=crop_pct)
        weights = pretrained if pretrained in (None, "hub") else str(Path(pretrained).resolve())
        source = {"pretrained": weights, "seed": seed if pretrained is None else None}
    check_input_size(model, pp)
    return _ExtractSource(model, pp, name, source, run or "", neck)


def _label_set(src: _ExtractSource, pretrained_on: str | None) -> str | None:
    """The label set the weights were trained on: ``pretrained_on`` (validated), else the one
    timm's pretrained tag names for hub weights, else None (unknown)."""
    if pretrained_on is not None:
        label_set_synsets(pretrained_on)  # validates the name
        return pretrained_on
    if src.source.get("pretrained") == "hub" or src.source.get("from_hub"):
        return label_set_of_model(src.name)
    return None


def _extract_record(src: _ExtractSource, dataset: str, split: str, pretrained_on: str | None) -> dict[str, Any]:
    """The feature file's manifest: backbone, weights' source, run, environment and, when the
    weights' label set shares classes with the split, the pretraining overlap (warned once)."""
    record: dict[str, Any] = {
        "kind": "extract",
        "backbone": src.name,
        "source": src.source,
        "run": src.run,
        "environment": environment_info(),
    }
    overlap = warn_overlap(dataset, split, pretrained_on)
    if overlap is not None:
        record["pretraining_overlap"] = overlap
    return record


def _write_extracted(
    out: Path, src: _ExtractSource, split: Any, *, use_cache: bool, cache: Path, options: dict[str, Any]
) -> bool:
    """Write the features of ``split`` to ``out``: through the cache (copied out of it) or
    directly; a neck maps the backbone's (cached) features. Whether they came from the cache."""
    from fewshot.features import extract_cached, write_features

    if src.neck is not None:  # backbone features (cached: a frozen backbone's are shared by every run), then the neck
        return _write_necked(out, src.model, src.neck, split, use_cache=use_cache, cache_dir=cache, options=options)
    if use_cache:
        cached, hit = extract_cached(src.model, split, cache, **options)
        if cached.resolve() != out.resolve():
            write_bytes(out, cached.read_bytes())
        return hit
    write_features(src.model, split, out, **options)
    return False


def _write_necked(
    out: Path,
    backbone: nn.Module,
    neck: nn.Module,
    split: Any,
    *,
    use_cache: bool,
    cache_dir: str | os.PathLike | None,
    options: dict[str, Any],
) -> bool:
    """Write ``neck(backbone features)`` of ``split`` to ``out``; whether the backbone's came from the cache."""
    # timm-backed, imported on use (see extract_to_file)
    from fewshot.backbones.weights import state_dict_sha256
    from fewshot.features import default_cache_dir, extract_cached, split_identity, write_features

    options = dict(options)
    manifest, run = dict(options.pop("manifest")), options.pop("run")
    if use_cache:
        path, hit = extract_cached(backbone, split, cache_dir or default_cache_dir(), **options, run="")
    else:
        path, hit = Path(str(out) + ".backbone.npz"), False
        write_features(backbone, split, path, **options)
    try:
        with np.load(path, allow_pickle=False) as data:
            base, labels, key = data["features"], data["labels"], str(data["cache_key"])
    finally:
        if not use_cache:
            path.unlink(missing_ok=True)
    neck = neck.eval().float().cpu()
    with torch.inference_mode():
        feats = torch.cat([neck(torch.from_numpy(c)) for c in np.array_split(base, max(1, len(base) // 4096))]).numpy()
    neck_sha = state_dict_sha256(neck)
    manifest.update(neck={"dims": list(getattr(neck, "dims", ())), "weights_sha256": neck_sha}, backbone_cache_key=key)
    sid = split_identity(split)
    save_features(
        out,
        feats,
        labels,
        class_names=sid["class_names"],
        dataset=sid["dataset"],
        split=sid["split"],
        run=run,
        cache_key=hashlib.sha256(f"{key}|neck|{neck_sha}|{run}".encode()).hexdigest(),
        manifest=manifest,
    )
    return hit


def evaluate_to_directory(
    features_path: str | Path,
    out_dir: str | Path,
    protocol: EvalProtocol | None = None,
    *,
    classifier: str = "logreg",
    classifier_kwargs: dict[str, Any] | None = None,
    label: str | None = None,
    run: str | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    base_features: str | Path | None = None,
    per_class: bool = False,
    episode_cache_dir: str | Path | None = None,
    use_episode_cache: bool = True,
) -> Any:
    """Run a protocol on a features file and write a results directory (what the CLI does).

    Everything is validated and computed first; the directory (per-episode CSV, summary CSV,
    episode files, ``manifest.json``) is then written under a temporary name and renamed into
    place, so bad input writes nothing and an interrupted run leaves no partial results.

    Args:
        features_path: a features ``.npz`` (see :func:`fewshot.features.load_features`).
        out_dir: the results directory; an existing one is replaced only when it is empty or
            holds an earlier ``fewshot evaluate`` result (its manifest says so), and it may
            not be or contain the features or protocol file.
        protocol: a :class:`fewshot.protocol.EvalProtocol` (default: the papers' protocol).
            ``protocol.dataset``/``split`` of None take the features file's; a protocol naming a
            different dataset than the file records is refused.
        classifier, classifier_kwargs, device: see :func:`fewshot.evaluation.evaluate`.
        label: the method's label in tables (default: the directory name).
        run: the training run's name, written in every row and the manifest (default: the
            features file's ``run``, written by ``fewshot extract --checkpoint``); results
            with one label and several runs are replicates of that method.
        base_features: a features file of the *base* classes; its mean feature becomes the
            classifier's ``base_mean`` (``simpleshot``'s CL2N centring) and its path and
            fingerprint are recorded in the manifest. Refused for classifiers without a
            ``base_mean`` parameter.

        per_class: keep per-class correct counts in the per-episode rows (see
            :func:`fewshot.evaluation.run_protocol`), for ``fewshot compare --per-class``.
        episode_cache_dir: the episode cache (:mod:`fewshot.episode_cache`; default:
            :func:`~fewshot.episode_cache.default_episode_cache_dir`, beside the feature
            cache): a second method or run on features with the same labels and protocol
            reads its episodes there instead of sampling them. The results are identical.
        use_episode_cache: False: neither read nor write the episode cache.

    The summary's CI uses ``protocol.ci`` (``"t"`` or ``"z"``).

    Returns:
        The written :class:`fewshot.results.Results`.
    """
    protocol = protocol or EvalProtocol()
    check_output_dir(out_dir, "evaluate", inputs=[features_path, protocol.path, base_features])
    episode_cache = None
    if use_episode_cache:
        episode_cache = Path(episode_cache_dir) if episode_cache_dir is not None else default_episode_cache_dir()
    if episode_cache is not None and episode_cache.exists() and not episode_cache.is_dir():
        raise ValueError(f"episode cache {episode_cache} is not a directory")
    if run is not None:
        check_run_name(run, "run")
    clf_kwargs = dict(classifier_kwargs or {})
    base_record = None
    if base_features is not None:
        if "base_mean" not in classifier_parameters(classifier):
            raise ValueError(
                f"base features are used only by classifiers with a base_mean (simpleshot), not by {classifier!r}"
            )
        base = load_features(base_features)
        clf_kwargs["base_mean"] = base.features.astype(np.float64).mean(0)
        base_record = {
            "path": str(base_features),
            "fingerprint": base.fingerprint,
            "n": int(base.labels.size),
            "dim": int(base.features.shape[1]),
        }
    fs = load_features(features_path)
    if protocol.dataset and fs.dataset not in ("custom", protocol.dataset):
        raise ValueError(
            f"{features_path} holds features of dataset {fs.dataset!r} but the protocol is for {protocol.dataset!r}"
        )
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        df = run_protocol(
            fs,
            dataset=protocol.dataset,
            split=protocol.split,
            run=run,
            n_way=protocol.ways,
            shots=protocol.shots,
            n_query=protocol.queries,
            n_episodes=protocol.episodes,
            seeds=protocol.seeds,
            classifier=classifier,
            classifier_kwargs=clf_kwargs,
            device=device,
            episodes_dir=tmp / "episodes",
            progress=progress,
            per_class=per_class,
            episode_cache_dir=episode_cache,
        )
        runs = df.groupby(["n_way", "n_shot", "n_query", "seed"], sort=True).episodes_fingerprint.first()
        episode_files = {episodes_filename(*key): fingerprint for key, fingerprint in runs.items()}
        config = {
            **protocol.to_dict(),
            "dataset": str(df.dataset.iloc[0]),
            "split": str(df.split.iloc[0]),
            "classifier": classifier,
            "classifier_kwargs": {k: v for k, v in clf_kwargs.items() if k != "base_mean"},
            "transductive": is_transductive(classifier),
            "per_class": bool(per_class),
        }
        if base_record is not None:
            config["base_features"] = base_record
        manifest = make_manifest(
            "evaluate",
            config,
            label=label or out.name,
            run=str(df.run.iloc[0]),
            features={
                "path": str(features_path),
                "fingerprint": fs.fingerprint,
                "n": int(fs.labels.size),
                "dim": int(fs.features.shape[1]),
                "image_size": features_image_size(features_path),
            },
            episodes=episode_files,
            protocol_file={"path": protocol.path, "sha256": protocol.sha256} if protocol.path else None,
        )
        write_results(tmp, df, summarize(df, ci=protocol.ci), manifest)
    return read_results(out)
