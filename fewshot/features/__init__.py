"""Frozen features: extraction, the feature cache and the feature-file format."""

from fewshot.features.extract import (
    FEATURE_KEYS,
    check_input_size,
    content_fingerprint,
    default_cache_dir,
    default_num_workers,
    extract_cached,
    extract_features,
    feature_cache_key,
    model_identity,
    save_features,
    split_identity,
    write_features,
)

__all__ = [
    "FEATURE_KEYS",
    "check_input_size",
    "content_fingerprint",
    "default_cache_dir",
    "default_num_workers",
    "extract_cached",
    "extract_features",
    "feature_cache_key",
    "model_identity",
    "save_features",
    "split_identity",
    "write_features",
]
