import json
import math

import numpy as np
import pytest

from ferlab.evaluation import classification_metrics

# 6 samples, 3 classes; no confidence lies on a 1/15 bin edge, so the ECE bins are known.
TARGETS = np.array([0, 0, 0, 1, 2, 2])
PROBS = np.array([
    [0.70, 0.20, 0.10],  # right, bin 10 (0.667-0.733)
    [0.40, 0.50, 0.10],  # wrong, true class second, bin 7 (0.467-0.533)
    [0.50, 0.30, 0.20],  # right, bin 7
    [0.15, 0.75, 0.10],  # right, bin 11 (0.733-0.8)
    [0.20, 0.15, 0.65],  # right, bin 9 (0.6-0.667)
    [0.62, 0.28, 0.10],  # wrong, true class last, bin 9
])
CLASSES = ["angry", "happy", "neutral"]


def _plain_json(value):
    """Only the types json writes natively (no numpy scalars), and no NaN."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain_json(v) for v in value)
    if type(value) is float:
        return math.isfinite(value)
    return type(value) in (int, str, bool) or value is None


def test_metrics_match_hand_computed_values():
    targets = np.array([0, 0, 1, 1, 2, 2])
    predicted = [0, 1, 1, 1, 2, 0]
    probs = np.eye(3)[predicted] * 0.8 + 0.2 / 3
    m = classification_metrics(targets, probs, ["angry", "happy", "neutral"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["angry"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2, "auroc": 0.625, "ap": 5 / 12})  # ties count half
    assert m["per_class"]["happy"] == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2, "auroc": 0.875, "ap": 2 / 3})
    assert m["per_class"]["neutral"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2, "auroc": 0.75, "ap": 2 / 3})
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_ranking_and_calibration_metrics_by_hand():
    m = classification_metrics(TARGETS, PROBS, CLASSES)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)  # mean recall
    assert m["top2_accuracy"] == pytest.approx(5 / 6)  # only the last row misses its class in the top two
    assert m["log_loss"] == pytest.approx(-sum(map(math.log, [0.7, 0.4, 0.5, 0.75, 0.65, 0.1])) / 6)
    # Bins 7 (acc 1/2, conf 0.5), 9 (acc 1/2, conf 0.635), 10 (1 vs 0.7), 11 (1 vs 0.75), weighted by share.
    assert m["ece"] == pytest.approx((2 * 0 + 2 * 0.135 + 0.3 + 0.25) / 6, abs=1e-6)
    # AUROC as the share of (positive, negative) pairs ranked right, ties counting half:
    # angry: positives 0.7, 0.4, 0.5 vs negatives 0.15, 0.2, 0.62 -> 3 + 2 + 2 of 9.
    # neutral: positives 0.65, 0.1 vs negatives 0.1, 0.1, 0.2, 0.1 -> 4 + 3 * 0.5 of 8.
    assert m["per_class"]["angry"]["auroc"] == pytest.approx(7 / 9)
    assert m["per_class"]["happy"]["auroc"] == pytest.approx(1.0)
    assert m["per_class"]["neutral"]["auroc"] == pytest.approx(5.5 / 8)
    assert m["macro_auroc"] == pytest.approx((7 / 9 + 1 + 5.5 / 8) / 3)
    # angry ranked P N P P N N: precision 1, 2/3, 3/4 at its positives.
    assert m["per_class"]["angry"]["ap"] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert m["per_class"]["happy"]["ap"] == pytest.approx(1.0)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 0], [1, 0, 1]]
    np.testing.assert_allclose(m["confusion_matrix_normalized"], [[2 / 3, 1 / 3, 0], [0, 1, 0], [0.5, 0, 0.5]])
    assert _plain_json(m)
    json.dumps(m, allow_nan=False)


def test_absent_classes_count_as_zero_not_errors():
    m = classification_metrics(np.array([0, 0]), np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0]]), ["a", "b", "c"])
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "auroc": None, "ap": None}
    assert m["confusion_matrix"] == [[2, 0, 0], [0, 0, 0], [0, 0, 0]]
    # One class only: it has positives (AP 1) but no negatives, so no AUROC anywhere.
    assert m["per_class"]["a"]["ap"] == 1.0 and m["per_class"]["a"]["auroc"] is None
    assert m["macro_auroc"] is None
    assert _plain_json(m)


def test_model_with_more_classes_than_the_targets():
    # Class "d" never occurs but the model predicts it once (row 3, true "c").
    targets = np.array([0, 0, 1, 2, 2])
    probs = np.array([
        [0.55, 0.05, 0.35, 0.05],
        [0.6, 0.2, 0.1, 0.1],
        [0.1, 0.7, 0.1, 0.1],
        [0.1, 0.1, 0.3, 0.5],
        [0.1, 0.1, 0.6, 0.2],
    ], dtype=np.float32)
    m = classification_metrics(targets, probs, ["a", "b", "c", "d"])
    assert m["per_class"]["d"]["support"] == 0 and m["per_class"]["d"]["auroc"] is None
    assert m["balanced_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)  # "d" has no recall to average
    assert m["weighted_f1"] == pytest.approx((2 * 1 + 1 * 1 + 2 * (2 / 3)) / 5)  # weights are the supports
    assert m["macro_f1"] == pytest.approx((1 + 1 + 2 / 3 + 0) / 4)
    assert m["per_class"]["c"]["auroc"] == pytest.approx(5 / 6)  # positives 0.3, 0.6 vs 0.35, 0.1, 0.1
    assert m["macro_auroc"] == pytest.approx((1 + 1 + 5 / 6) / 3)
    assert m["confusion_matrix_normalized"][3] == [0.0, 0.0, 0.0, 0.0]
    assert m["confusion_matrix_normalized"][2] == pytest.approx([0, 0, 0.5, 0.5])
    assert _plain_json(m)


def test_confident_and_right_is_perfectly_calibrated():
    targets = np.array([0, 1, 2, 1])
    m = classification_metrics(targets, np.eye(3)[targets], CLASSES)
    assert m["accuracy"] == m["balanced_accuracy"] == m["top2_accuracy"] == 1.0
    assert m["ece"] == 0.0
    assert m["log_loss"] == pytest.approx(0.0, abs=1e-9)
    assert m["macro_auroc"] == 1.0


def test_two_classes_have_top2_of_one():
    m = classification_metrics(np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]]), ["a", "b"])
    assert m["top2_accuracy"] == 1.0 and m["accuracy"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(("targets", "probs", "match"), [
    (np.array([0, 1]), np.full((2, 2), 0.5), r"shape \(N, 3\)"),
    (np.array([0, 1, 2]), np.full((2, 3), 1 / 3), r"targets must have shape \(2,\)"),
    (np.array([0, 3]), np.full((2, 3), 1 / 3), "class indices"),
    (np.zeros(0, int), np.zeros((0, 3)), "no samples"),
])
def test_bad_shapes_are_refused(targets, probs, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(targets, probs, CLASSES)
