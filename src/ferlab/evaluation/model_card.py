"""Model cards: what a shipped model was trained on, how, how well it does, how fast, and where it fails.

A card is built from an evaluation's metrics (never typed by hand), so the
figures it states are the ones a user reproduces with ``ferlab evaluate``.
It is written twice: ``card.json`` for programs and tests, ``MODEL_CARD.md`` for people.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ferlab._io import write_json, write_text
from ferlab._markdown import markdown_table

__all__ = ["FER2013_LIMITS", "FER2013_TERMS", "ModelCard", "model_card", "photo_row", "write_model_card"]

FER2013_LIMITS = (
    "Trained on FER2013: 48x48 grayscale web images found by emotion keywords (Goodfellow et al., 2013). "
    "Colour, resolution above 48 px and head pose beyond the web's typical frontal faces are lost or unseen.",
    "FER2013's labels are single crowd labels; human agreement on them is about 65% (Goodfellow et al.), "
    "and the label-noise finder flags some 30% of the training images (`ferlab data suspects`).",
    "Posed and exaggerated expressions dominate; subtle, spontaneous expressions (video calls, driving) "
    "are recognised less well, and `disgust` has 436 training images of 28,709.",
    "FER2013 has no demographic annotation, and audits of FER datasets report skews in age, gender and skin "
    "tone; accuracy on under-represented groups is unknown and may be lower. Measure on your own population.",
    "An expression is not an emotion: the model labels facial muscle configurations, not what a person "
    "feels. Do not use it to make decisions about people (hiring, policing, health, education).",
)
FER2013_TERMS = (
    "FER2013 was released for the ICML 2013 Challenges in Representation Learning (Kaggle) for research. "
    "The images come from the web and their rights stay with their owners; the weights learnt from them "
    "are shared for research and education, and commercial use is at the user's own legal risk."
)


@dataclass
class ModelCard:
    """The facts of one shipped model.

    Attributes:
        recipe: how it was made (config file, command, training time), in words and commands.
        metrics: headline figures of the evaluation (accuracy, macro-F1, ECE, ...).
        per_class_recall: class -> recall on the evaluated split.
        confusion_matrix: counts, rows true classes, columns predictions, in `classes` order.
        speed: measured figures, e.g. ``{"crops/s, batch 1": 950.0, "cpu": "2 cores ..."}``.
        framing: how the model cuts faces found by each detector (its ``model.json`` record).
        photos: the photo pipeline on labelled photos, one row per detector (`photo_row`).
    """

    name: str
    summary: str
    architecture: str
    parameters: int
    size_mb: float
    classes: list[str]
    tta: str
    temperature: float
    data: str
    evaluated_on: str
    recipe: list[str]
    metrics: dict[str, float]
    per_class_recall: dict[str, float]
    confusion_matrix: list[list[int]]
    speed: dict[str, Any] = field(default_factory=dict)
    framing: dict[str, dict[str, Any]] = field(default_factory=dict)
    photos: list[dict[str, Any]] = field(default_factory=list)
    limits: list[str] = field(default_factory=lambda: list(FER2013_LIMITS))
    terms: str = FER2013_TERMS


_HEADLINE = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "top2_accuracy": "top-2 accuracy",
             "macro_f1": "macro-F1", "macro_auroc": "macro AUROC", "log_loss": "log loss", "ece": "calibration error (ECE)"}


def photo_row(metrics: Mapping[str, Any], data: str) -> dict[str, Any]:
    """A card's photo row from the metrics of `evaluate_model` with a detector, on labelled photos at `data`."""
    return {"data": data, "detector": metrics["detector"], "photos": metrics["photos"],
            "detection_rate": metrics["detection_rate"], "accuracy": metrics["accuracy"],
            "accuracy_of_detected": metrics["accuracy_of_detected"], "macro_f1": metrics["macro_f1"]}


