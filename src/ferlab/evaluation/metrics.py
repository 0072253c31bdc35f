"""Classification metrics from labels and probabilities (scikit-learn and torchmetrics do the arithmetic).

Probabilities may come from a model with more classes than the targets use (a 7-class
model on a 5-class test set), so every metric is given the full label list and metrics
that need positives (AUROC, AP) are None for classes the targets lack.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
    top_k_accuracy_score,
)

from ferlab.models.calibration import expected_calibration_error

__all__ = ["check_predictions", "classification_metrics"]


def check_predictions(targets: np.ndarray, probs: np.ndarray, num_classes: int) -> None:
    """Raise ValueError unless `targets` is (N,) indices below `num_classes` and `probs` is (N, num_classes), N > 0."""
    targets, probs = np.asarray(targets), np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] != num_classes:
        raise ValueError(f"probabilities must have shape (N, {num_classes}), got {probs.shape}")
    if targets.shape != (len(probs),):
        raise ValueError(f"targets must have shape ({len(probs)},) to match the probabilities, got {targets.shape}")
    if len(targets) == 0:
        raise ValueError("no samples to score")
    if targets.min() < 0 or targets.max() >= num_classes:
        raise ValueError(f"targets must be class indices in [0, {num_classes}), got {targets.min()}..{targets.max()}")


def _ranking_scores(targets: np.ndarray, probs: np.ndarray, k: int) -> tuple[float | None, float | None]:
    """One-vs-rest (AUROC, AP) of class `k`: AP needs positives, AUROC positives and negatives; else None."""
    positive = targets == k
    if not positive.any():
        return None, None
    ap = float(average_precision_score(positive, probs[:, k]))
    auroc = float(roc_auc_score(positive, probs[:, k])) if not positive.all() else None
    return auroc, ap


def classification_metrics(targets: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy-type, ranking and calibration metrics, per class and overall, and the confusion matrices.

    Args:
        targets: (N,) true class indices into `classes`.
        probs: (N, len(classes)) predicted probabilities.

    Returns:
        A JSON-ready dict (floats, ints, None); the confusion matrices have true classes as rows.
        ``macro_auroc`` averages the classes with both positives and negatives (None if none has);
        ``balanced_accuracy`` is the mean recall over the classes present in `targets`.

    Raises:
        ValueError: shapes disagree, or a target is not a class index.
    """
    targets, probs = np.asarray(targets), np.asarray(probs)
    check_predictions(targets, probs, len(classes))
    predicted = probs.argmax(axis=1)
    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        targets, predicted, labels=labels, zero_division=0
    )
    ranking = [_ranking_scores(targets, probs, k) for k in labels]
    aurocs = [auroc for auroc, _ in ranking if auroc is not None]
    return {
        "samples": int(len(targets)),
        "classes": list(classes),
        "accuracy": float(accuracy_score(targets, predicted)),
        # sklearn's balanced_accuracy_score gives the same value but warns whenever the model predicts a class
        # the targets lack, which a superset model routinely does.
        "balanced_accuracy": float(recall[support > 0].mean()),
        # sklearn refuses 2-column scores for top-k; with two classes the top two are all of them.
        "top2_accuracy": 1.0 if len(labels) <= 2 else float(top_k_accuracy_score(targets, probs, k=2, labels=labels)),
        "macro_f1": float(f1_score(targets, predicted, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(targets, predicted, labels=labels, average="weighted", zero_division=0)),
        "macro_auroc": float(np.mean(aurocs)) if aurocs else None,
        "log_loss": float(log_loss(targets, probs, labels=labels)),
        "ece": expected_calibration_error(torch.as_tensor(probs), torch.as_tensor(targets), bins=15),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
                "auroc": ranking[i][0],
                "ap": ranking[i][1],
            }
            for i, name in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(targets, predicted, labels=labels).tolist(),
        "confusion_matrix_normalized": confusion_matrix(targets, predicted, labels=labels, normalize="true").tolist(),
    }
