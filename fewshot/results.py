"""The on-disk layout of an evaluation's results directory.

``fewshot evaluate --out DIR`` writes::

    DIR/per_episode.csv.gz  one row per episode (columns: EPISODE_COLUMNS), gzip-compressed CSV
                          (``pandas.read_csv`` reads it directly; written with mtime 0, so the
                          bytes depend only on the content)
    DIR/summary.csv       one row per (dataset, n_way, n_shot, seed): mean, std, ci95, n
    DIR/episodes/*.npz    the sampled episodes, compressed (see fewshot.episodes.Episodes.save)
    DIR/manifest.json     resolved config, versions, fingerprints and the method ``label``

All files are written atomically; ``manifest.json`` is written last, so a directory without
it is an interrupted run and :func:`read_results` refuses it.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fewshot._io import write_bytes, write_csv, write_json

__all__ = ["EPISODE_COLUMNS", "EPISODES_FILE", "PER_CLASS_COLUMN", "Results", "write_results", "read_results"]

#: Optional per-class columns kept after :data:`EPISODE_COLUMNS` (``fewshot evaluate
#: --per-class``): ``class_k`` (name of the episode's k-th class) and ``correct_k``.
PER_CLASS_COLUMN = re.compile(r"(class|correct)_\d+")

#: File name of the per-episode table inside a results directory.
EPISODES_FILE = "per_episode.csv.gz"

#: Columns of the per-episode table, in order. ``run`` names the training run whose
#: features were scored (e.g. ``seed-0``; empty when the features record none): results of
#: one label with several ``run`` values are training replicates of that method.
EPISODE_COLUMNS: tuple[str, ...] = (
    "dataset",
    "split",
    "run",
    "n_way",
    "n_shot",
    "n_query",
    "seed",
    "episode",
    "accuracy",
    "classifier",
    "features_fingerprint",
    "episodes_fingerprint",
)


@dataclass(frozen=True)
class Results:
    """A results directory read back: per-episode rows, the manifest and its label."""

    path: Path
    episodes: pd.DataFrame
    manifest: dict[str, Any]

    @property
    def label(self) -> str:
        """The method's label: ``manifest["label"]``, else the directory name."""
        return str(self.manifest.get("label") or self.path.name)


def write_results(
    out_dir: str | Path,
    per_episode: pd.DataFrame,
    summary: pd.DataFrame,
    manifest: dict[str, Any],
) -> Path:
    """Write per-episode rows, the summary and (last) the manifest into ``out_dir``."""
    out = Path(out_dir)
    missing = [c for c in EPISODE_COLUMNS if c not in per_episode.columns]
    if missing:
        raise ValueError(f"per-episode results lack columns {missing}")
    out.mkdir(parents=True, exist_ok=True)
    per_class = [c for c in per_episode.columns if PER_CLASS_COLUMN.fullmatch(str(c))]
    text = per_episode.loc[:, [*EPISODE_COLUMNS, *per_class]].to_csv(index=False, lineterminator="\n")
    write_bytes(out / EPISODES_FILE, gzip.compress(text.encode("utf-8"), mtime=0))
    write_csv(out / "summary.csv", summary)
    write_json(out / "manifest.json", manifest)
    return out


def read_results(path: str | Path) -> Results:
    """Read a results directory written by :func:`write_results`.

    Raises:
        FileNotFoundError: ``path`` is missing, or has no ``manifest.json`` or per-episode table
            (an interrupted run).
        ValueError: the per-episode table lacks a required column.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"results directory not found: {path}")
    manifest_path = path / "manifest.json"
    table_path = path / EPISODES_FILE
    if not table_path.is_file() and (path / "per_episode.csv").is_file():
        table_path = path / "per_episode.csv"  # an uncompressed copy is read as well
    for p in (manifest_path, table_path):
        if not p.is_file():
            raise FileNotFoundError(
                f"{p} is missing: {path} is not a complete results directory "
                "(written by `fewshot evaluate --out`)"
            )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    df = pd.read_csv(table_path, dtype={"run": str})
    if "run" not in df.columns:  # results written before training runs were recorded
        df.insert(EPISODE_COLUMNS.index("run"), "run", str(manifest.get("run") or ""))
    df["run"] = df["run"].fillna("").astype(str)
    missing = [c for c in EPISODE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{table_path} lacks columns {missing}")
    return Results(path=path, episodes=df, manifest=manifest)
