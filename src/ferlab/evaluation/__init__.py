"""Evaluation: metrics, plots, reports, model comparisons and the label-noise finder."""

from ferlab.evaluation.comparison import ComparisonResult, compare_models
from ferlab.evaluation.evaluate import (
    EvaluateResult,
    Evaluation,
    choose_split,
    evaluate,
    evaluate_model,
    write_evaluation,
)
from ferlab.evaluation.metrics import classification_metrics
from ferlab.evaluation.plots import plot_confusion_matrix
from ferlab.evaluation.report import ReportResult, report
from ferlab.evaluation.significance import McNemarResult, mcnemar

__all__ = [
    "ComparisonResult",
    "EvaluateResult",
    "Evaluation",
    "McNemarResult",
    "ReportResult",
    "choose_split",
    "classification_metrics",
    "compare_models",
    "evaluate",
    "evaluate_model",
    "mcnemar",
    "plot_confusion_matrix",
    "report",
    "write_evaluation",
]
