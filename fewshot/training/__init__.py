"""Fine-tuning on the base classes: SCHaNe and the baselines, resumable, one process or many.

- :func:`finetune` -- run it (``fewshot finetune`` is a thin layer over it);
- :func:`finetune_seeds` -- one run per training seed (the replicates of an objective);
- :class:`FinetuneConfig` -- every setting, with the papers' defaults; :func:`load_config`
  reads one from TOML;
- :class:`RunResult` -- what a run produced;
- :func:`resume_config` -- the config of an existing run directory.

Modules: ``config`` (settings), ``sampling`` (held-out split, two views, deterministic sampler),
``distributed`` (torchrun, gather with gradient), ``loop`` (step, epoch, validation),
``state`` (run directory, resume state), ``runner`` (:func:`finetune`).

Names are imported lazily: ``fewshot.training.config`` (and so ``fewshot finetune --help``)
needs no torch; ``finetune``, ``RunResult`` and ``resume_config`` load it on first use.
"""

from __future__ import annotations

from fewshot._lazy import lazy_exports
from fewshot.training.config import RESUME_FREE_KEYS, FinetuneConfig, config_diff, load_config

__all__ = [
    "finetune",
    "finetune_seeds",
    "FinetuneConfig",
    "RunResult",
    "load_config",
    "resume_config",
    "config_diff",
    "RESUME_FREE_KEYS",
]

_LAZY = {
    "finetune": "fewshot.training.runner",
    "finetune_seeds": "fewshot.training.runner",
    "RunResult": "fewshot.training.runner",
    "resume_config": "fewshot.training.runner",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
