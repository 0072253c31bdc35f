import numpy as np
import pytest

from ferlab.evaluation import classification_metrics


def test_metrics_match_hand_computed_values():
    targets = np.array([0, 0, 1, 1, 2, 2])
    predicted = [0, 1, 1, 1, 2, 0]
    probs = np.eye(3)[predicted] * 0.8 + 0.2 / 3
    m = classification_metrics(targets, probs, ["angry", "happy", "neutral"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["angry"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert m["per_class"]["happy"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert m["per_class"]["neutral"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_absent_classes_count_as_zero_not_errors():
    m = classification_metrics(np.array([0, 0]), np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0]]), ["a", "b", "c"])
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["confusion_matrix"] == [[2, 0, 0], [0, 0, 0], [0, 0, 0]]