def model_card(metrics: Mapping[str, Any], *, name: str, summary: str, parameters: int, size_mb: float, data: str,
               evaluated_on: str, recipe: Sequence[str], speed: Mapping[str, Any] | None = None,
               framing: Mapping[str, Mapping[str, Any]] | None = None,
               photos: Sequence[Mapping[str, Any]] = ()) -> ModelCard:
    """A card from an evaluation's ``metrics.json`` content (see `ferlab.evaluation.evaluate`)."""
    classes = list(metrics["classes"])
    return ModelCard(
        name=name, summary=summary, architecture=metrics["architecture"], parameters=parameters,
        size_mb=round(size_mb, 2), classes=classes, tta=metrics["tta"], temperature=metrics["temperature"],
        data=data, evaluated_on=evaluated_on, recipe=list(recipe),
        metrics={key: metrics[key] for key in _HEADLINE if metrics.get(key) is not None},
        per_class_recall={c: metrics["per_class"][c]["recall"] for c in classes},
        confusion_matrix=[list(map(int, row)) for row in metrics["confusion_matrix"]],
        speed=dict(speed or {}),
        framing={detector: dict(record) for detector, record in (framing or {}).items()},
        photos=[dict(row) for row in photos],
    )


def _photo_lines(card: ModelCard) -> list[str]:
    """The photo pipeline's table and the framing behind it."""
    if not card.photos:
        return []
    lines = ["## On photos (detect, cut the face with the stored framing, classify)", ""]
    lines += markdown_table(
        ["data", "detector", "photos", "faces found", "accuracy", "accuracy of faces found", "macro-F1"],
        ([r["data"], r["detector"], r["photos"], f"{r['detection_rate']:.1%}", f"{r['accuracy']:.4f}",
          f"{r['accuracy_of_detected']:.4f}", f"{r['macro_f1']:.4f}"] for r in card.photos), align="llrrrrr")
    lines += ["", "A photo in which no face is found counts as an error in `accuracy`. Reproduce with "
              "`ferlab evaluate --model NAME --data PHOTOS --split all --detector yunet|haar`.", ""]
    lines += [f"- framing for {d}: crop side {1 + f['margin']:.3f} x the box {f['scale_by']}, centre offset "
              f"({f['offset_x']:+.3f}, {f['offset_y']:+.3f}) box sides, eyes levelled: {f['align']}"
              for d, f in card.framing.items()]
    return [*lines, ""]


def _markdown(card: ModelCard) -> str:
    lines = [f"# ferlab `{card.name}`", "", card.summary, "",
             f"- architecture: {card.architecture}, {card.parameters:,} parameters, {card.size_mb:.1f} MB of weights",
             f"- classes: {', '.join(card.classes)}",
             f"- trained on: {card.data}",
             f"- evaluated on: {card.evaluated_on}",
             f"- test-time augmentation: `{card.tta}` (stored in model.json; evaluate, predict, serve and ONNX use it)",
             f"- temperature (probability calibration): {card.temperature:.3f}", "",
             "## Recipe", "", *[f"- {step}" for step in card.recipe], "",
             "## Accuracy", "",
             *markdown_table(["metric", "value"], ([_HEADLINE[k], f"{v:.4f}"] for k, v in card.metrics.items())), "",
             "Recall per class:", "",
             *markdown_table(card.classes, [[f"{card.per_class_recall[c]:.3f}" for c in card.classes]],
                             align="r" * len(card.classes)), "",
             "Confusion matrix (rows: true class, columns: predicted):", "",
             *markdown_table(["", *card.classes], ([f"**{c}**", *row] for c, row in zip(card.classes, card.confusion_matrix))),
             ""]
    lines += _photo_lines(card)
    if card.speed:
        lines += ["## Speed", "", *[f"- {k}: {v:,.0f}" if isinstance(v, float) else f"- {k}: {v}"
                                    for k, v in card.speed.items()], ""]
    lines += ["## Known limits", "", *[f"- {limit}" for limit in card.limits], "", "## Data terms", "", card.terms, ""]
    return "\n".join(lines)


def write_model_card(card: ModelCard, folder: str | Path) -> tuple[Path, Path]:
    """Write ``card.json`` and ``MODEL_CARD.md`` into `folder` atomically; returns both paths."""
    folder = Path(folder)
    write_json(folder / "card.json", asdict(card))
    write_text(folder / "MODEL_CARD.md", _markdown(card))
    return folder / "card.json", folder / "MODEL_CARD.md"
