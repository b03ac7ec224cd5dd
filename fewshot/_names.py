"""Torch-free name lists of the registries, for command-line choices.

``fewshot --help`` and every ``fewshot <cmd> --help`` build their parsers from these tuples so
that starting the CLI never imports torch. Each tuple mirrors a registry that does need torch;
``tests/test_bad_inputs.py`` checks that they stay equal:

- :data:`CLASSIFIER_NAMES` -- :data:`fewshot.classifiers.CLASSIFIERS`;
- :data:`OBJECTIVE_NAMES` -- :data:`fewshot.losses.OBJECTIVES`;
- :data:`AUGMENT_POLICIES` -- the AutoAugment policies of :func:`fewshot.transforms.train_transform`;
- :data:`TEST_NAMES` -- the paired tests of :func:`fewshot.stats.paired_test`;
- :data:`DATASET_NAMES` -- :func:`fewshot.data.list_datasets` (which needs numpy and PIL).

Schedulers (:data:`fewshot.training.config.SCHEDULERS`) are torch-free already and are used
directly. These lists need no numpy either, so ``fewshot --version`` imports neither.
"""

from __future__ import annotations

__all__ = ["CLASSIFIER_NAMES", "OBJECTIVE_NAMES", "AUGMENT_POLICIES", "TEST_NAMES", "DATASET_NAMES"]

#: Episode classifiers (:data:`fewshot.classifiers.CLASSIFIERS`).
CLASSIFIER_NAMES: tuple[str, ...] = (
    "logreg", "logreg-sklearn", "prototype", "simpleshot", "nn", "svm", "ridge",
    "bd-cspn", "laplacianshot", "tim", "pt-map",
)

#: Fine-tuning objectives (:data:`fewshot.losses.OBJECTIVES`).
OBJECTIVE_NAMES: tuple[str, ...] = ("ce", "schane", "supcon", "supcon-in", "simclr", "hscl")

#: AutoAugment policies of the training transform.
AUGMENT_POLICIES: tuple[str, ...] = ("imagenet", "cifar10", "svhn", "none")

#: Paired tests whose p-value is Holm-corrected in compare/table.
TEST_NAMES: tuple[str, ...] = ("t", "wilcoxon")

#: Registered benchmarks (:func:`fewshot.data.list_datasets`), sorted.
DATASET_NAMES: tuple[str, ...] = ("cifar-fs", "cub", "digits", "fc100", "mini-imagenet", "tiered-imagenet")
