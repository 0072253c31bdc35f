"""Datasets: reading sources into one sample table, labels, splits and preprocessing."""

from ferlab.data.dataset import ImageDataset
from ferlab.data.images import decode_image
from ferlab.data.labels import DATASET_LABELS, EMOTIONS, canonical_label, dataset_label, order_classes
from ferlab.data.samples import Sample, SampleTable
from ferlab.data.sources import open_dataset, select_classes
from ferlab.data.splits import prepare_splits, stratified_split
from ferlab.data.transforms import Preprocessing, augmentation, normalize, to_pixels

__all__ = [
    "DATASET_LABELS",
    "EMOTIONS",
    "ImageDataset",
    "Preprocessing",
    "Sample",
    "SampleTable",
    "augmentation",
    "canonical_label",
    "dataset_label",
    "decode_image",
    "normalize",
    "open_dataset",
    "order_classes",
    "prepare_splits",
    "select_classes",
    "stratified_split",
    "to_pixels",
]
