"""CLI-facing pipelines: what a ``fewshot`` subcommand does, as one library call.

:func:`evaluate_to_directory` runs a protocol on a features file and writes a results
directory (``fewshot evaluate``, the demo and every sweep cell call it). The computations
live in :mod:`fewshot.evaluation`; this module validates paths, writes atomically and
records provenance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fewshot._io import atomic_dir, check_output_dir
from fewshot._manifest import make_manifest
from fewshot.classifiers.options import classifier_parameters
from fewshot.classifiers import is_transductive
from fewshot.episode_cache import default_episode_cache_dir
from fewshot.episodes import episodes_filename
from fewshot.evaluation import load_features, run_protocol
from fewshot.feature_formats import features_image_size
from fewshot.protocol import EvalProtocol
from fewshot.results import read_results, write_results
from fewshot.runs import check_run_name
from fewshot.stats import summarize

__all__ = ["evaluate_to_directory"]


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
        features_path: a features ``.npz`` (see :func:`fewshot.evaluation.load_features`).
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
            raise ValueError(f"base features are used only by classifiers with a base_mean (simpleshot), not by {classifier!r}")
        base = load_features(base_features)
        clf_kwargs["base_mean"] = base.features.astype(np.float64).mean(0)
        base_record = {"path": str(base_features), "fingerprint": base.fingerprint, "n": int(base.labels.size), "dim": int(base.features.shape[1])}
    fs = load_features(features_path)
    if protocol.dataset and fs.dataset not in ("custom", protocol.dataset):
        raise ValueError(
            f"{features_path} holds features of dataset {fs.dataset!r} but the protocol is for "
            f"{protocol.dataset!r}"
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
