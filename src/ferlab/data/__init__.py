"""Datasets: reading sources into one sample table, labels, splits, imbalance, augmentation and preprocessing.

Names load on first use (PEP 562), so that importing one light module (labels, framing,
images) does not pull in torchvision, scikit-learn and the training-time data code.
"""

from __future__ import annotations

import importlib
from typing import Any

# Eager, and before any lazy name: the function shares its module's name, and importing the module
# later would rebind ferlab.data.scan to the module (scan.py needs only NumPy and Pillow).
from ferlab.data.scan import scan

#: Each public name and the module that defines it.
_LAZY = {
    "AugmentConfig": "ferlab.data.augment",
    "PRESETS": "ferlab.data.augment",
    "batch_mixing": "ferlab.data.augment",
    "build_augmentation": "ferlab.data.augment",
    "ImageDataset": "ferlab.data.dataset",
    "decode_table": "ferlab.data.dataset",
    "read_expw": "ferlab.data.expw",
    "read_ferplus": "ferlab.data.ferplus",
    "decode_image": "ferlab.data.images",
    "BALANCING": "ferlab.data.imbalance",
    "balanced_sampler": "ferlab.data.imbalance",
    "class_weights": "ferlab.data.imbalance",
    "oversample_indices": "ferlab.data.imbalance",
    "DATASET_LABELS": "ferlab.data.labels",
    "EMOTIONS": "ferlab.data.labels",
    "canonical_label": "ferlab.data.labels",
    "dataset_label": "ferlab.data.labels",
    "order_classes": "ferlab.data.labels",
    "read_manifest": "ferlab.data.manifest",
    "write_manifest": "ferlab.data.manifest",
    "CleanResult": "ferlab.data.quarantine",
    "QuarantinedFile": "ferlab.data.quarantine",
    "clean": "ferlab.data.quarantine",
    "restore": "ferlab.data.quarantine",
    "read_rafdb": "ferlab.data.rafdb",
    "Sample": "ferlab.data.samples",
    "SampleTable": "ferlab.data.samples",
    "EpochSampler": "ferlab.data.sampling",
    "DuplicateGroup": "ferlab.data.scan",
    "Finding": "ferlab.data.scan",
    "KINDS": "ferlab.data.scan",
    "ScanReport": "ferlab.data.scan",
    "format_report": "ferlab.data.scan",
    "load_report": "ferlab.data.scan",
    "write_report": "ferlab.data.scan",
    "open_dataset": "ferlab.data.sources",
    "select_classes": "ferlab.data.sources",
    "GROUP_PATTERNS": "ferlab.data.splits",
    "kfold_splits": "ferlab.data.splits",
    "merge_classes": "ferlab.data.splits",
    "parse_ratios": "ferlab.data.splits",
    "prepare_splits": "ferlab.data.splits",
    "ratio_split": "ferlab.data.splits",
    "subject_ids": "ferlab.data.splits",
    "subsample": "ferlab.data.splits",
    "Preprocessing": "ferlab.data.transforms",
    "normalize": "ferlab.data.transforms",
    "to_pixels": "ferlab.data.transforms",
}

__all__ = [
    "BALANCING",
    "KINDS",
    "CleanResult",
    "DuplicateGroup",
    "EpochSampler",
    "Finding",
    "QuarantinedFile",
    "ScanReport",
    "clean",
    "format_report",
    "load_report",
    "restore",
    "scan",
    "write_report",
    "DATASET_LABELS",
    "EMOTIONS",
    "GROUP_PATTERNS",
    "PRESETS",
    "AugmentConfig",
    "ImageDataset",
    "Preprocessing",
    "Sample",
    "SampleTable",
    "balanced_sampler",
    "batch_mixing",
    "build_augmentation",
    "canonical_label",
    "class_weights",
    "dataset_label",
    "decode_image",
    "decode_table",
    "kfold_splits",
    "merge_classes",
    "normalize",
    "open_dataset",
    "order_classes",
    "oversample_indices",
    "parse_ratios",
    "prepare_splits",
    "ratio_split",
    "read_expw",
    "read_ferplus",
    "read_manifest",
    "read_rafdb",
    "select_classes",
    "subject_ids",
    "subsample",
    "to_pixels",
    "write_manifest",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'ferlab.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
