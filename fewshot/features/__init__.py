"""Frozen features: extraction, the feature cache and the feature-file format.

Names are imported lazily from their modules, so reading a feature file (:mod:`.file`,
NumPy only) does not import torch and timm for the extraction modules: ``fewshot evaluate``
started twice as fast without them.
"""

from __future__ import annotations

from fewshot._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "extract_features": "fewshot.features.extract",
    "default_num_workers": "fewshot.features.extract",
    "default_channels_last": "fewshot.features.extract",
    "CHANNELS_LAST_FAMILIES": "fewshot.features.extract",
    "check_input_size": "fewshot.features.extract",
    "extract_cached": "fewshot.features.cache",
    "write_features": "fewshot.features.cache",
    "default_cache_dir": "fewshot.features.cache",
    "feature_cache_key": "fewshot.features.cache",
    "split_identity": "fewshot.features.cache",
    "model_identity": "fewshot.features.cache",
    "content_fingerprint": "fewshot.features.cache",
    "FEATURE_KEYS": "fewshot.features.file",
    "FeatureSet": "fewshot.features.file",
    "features_image_size": "fewshot.features.file",
    "load_features": "fewshot.features.file",
    "save_features": "fewshot.features.file",
    "validate_features": "fewshot.features.file",
    "FOREIGN_SUFFIXES": "fewshot.features.foreign",
    "is_foreign_features": "fewshot.features.foreign",
    "read_foreign_features": "fewshot.features.foreign",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
