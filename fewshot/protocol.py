"""Benchmark protocol files (``episodes/*.toml``).

A protocol fixes everything about an evaluation that does not depend on the features::

    dataset = "mini-imagenet"   # registry name
    split = "test"
    ways = 5
    shots = [1, 5]
    queries = 15
    episodes = 3000
    seeds = [0, 1, 2]
    ci = "t"                    # CI formula: "t" (Student, default) or "z" (1.96 at 95%)

Optional: ``name`` and ``description`` (strings) and an ``[upstream]`` table recording, for a
preset that mirrors another toolkit (``episodes/presets/*.toml``), what that toolkit does that
frozen-feature evaluation here does not reproduce (``seeding``, ``support_augmentation``,
``image_size``, ``episodes``, ``reference``, ...). ``[upstream]`` is provenance only: it is
copied into manifests and never changes the evaluation.

Every method scored with one protocol file sees the same episodes (given the same labels).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fewshot._io import sha256_file
from fewshot._validate import check_int

__all__ = ["EvalProtocol", "load_protocol"]

_KEYS = {"dataset", "split", "ways", "shots", "queries", "episodes", "seeds", "ci", "name", "description", "upstream"}
_CI = ("t", "z")


@dataclass(frozen=True)
class EvalProtocol:
    """A few-shot evaluation protocol (defaults: the papers' 5-way, 1/5-shot, 15 queries,
    3,000 episodes, seeds 0, 1, 2). ``dataset``/``split`` None: taken from the features file."""

    dataset: str | None = None
    split: str | None = None
    ways: int = 5
    shots: tuple[int, ...] = (1, 5)
    queries: int = 15
    episodes: int = 3000
    seeds: tuple[int, ...] = (0, 1, 2)
    ci: str = "t"
    name: str | None = None
    description: str | None = None
    upstream: dict[str, Any] | None = None
    path: str | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        for name in ("ways", "queries", "episodes"):
            check_int(f"protocol {name}", getattr(self, name))
        for name in ("shots", "seeds"):
            v = getattr(self, name)
            v = (v,) if isinstance(v, int) else tuple(v)
            low = 1 if name == "shots" else 0
            if not v or any(isinstance(x, bool) or not isinstance(x, int) or x < low for x in v):
                raise ValueError(f"protocol {name} must be a non-empty list of integers >= {low}, got {v!r}")
            if len(set(v)) != len(v):
                raise ValueError(
                    f"protocol {name} must not repeat a value (every row would be written twice), got {list(v)}"
                )
            object.__setattr__(self, name, v)
        if self.ci not in _CI:
            raise ValueError(f"protocol ci must be one of {', '.join(_CI)}, got {self.ci!r}")
        for name in ("name", "description"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, str):
                raise ValueError(f"protocol {name} must be a string, got {v!r}")
        if self.upstream is not None and not isinstance(self.upstream, dict):
            raise ValueError(f"protocol upstream must be a table, got {self.upstream!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for manifests)."""
        d = asdict(self)
        d["shots"], d["seeds"] = list(self.shots), list(self.seeds)
        d["upstream"] = dict(self.upstream) if self.upstream is not None else None
        return d


def load_protocol(path: str | Path | None = None, **overrides: Any) -> EvalProtocol:
    """Read a protocol TOML file and apply ``overrides``; the file's SHA-256 is recorded.

    Args:
        path: the TOML file; None: the papers' protocol (the :class:`EvalProtocol` defaults).
        **overrides: protocol settings that replace the file's (``dataset``, ``split``,
            ``ways``, ``shots``, ``queries``, ``episodes``, ``seeds``, ``ci``, ``name``,
            ``description``, ``upstream``), validated like the file's; a value of None keeps
            the file's (so CLI flags that were not given can be passed as they are). The
            returned protocol still records ``path`` and ``sha256`` of the file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: invalid TOML, unknown keys or bad values (in the file or the overrides).
    """
    unknown = set(overrides) - _KEYS
    if unknown:
        raise ValueError(f"unknown protocol override(s) {sorted(unknown)}; accepted: {', '.join(sorted(_KEYS))}")
    given = {k: v for k, v in overrides.items() if v is not None}
    if path is None:
        return EvalProtocol(**given)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"protocol file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: invalid TOML ({exc})") from None
    unknown = set(data) - _KEYS
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}; expected {sorted(_KEYS)}")
    try:
        protocol = EvalProtocol(**data, path=str(path), sha256=sha256_file(path))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return dataclasses.replace(protocol, **given) if given else protocol
