"""Names of training runs (replicates): what ties a checkpoint, its features and its results.

A training run is one fine-tuning of one objective with one training seed. ``fewshot
finetune --seeds 0 1 2 --out DIR`` names its runs ``seed-0``, ``seed-1``, ... (the
directories ``DIR/seed-0``, ...); a checkpoint records its run's name, ``fewshot extract``
copies it into the features file and ``fewshot evaluate`` into every per-episode row, so
:func:`fewshot.report.compare.compare` can treat results with the same label and different run
names as replicates of one method.
"""

from __future__ import annotations

import re

__all__ = ["RUN_NAME_PATTERN", "check_run_name", "seed_run_name"]

#: A run name: letters, digits, ``.``, ``_``, ``-``; not starting with ``.`` or ``-``; at
#: most 64 characters (it becomes a directory name and a CSV value).
RUN_NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")


def check_run_name(name: object, what: str = "run name") -> str:
    """``name`` if it is a valid run name (see :data:`RUN_NAME_PATTERN`).

    Raises:
        ValueError: not a string, empty, too long, or with other characters (e.g. a path
            separator), naming the value.
    """
    if not isinstance(name, str) or RUN_NAME_PATTERN.fullmatch(name) is None:
        raise ValueError(
            f"{what} must be 1-64 letters, digits, '.', '_' or '-' (not starting with '.' or '-'), got {name!r}"
        )
    return name


def seed_run_name(seed: int) -> str:
    """The default name of the run trained with ``seed``: ``seed-<seed>``."""
    return f"seed-{int(seed)}"
