"""Few-shot benchmarks read from the formats other toolkits leave on disk; nothing downloads.

``load_split(name, split, root)`` auto-detects the format under ``root`` and returns an
:class:`ImageSplit` (labels up front, images decoded lazily); ``class_names(name, split)``
answers from the class lists shipped in ``fewshot/data/splits/`` without reading data;
``check_split`` compares a data root with those lists. Pickles are read by a restricted
unpickler that admits only NumPy arrays and builtin containers (:func:`load_pickle`).
"""

from fewshot.data._base import ArraySplit, EncodedSplit, FileSplit, ImageSplit
from fewshot.data._layout import DatasetSpec, Layout, LayoutNotFound
from fewshot.data._pickle import load_pickle
from fewshot.data._registry import DATASETS, class_names, get_dataset, list_datasets, load_split
from fewshot.data.check import DataCheck, check_split

__all__ = [
    "ImageSplit",
    "ArraySplit",
    "FileSplit",
    "EncodedSplit",
    "DATASETS",
    "DatasetSpec",
    "Layout",
    "LayoutNotFound",
    "load_split",
    "class_names",
    "list_datasets",
    "get_dataset",
    "check_split",
    "DataCheck",
    "load_pickle",
]
