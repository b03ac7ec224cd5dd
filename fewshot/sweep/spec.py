"""A sweep file: fine-tuning settings shared by every cell, a grid over some of them, the protocol.

```toml
out = "sweeps/lambda"        # relative to the sweep file's folder (default: its stem beside it)

[finetune]                   # FinetuneConfig settings shared by every cell (no `out`)
backbone = "conv4"
dataset = "digits"
epochs = 20

[grid]                       # the axes: every combination is one cell
lam = [0.0, 0.25, 0.5, 0.75, 0.9, 1.0]
seed = [0, 1, 2]             # the training seed is part of every cell's identity

[evaluate]                   # fewshot.protocol.EvalProtocol fields, plus `classifier` and the
shots = [1, 5]               # extraction split (`split`, default "test") and `data_root`
episodes = 600
```

Grid axes may be any :class:`~fewshot.training.FinetuneConfig` setting but ``out``; the
studies of the papers sweep ``lam``, ``temperature``, ``batch_size``, ``objective``, ``seed``
and ``dataset``. A cell is identified by its grid values (a readable directory name such as
``dataset=digits,lam=0.9,seed=0``), and its resolved settings are recorded in its manifest.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fewshot.classifiers import list_classifiers
from fewshot.protocol import load_protocol

__all__ = ["Cell", "SweepSpec", "load_sweep", "STUDY_AXES"]

#: The axes of the papers' studies (λ: Fig. 2, batch size: Table 3, objective: Table 4).
STUDY_AXES: tuple[str, ...] = ("dataset", "objective", "lam", "temperature", "batch_size", "seed")

_TOP_KEYS = {"out", "finetune", "grid", "evaluate", "slurm"}
_EVAL_KEYS = {"ways", "shots", "queries", "episodes", "seeds", "classifier", "split", "data_root"}


@dataclasses.dataclass(frozen=True)
class Cell:
    """One grid point: ``values`` (axis -> value, in grid order) and its directory name ``id``."""

    values: tuple[tuple[str, Any], ...]

    @property
    def id(self) -> str:
        return ",".join(f"{k}={_show(v)}" for k, v in self.values)

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.values).get(key, default)


def _show(value: Any) -> str:
    text = format(value, "g") if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text)


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file (see the module docstring).

    Attributes:
        out: the sweep directory (``cells/<cell id>/``, ``summary.csv``, figures).
        finetune: shared fine-tuning settings.
        grid: axis -> values, in file order.
        evaluate: protocol settings (``EvalProtocol`` fields), ``classifier``, ``split``, ``data_root``.
        slurm: ``submitit`` executor parameters for ``--executor slurm`` (e.g. ``timeout_min``).
        path: the sweep file.
    """

    out: Path
    finetune: dict[str, Any]
    grid: dict[str, list[Any]]
    evaluate: dict[str, Any]
    slurm: dict[str, Any]
    path: Path | None = None

    def cells(self) -> list[Cell]:
        """Every combination of the grid, the last axis varying fastest."""
        axes = list(self.grid)
        return [Cell(tuple(zip(axes, combo))) for combo in itertools.product(*(self.grid[a] for a in axes))]

    def cell_dir(self, cell: Cell) -> Path:
        return self.out / "cells" / cell.id

    def cell_config(self, cell: Cell) -> Any:
        """The :class:`~fewshot.training.FinetuneConfig` of ``cell`` (its run dir: ``<cell>/run``)."""
        from fewshot.training import FinetuneConfig

        settings = {**self.finetune, **dict(cell.values), "out": str(self.cell_dir(cell) / "run")}
        settings.setdefault("progress", False)
        return FinetuneConfig.from_dict(settings, source=f"sweep cell {cell.id}")

    def protocol(self, cell: Cell) -> Any:

        fields = {k: v for k, v in self.evaluate.items() if k not in ("classifier", "split", "data_root")}
        return load_protocol(
            None, dataset=self.cell_config(cell).dataset, split=self.evaluate.get("split", "test"), **fields
        )


def load_sweep(path: str | os.PathLike, *, out: str | os.PathLike | None = None) -> SweepSpec:
    """Read and check a sweep file; every cell's settings are validated before anything runs.

    Args:
        path: the TOML file.
        out: the sweep directory instead of the file's ``out``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: invalid TOML, unknown tables or keys, an empty or duplicated axis, an axis
            ``out``, a setting both shared and swept, or a cell whose settings are invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot parse {path} as TOML: {exc}") from None
    return sweep_from_dict(data, base=path.parent, default_out=path.with_suffix(""), out=out, path=path)


def sweep_from_dict(
    data: Mapping[str, Any],
    *,
    base: Path,
    default_out: Path,
    out: str | os.PathLike | None = None,
    path: Path | None = None,
) -> SweepSpec:
    """:func:`load_sweep` on an already parsed mapping (same checks)."""
    where = str(path) if path else "sweep"
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; expected {sorted(_TOP_KEYS)}")
    tables = {}
    for key in ("finetune", "grid", "evaluate", "slurm"):
        value = data.get(key, {})
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: [{key}] must be a table, got {value!r}")
        tables[key] = {str(k).replace("-", "_"): v for k, v in value.items()}
    finetune, grid, evaluate = tables["finetune"], tables["grid"], tables["evaluate"]
    if "out" in finetune or "out" in grid:
        raise ValueError(
            f"{where}: `out` is set per cell (<sweep out>/cells/<cell>/run); remove it from [finetune]/[grid]"
        )
    if not grid:
        raise ValueError(f"{where}: [grid] is empty; give at least one axis, e.g. lam = [0.0, 0.5, 1.0]")
    for axis, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"{where}: grid axis {axis!r} must be a non-empty list, got {values!r}")
        if len({repr(v) for v in values}) != len(values):
            raise ValueError(f"{where}: grid axis {axis!r} repeats a value: {values!r}")
        if axis in finetune:
            raise ValueError(f"{where}: {axis!r} is both in [finetune] and in [grid]")
    bad_eval = set(evaluate) - _EVAL_KEYS
    if bad_eval:
        raise ValueError(f"{where}: unknown [evaluate] key(s) {sorted(bad_eval)}; expected {sorted(_EVAL_KEYS)}")
    target = Path(out) if out is not None else Path(data["out"]) if "out" in data else default_out
    if not target.is_absolute():
        target = (Path.cwd() if out is not None else base) / target
    target = target.resolve()
    spec = SweepSpec(target, finetune, grid, evaluate, tables["slurm"], path)

    classifier = evaluate.get("classifier", "logreg")
    if classifier not in list_classifiers():
        raise ValueError(f"{where}: unknown classifier {classifier!r}; expected one of {', '.join(list_classifiers())}")
    for cell in spec.cells():
        try:
            config = spec.cell_config(cell)
            config.validate(check_data=False)
            spec.protocol(cell)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}: cell {cell.id}: {exc}") from None
    return spec
