"""Model cards state an evaluation's own figures, in JSON and markdown, written atomically."""

import json

import numpy as np

from ferlab.evaluation.metrics import classification_metrics
from ferlab.evaluation.model_card import FER2013_TERMS, model_card, write_model_card


def test_a_card_carries_the_evaluations_figures(tmp_path):
    targets = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 2, 0]] * 0.7 + 0.1  # rows sum to 1; two of six wrong
    metrics = {**classification_metrics(targets, probs, ["a", "b", "c"]), "architecture": "cnn3_bn", "tta": "none",
               "temperature": 1.25}
    card = model_card(metrics, name="tiny", summary="a test model", parameters=1234, size_mb=0.0049, data="six faces",
                      evaluated_on="the same six", recipe=["`ferlab train`"], speed={"crops/s, batch 1": 1500.0})
    json_path, markdown_path = write_model_card(card, tmp_path / "card")

    stored = json.loads(json_path.read_text())
    assert stored["metrics"]["accuracy"] == metrics["accuracy"] == 4 / 6
    assert stored["per_class_recall"] == {"a": 0.5, "b": 1.0, "c": 0.5}
    assert stored["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert stored["terms"] == FER2013_TERMS and len(stored["limits"]) >= 4
    text = markdown_path.read_text()
    assert text.startswith("# ferlab `tiny`") and "| accuracy | 0.6667 |" in text
    assert "| **c** | 1 | 0 | 1 |" in text and "| 0.500 | 1.000 | 0.500 |" in text
    assert "crops/s, batch 1: 1,500" in text and "temperature (probability calibration): 1.250" in text
    assert sorted(p.name for p in (tmp_path / "card").iterdir()) == ["MODEL_CARD.md", "card.json"]  # no temp files
