"""One sweep cell: fine-tune -> extract -> evaluate, each stage resumed or skipped when done.

A cell directory holds ``run/`` (the fine-tuning run), ``features.npz``, ``results/`` and,
written last, ``cell.json``: the cell's settings, the protocol and the fingerprints of what
each stage produced. A cell is *finished* when ``cell.json`` matches the current settings and
every fingerprint still matches the files; it is then skipped. Otherwise each stage is checked
in turn: a finished run is reused (an interrupted one resumes from ``run/last``), features whose
checkpoint hash matches are reused, results that read back with these features are reused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from fewshot._io import write_json
from fewshot.sweep.spec import Cell, SweepSpec

__all__ = ["CellOutcome", "run_cell", "cell_finished", "CELL_MANIFEST"]

logger = logging.getLogger(__name__)

#: The manifest that marks a finished cell.
CELL_MANIFEST = "cell.json"


@dataclasses.dataclass(frozen=True)
class CellOutcome:
    """What :func:`run_cell` did: ``status`` is ``"skipped"`` (finished before), ``"ran"``
    (every stage computed) or ``"resumed"`` (some stages reused); ``stages`` lists those run."""

    cell: str
    status: str
    stages: tuple[str, ...]
    directory: Path


def _identity(spec: SweepSpec, cell: Cell) -> dict[str, Any]:
    from fewshot.training.config import RESUME_FREE_KEYS

    config = spec.cell_config(cell).to_dict()
    return {
        "cell": cell.id,
        "values": dict(cell.values),
        "finetune": {k: v for k, v in sorted(config.items()) if k not in RESUME_FREE_KEYS},
        "protocol": {k: v for k, v in spec.protocol(cell).to_dict().items() if k not in ("path", "sha256")},
        "classifier": spec.evaluate.get("classifier", "logreg"),
        "extract": {"split": spec.evaluate.get("split", "test"), "data_root": spec.evaluate.get("data_root")},
    }


def _json_equal(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _features_fingerprint(path: Path) -> tuple[str, str] | None:
    """``(fingerprint, checkpoint sha256)`` of an intact feature file, else None."""
    from fewshot._io import sha256_arrays

    try:
        with np.load(path, allow_pickle=False) as data:
            fingerprint = str(data["fingerprint"])
            if fingerprint != sha256_arrays(
                np.ascontiguousarray(data["features"]), np.ascontiguousarray(data["labels"])
            ):
                return None
            source = json.loads(str(data["manifest"])).get("source", {})
    except Exception:  # missing, truncated, not ours: recompute
        return None
    return fingerprint, str(source.get("sha256"))


def _results_fingerprint(path: Path) -> str | None:
    from fewshot.results import read_results

    try:
        return str(read_results(path).manifest["features"]["fingerprint"])
    except Exception:  # absent or interrupted results directory
        return None


def cell_finished(spec: SweepSpec, cell: Cell) -> bool:
    """Whether ``cell``'s manifest matches its settings and every recorded fingerprint."""
    from fewshot.checkpoint import read_checkpoint_meta

    directory = spec.cell_dir(cell)
    try:
        record = json.loads((directory / CELL_MANIFEST).read_text("utf-8"))
        if not _json_equal(record["identity"], _identity(spec, cell)):
            return False
        sha = read_checkpoint_meta(directory / "run" / "best")["backbone"]["sha256"]
    except (OSError, ValueError, KeyError):
        return False
    features = _features_fingerprint(directory / "features.npz")
    return (
        sha == record["checkpoint_sha256"]
        and features == (record["features_fingerprint"], sha)
        and _results_fingerprint(directory / "results") == record["features_fingerprint"]
    )


def _finetune(config: Any) -> Any:
    from fewshot.training import finetune

    run_dir = Path(config.out)
    if (run_dir / "last").is_dir():
        return finetune(config, resume=True)  # a finished run comes back at once
    if run_dir.exists():  # interrupted before its first checkpoint: nothing to keep
        shutil.rmtree(run_dir)
    return finetune(config)


def run_cell(spec: SweepSpec, cell: Cell) -> CellOutcome:
    """Bring ``cell`` to finished: run (or resume) whatever stage is not done.

    This is also the job function ``--executor slurm`` submits (one job per cell).

    Raises:
        ValueError: the cell's manifest records other settings than the sweep file gives
            (change ``out`` to start another sweep); errors of the stages.
    """
    from fewshot.checkpoint import read_checkpoint_meta
    from fewshot.pipeline import evaluate_to_directory, extract_to_file

    directory = spec.cell_dir(cell)
    identity = _identity(spec, cell)
    manifest = directory / CELL_MANIFEST
    if manifest.is_file():
        try:
            recorded = json.loads(manifest.read_text("utf-8")).get("identity")
        except ValueError:
            recorded = None
        if recorded is not None and not _json_equal(recorded, identity):
            changed = sorted(k for k in identity if not _json_equal(recorded.get(k), identity[k]))
            raise ValueError(
                f"sweep cell {cell.id} in {directory} was run with other settings ({', '.join(changed)} differ); "
                f"use another sweep out directory"
            )
        if cell_finished(spec, cell):
            logger.info("cell %s: finished, skipped", cell.id)
            return CellOutcome(cell.id, "skipped", (), directory)
    stages = []
    config = spec.cell_config(cell)
    run_dir = Path(config.out)
    meta = None
    if (run_dir / "manifest.json").is_file():
        try:
            if json.loads((run_dir / "manifest.json").read_text("utf-8")).get("status") == "finished":
                meta = read_checkpoint_meta(run_dir / "best")
        except (OSError, ValueError):
            meta = None
    if meta is None:
        logger.info("cell %s: fine-tuning", cell.id)
        _finetune(config)
        stages.append("finetune")
        meta = read_checkpoint_meta(run_dir / "best")
    sha = meta["backbone"]["sha256"]

    features = directory / "features.npz"
    found = _features_fingerprint(features)
    if found is None or found[1] != sha:
        logger.info("cell %s: extracting features", cell.id)
        extract_to_file(
            features,
            dataset=config.dataset,
            split=spec.evaluate.get("split", "test"),
            data_root=spec.evaluate.get("data_root", config.data_root),
            checkpoint=run_dir / "best",
            use_cache=False,
            progress=False,
            device=config.device,
        )
        stages.append("extract")
        found = _features_fingerprint(features)
    fingerprint = found[0]

    results = directory / "results"
    if _results_fingerprint(results) != fingerprint:
        logger.info("cell %s: evaluating", cell.id)
        evaluate_to_directory(
            features,
            results,
            spec.protocol(cell),
            classifier=identity["classifier"],
            label=cell.id,
            device=config.device,
            progress=False,
        )
        stages.append("evaluate")

    from fewshot._manifest import make_manifest

    write_json(
        manifest,
        make_manifest(
            "sweep-cell",
            identity["finetune"],
            identity=identity,
            checkpoint_sha256=sha,
            features_fingerprint=fingerprint,
        ),
    )
    status = "ran" if len(stages) == 3 else "resumed"
    return CellOutcome(cell.id, status, tuple(stages), directory)
