"""Datasets: reading sources into one sample table, labels, splits, imbalance, augmentation and preprocessing."""

from ferlab.data.augment import PRESETS, AugmentConfig, batch_mixing, build_augmentation
from ferlab.data.dataset import ImageDataset, decode_table
from ferlab.data.expw import read_expw
from ferlab.data.ferplus import read_ferplus
from ferlab.data.images import decode_image
from ferlab.data.imbalance import BALANCING, balanced_sampler, class_weights, oversample_indices
from ferlab.data.labels import DATASET_LABELS, EMOTIONS, canonical_label, dataset_label, order_classes
from ferlab.data.manifest import read_manifest, write_manifest
from ferlab.data.quarantine import CleanResult, QuarantinedFile, clean, restore
from ferlab.data.rafdb import read_rafdb
from ferlab.data.samples import Sample, SampleTable
from ferlab.data.sampling import EpochSampler
from ferlab.data.scan import KINDS, DuplicateGroup, Finding, ScanReport, format_report, load_report, scan, write_report
from ferlab.data.sources import open_dataset, select_classes
from ferlab.data.splits import (
    GROUP_PATTERNS,
    kfold_splits,
    merge_classes,
    parse_ratios,
    prepare_splits,
    ratio_split,
    subject_ids,
    subsample,
)
from ferlab.data.transforms import Preprocessing, normalize, to_pixels

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
