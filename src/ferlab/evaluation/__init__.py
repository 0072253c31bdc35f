"""Evaluation: metrics, plots and the `evaluate` entry point."""

from ferlab.evaluation.evaluate import choose_split, evaluate
from ferlab.evaluation.metrics import classification_metrics
from ferlab.evaluation.plots import plot_confusion_matrix

__all__ = ["choose_split", "classification_metrics", "evaluate", "plot_confusion_matrix"]
