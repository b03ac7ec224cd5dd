"""Torch-free name lists of the registries, for command-line choices.

``fewshot --help`` and every ``fewshot <cmd> --help`` build their parsers from these tuples so
that starting the CLI never imports torch. :data:`CLASSIFIER_NAMES` comes from the classifier
registry itself (:func:`fewshot.classifiers.list_classifiers`, torch-free); each other tuple
mirrors a registry that does need torch, and ``tests/test_bad_inputs.py`` checks that they stay
equal:

- :data:`OBJECTIVE_NAMES` -- :data:`fewshot.losses.OBJECTIVES`;
- :data:`AUGMENT_POLICIES` -- the AutoAugment policies of :func:`fewshot.transforms.train_transform`;
- :data:`TEST_NAMES` -- the paired tests of :func:`fewshot.stats.paired_test`;
- :data:`DATASET_NAMES` -- :func:`fewshot.data.list_datasets` (which needs numpy and PIL).

Schedulers (:data:`fewshot.training.config.SCHEDULERS`) are torch-free already and are used
directly. These lists need no numpy either, so ``fewshot --version`` imports neither.
"""

from __future__ import annotations

from fewshot.classifiers import list_classifiers

__all__ = ["CLASSIFIER_NAMES", "OBJECTIVE_NAMES", "AUGMENT_POLICIES", "TEST_NAMES", "DATASET_NAMES"]

#: Episode classifiers, in registry order (:func:`fewshot.classifiers.list_classifiers`).
CLASSIFIER_NAMES: tuple[str, ...] = tuple(list_classifiers())

#: Fine-tuning objectives (:data:`fewshot.losses.OBJECTIVES`).
OBJECTIVE_NAMES: tuple[str, ...] = ("ce", "schane", "supcon", "supcon-in", "simclr", "hscl")

#: AutoAugment policies of the training transform.
AUGMENT_POLICIES: tuple[str, ...] = ("imagenet", "cifar10", "svhn", "none")

#: Paired tests whose p-value is Holm-corrected in compare/table.
TEST_NAMES: tuple[str, ...] = ("t", "wilcoxon")

#: Registered benchmarks (:func:`fewshot.data.list_datasets`), sorted.
DATASET_NAMES: tuple[str, ...] = ("cifar-fs", "cub", "digits", "fc100", "mini-imagenet", "tiered-imagenet")
