"""Fine-tuning on the base classes: SCHaNe and the baselines, resumable, one process or many.

- :func:`finetune` -- run it (``fewshot finetune`` is a thin layer over it);
- :func:`finetune_seeds` -- one run per training seed (the replicates of an objective);
- :class:`FinetuneConfig` -- every setting, with the papers' defaults; :func:`load_config`
  reads one from TOML;
- :class:`RunResult` -- what a run produced;
- :func:`resume_config` -- the config of an existing run directory.

Modules: ``config`` (settings), ``data`` (held-out split, two views, deterministic sampler),
``distributed`` (torchrun, gather with gradient), ``loop`` (step, epoch, validation),
``state`` (run directory, resume state), ``runner`` (:func:`finetune`).
"""

from fewshot.training.config import RESUME_FREE_KEYS, FinetuneConfig, config_diff, load_config
from fewshot.training.runner import RunResult, finetune, finetune_seeds, resume_config

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
