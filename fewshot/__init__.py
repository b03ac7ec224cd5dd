"""fewshot: fine-tune with SCHaNe and baselines, evaluate on few-shot episodes, compare with statistics.

The public API is re-exported here and imported lazily, so ``import fewshot`` stays cheap
(torch and timm load only when a name that needs them is first used).
"""

from __future__ import annotations

import importlib
import os as _os
from typing import Any

from fewshot._lazy import lazy_exports

__version__ = "0.1.0"

# OpenMP threads that busy-wait between parallel regions fight any other load on the cores:
# the batched solver's many small ops then ran 3-4x slower on a loaded machine. PASSIVE makes
# idle OpenMP threads sleep. It must be set before torch loads its OpenMP runtime, which reads
# it once; importing fewshot before torch (the CLI always does) is enough. A value the user
# set is kept (e.g. OMP_WAIT_POLICY=ACTIVE to restore the old behaviour).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_EXPORTS: dict[str, str] = {
    # episodes and evaluation
    "Episodes": "fewshot.episodes",
    "sample_episodes": "fewshot.episodes",
    "load_episodes": "fewshot.episodes",
    "CLASSIFIERS": "fewshot.classifiers",
    "create_classifier": "fewshot.classifiers",
    "list_classifiers": "fewshot.classifiers",
    "LogisticRegression": "fewshot.classifiers",
    "PrototypeClassifier": "fewshot.classifiers",
    "SklearnLogisticRegression": "fewshot.classifiers",
    "is_transductive": "fewshot.classifiers",
    "SimpleShot": "fewshot.classifiers.nearest",
    "NearestNeighbor": "fewshot.classifiers.nearest",
    "LinearSVM": "fewshot.classifiers.svm",
    "RidgeClassifier": "fewshot.classifiers.ridge",
    "BDCSPN": "fewshot.classifiers.transductive",
    "LaplacianShot": "fewshot.classifiers.transductive",
    "TIM": "fewshot.classifiers.transductive",
    "PTMAP": "fewshot.classifiers.transductive",
    "read_foreign_features": "fewshot.features",
    "per_class_accuracy": "fewshot.report.per_class",
    "compare_per_class": "fewshot.report.per_class",
    "plot_per_class": "fewshot.report.per_class",
    "evaluate": "fewshot.evaluation",
    "run_protocol": "fewshot.evaluation",
    "load_features": "fewshot.features",
    "FeatureSet": "fewshot.features",
    "evaluate_to_directory": "fewshot.pipeline",
    "write_results": "fewshot.results",
    "read_results": "fewshot.results",
    # statistics and reporting
    "confidence_interval": "fewshot.stats",
    "summarize": "fewshot.stats",
    "median_run": "fewshot.stats",
    "paired_test": "fewshot.stats",
    "holm": "fewshot.stats",
    "compare": "fewshot.report.compare",
    "compare_methods": "fewshot.report.compare",
    "load_methods": "fewshot.report.compare",
    "run_means": "fewshot.report.compare",
    "run_test": "fewshot.run_stats",
    "hierarchical_bootstrap": "fewshot.run_stats",
    "probability_of_improvement": "fewshot.run_stats",
    "runs_for_power": "fewshot.run_stats",
    "check_run_name": "fewshot.runs",
    "seed_run_name": "fewshot.runs",
    "render_table": "fewshot.report.tables",
    "table_frame": "fewshot.report.tables",
    "plot_results": "fewshot.report.plots",
    "EvalProtocol": "fewshot.protocol",
    "load_protocol": "fewshot.protocol",
    # objectives
    "schane_loss": "fewshot.losses",
    "supcon_loss": "fewshot.losses",
    "supcon_in_loss": "fewshot.losses",
    "simclr_loss": "fewshot.losses",
    "hscl_loss": "fewshot.losses",
    "Objective": "fewshot.losses",
    "OBJECTIVES": "fewshot.losses",
    "create_objective": "fewshot.losses",
    "list_objectives": "fewshot.losses",
    "ObjectiveOutput": "fewshot.losses",
    "NoPositivePairsWarning": "fewshot.losses",
    # data, models, features, fine-tuning
    "DATASETS": "fewshot.data",
    "DataCheck": "fewshot.data",
    "ImageSplit": "fewshot.data",
    "load_split": "fewshot.data",
    "class_names": "fewshot.data",
    "list_datasets": "fewshot.data",
    "check_split": "fewshot.data",
    "create_backbone": "fewshot.backbones",
    "fold_batchnorm": "fewshot.backbones",
    "Preprocessing": "fewshot.transforms",
    "resolve_preprocessing": "fewshot.transforms",
    "eval_transform": "fewshot.transforms",
    "train_transform": "fewshot.transforms",
    "ClassificationHead": "fewshot.heads",
    "ProjectionHead": "fewshot.heads",
    "load_weights": "fewshot.backbones.weights",
    "LoadReport": "fewshot.backbones.weights",
    "save_checkpoint": "fewshot.checkpoint",
    "load_checkpoint": "fewshot.checkpoint",
    "load_heads": "fewshot.checkpoint",
    "checkpoint_run": "fewshot.checkpoint",
    "extract_features": "fewshot.features",
    "reuse_freed_memory": "fewshot.allocator",
    "extract_cached": "fewshot.features",
    "write_features": "fewshot.features",
    "extract_to_file": "fewshot.pipeline",
    "ExtractResult": "fewshot.pipeline",
    "finetune": "fewshot.training",
    "finetune_seeds": "fewshot.training",
    "FinetuneConfig": "fewshot.training",
    "RunResult": "fewshot.training",
    "load_config": "fewshot.training",
    "resume_config": "fewshot.training",
    "run_demo": "fewshot.demo",
    # analyses and studies
    "isotropy_score": "fewshot.analysis",
    "similarity_distributions": "fewshot.analysis",
    "tsne_map": "fewshot.analysis",
    "analyze_to_directory": "fewshot.analysis",
    "pretraining_overlap": "fewshot.overlap",
    "load_sweep": "fewshot.sweep",
    "run_sweep": "fewshot.sweep",
}

# old name -> (new name, module): still importable, with a DeprecationWarning; not in __all__
_DEPRECATED: dict[str, tuple[str, str]] = {
    "Protocol": ("EvalProtocol", "fewshot.protocol"),  # collided with typing.Protocol
}

__all__ = ["__version__", *sorted(_EXPORTS)]


_getattr, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        new, module = _DEPRECATED[name]
        import warnings

        warnings.warn(f"fewshot.{name} is deprecated; use fewshot.{new}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), new)
    return _getattr(name)
