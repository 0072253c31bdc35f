"""Image galleries of a model's predictions: its most confident mistakes, and random examples of each class.

The selections are separate functions so a report can reuse the same indices (for
Grad-CAM of the very mistakes shown, say).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ferlab.evaluation.metrics import check_predictions
from ferlab.evaluation.plots import plot_gallery, plot_gallery_rows
from ferlab.models import LoadedModel
from ferlab.models.explain import grad_cam, overlay_heatmap

__all__ = ["class_examples", "class_gallery", "gallery_images", "most_confident_mistakes", "mistake_gallery"]


def most_confident_mistakes(targets: np.ndarray, probs: np.ndarray, n: int) -> np.ndarray:
    """Indices of up to `n` wrongly predicted samples, most confident first (ties keep sample order).

    Args:
        targets: (N,) true class indices.
        probs: (N, classes) predicted probabilities.

    Returns:
        (k,) int64 indices, k = min(n, number of mistakes).
    """
    targets, probs = np.asarray(targets), np.asarray(probs)
    wrong = np.flatnonzero(probs.argmax(axis=1) != targets)
    order = np.argsort(-probs[wrong].max(axis=1), kind="stable")
    return wrong[order[: max(n, 0)]].astype(np.int64)


def class_examples(targets: np.ndarray, num_classes: int, per_class: int, seed: int = 0) -> list[np.ndarray]:
    """For each class, up to `per_class` random indices of samples of that true class (in sample order).

    The same seed gives the same examples, so galleries of two models on one test set show the same faces.
    """
    targets = np.asarray(targets)
    rng = np.random.default_rng(seed)
    picks = []
    for k in range(num_classes):
        members = np.flatnonzero(targets == k)
        picks.append(np.sort(rng.choice(members, size=min(per_class, len(members)), replace=False)))
    return picks


def gallery_images(pixels: torch.Tensor | np.ndarray, indices: np.ndarray) -> list[np.ndarray]:
    """The (H, W) or (H, W, 3) images that plotting wants, from (N, C, H, W) pixels."""
    chw = [np.asarray(pixels[int(i)]) for i in indices]  # each (C, H, W)
    return [image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0) for image in chw]


def _prediction(probs: np.ndarray, classes: Sequence[str], i: int) -> str:
    """Sample `i`'s predicted class and its probability, e.g. "happy 0.97"."""
    k = int(probs[i].argmax())
    return f"{classes[k]} {probs[i, k]:.2f}"


def _check_pixels(pixels: torch.Tensor | np.ndarray, count: int) -> None:
    shape = tuple(pixels.shape)
    if len(shape) != 4 or shape[1] not in (1, 3) or shape[0] != count:
        raise ValueError(f"pixels must have shape ({count}, 1 or 3, H, W) to match the targets, got {shape}")


def mistake_gallery(
    pixels: torch.Tensor | np.ndarray,
    targets: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    path: str | Path,
    n: int = 32,
    gradcam: LoadedModel | None = None,
) -> Path:
    """The `n` most confident mistakes, captioned with the true class and the prediction with its probability.

    Args:
        pixels: (N, C, H, W) uint8, C = 1 or 3, torch tensor or numpy array (as `ImageDataset.pixels`).
        gradcam: the model that made the predictions: show its Grad-CAM of the predicted class over each face.

    Raises:
        ValueError: shapes disagree.
        FerlabError: `gradcam` is a model Grad-CAM cannot explain (an ensemble).
    """
    targets, probs = np.asarray(targets), np.asarray(probs)
    check_predictions(targets, probs, len(classes))
    _check_pixels(pixels, len(targets))
    picked = most_confident_mistakes(targets, probs, n)
    predicted = probs.argmax(axis=1)
    captions = [f"true {classes[targets[i]]}\npred {_prediction(probs, classes, i)}" for i in picked]
    mistakes = int(np.sum(predicted != targets))
    title = f"Most confident mistakes ({len(picked)} shown; {mistakes} of {len(targets)} images wrong)"
    images = gallery_images(pixels, picked)
    if gradcam is not None:
        heat = grad_cam(gradcam, torch.as_tensor(np.asarray(pixels)[picked]))  # (n, H, W), predicted class
        images = [overlay_heatmap(image, h) for image, h in zip(images, heat)]
        title += "\nGrad-CAM of the predicted class"
    return plot_gallery(images, captions, path, title=title)


def class_gallery(
    pixels: torch.Tensor | np.ndarray,
    targets: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    path: str | Path,
    per_class: int = 6,
    seed: int = 0,
) -> Path:
    """One row per true class of random examples, captioned ✓/✗ with the prediction and its probability.

    Classes without examples get no row and are named in the title.

    Args:
        pixels: (N, C, H, W) uint8, C = 1 or 3, torch tensor or numpy array (as `ImageDataset.pixels`).

    Raises:
        ValueError: shapes disagree.
    """
    targets, probs = np.asarray(targets), np.asarray(probs)
    check_predictions(targets, probs, len(classes))
    _check_pixels(pixels, len(targets))
    predicted = probs.argmax(axis=1)
    rows = []
    for k, picked in enumerate(class_examples(targets, len(classes), per_class, seed)):
        captions = [f"{classes[k]}\n{'✓' if predicted[i] == k else '✗'} {_prediction(probs, classes, i)}" for i in picked]
        rows.append(list(zip(gallery_images(pixels, picked), captions)))
    missing = [name for name, row in zip(classes, rows) if not row]
    title = "Examples per class (✓ right, ✗ wrong; prediction and probability)"
    if missing:
        title += f"\nno examples: {', '.join(missing)}"
    return plot_gallery_rows(rows, path, title=title)
