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
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fewshot._io import write_bytes, write_csv, write_json

__all__ = [
    "EPISODE_COLUMNS",
    "EPISODES_FILE",
    "PER_CLASS_COLUMN",
    "Results",
    "write_results",
    "read_results",
    "check_rows",
]

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
        ValueError: an unreadable manifest (or one that is not a JSON object) or table, a
            missing column, or rows that fail :func:`check_rows`.
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
                f"{p} is missing: {path} is not a complete results directory (written by `fewshot evaluate --out`)"
            )
    manifest = _read_manifest(manifest_path)
    try:
        df = pd.read_csv(table_path, dtype={"run": str})
    except (ValueError, OSError, EOFError, zlib.error, MemoryError) as exc:  # ParserError, BadGzipFile
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{table_path}: not a readable per-episode table ({first})") from None
    if "run" not in df.columns:  # results written before training runs were recorded
        df.insert(EPISODE_COLUMNS.index("run"), "run", str(manifest.get("run") or ""))
    df["run"] = df["run"].fillna("").astype(str)
    missing = [c for c in EPISODE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{table_path} lacks columns {missing}")
    check_rows(df, manifest, table_path)
    return Results(path=path, episodes=df, manifest=manifest)


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:  # JSONDecodeError, UnicodeDecodeError
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{path}: not a readable manifest ({first})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    return manifest


#: Columns that identify one episode's row (``run`` too, where the table has one).
_ROW_KEY = ("dataset", "n_way", "n_shot", "n_query", "seed", "episode", "run")


def check_rows(df: pd.DataFrame, manifest: dict[str, Any], where: str | Path) -> None:
    """Refuse per-episode rows that cannot be what ``fewshot evaluate`` wrote.

    Checks: integer sizes, accuracies finite and in [0, 1]; no episode twice; and, where the manifest records them, the
    features fingerprint, the episode fingerprints, ways, shots, queries, seeds and the number
    of episodes per (shot, seed) agree with the rows.

    Raises:
        ValueError: the first disagreement, naming ``where``.
    """
    import numpy as np

    if df.empty:
        raise ValueError(f"{where}: the per-episode table has no rows")
    for col in ("n_way", "n_shot", "n_query", "seed", "episode"):
        if not pd.api.types.is_integer_dtype(df[col]):
            raise ValueError(f"{where}: column {col} must hold integers, got {df[col].dtype}")
    acc = pd.to_numeric(df["accuracy"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(acc) | (acc < 0) | (acc > 1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{where}: accuracy must be a fraction in [0, 1], got {float(acc[i])!r} in row {i + 2}")
    key = [c for c in _ROW_KEY if c in df.columns]
    dup = df.duplicated(key)
    if dup.any():
        i = int(np.argmax(dup.to_numpy()))
        shown = ", ".join(f"{c}={df[c].iloc[i]}" for c in key)
        raise ValueError(f"{where}: episode ({shown}) appears more than once (row {i + 2})")
    features = manifest.get("features")
    if isinstance(features, dict) and isinstance(features.get("fingerprint"), str):
        other = set(df["features_fingerprint"].astype(str)) - {features["fingerprint"]}
        if other:
            raise ValueError(
                f"{where}: rows carry features fingerprint {sorted(other)[0][:12]}… but the manifest records {features['fingerprint'][:12]}…"
            )
    episodes = manifest.get("episodes")
    if isinstance(episodes, dict) and episodes and all(isinstance(v, str) for v in episodes.values()):
        rows, recorded = set(df["episodes_fingerprint"].astype(str)), set(episodes.values())
        if rows != recorded:
            raise ValueError(
                f"{where}: the episodes fingerprints of the rows do not match the manifest's episode files"
            )
    config = manifest.get("config")
    if isinstance(config, dict):
        for field, col in (("ways", "n_way"), ("queries", "n_query")):
            if isinstance(config.get(field), int) and set(df[col]) != {config[field]}:
                raise ValueError(
                    f"{where}: rows have {col} {sorted(set(df[col]))} but the manifest records {field} = {config[field]}"
                )
        for field, col in (("shots", "n_shot"), ("seeds", "seed")):
            if isinstance(config.get(field), list) and set(df[col]) != set(config[field]):
                raise ValueError(
                    f"{where}: rows have {col} {sorted(set(df[col]))} but the manifest records {field} = {config[field]}"
                )
        n = config.get("episodes")
        if isinstance(n, int):
            counts = df.groupby([c for c in ("dataset", "n_way", "n_shot", "seed", "run") if c in df.columns]).size()
            wrong = counts[counts != n]
            if len(wrong):
                raise ValueError(
                    f"{where}: {int(wrong.iloc[0])} episodes for {wrong.index[0]} but the manifest records episodes = {n}"
                )
