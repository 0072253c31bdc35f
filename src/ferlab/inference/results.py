"""What recognition returns: per-face results, as plain dicts and, where pandas is installed, DataFrames.

One row per face (for video, per face and frame), as py-feat users expect.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ferlab.errors import FerlabError
from ferlab.inference.detect import Face

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FaceResult", "Prediction", "face_rows", "to_frame"]


@dataclass(frozen=True)
class FaceResult:
    """One face and the model's calibrated probabilities for it."""

    face: Face
    label: str
    probs: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {**self.face.to_dict(), "label": self.label, "probs": self.probs}


@dataclass(frozen=True)
class Prediction(FaceResult):
    """A face of a named image: `index` counts its image's faces from the left, from 0."""

    source: str
    index: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "face": self.index, **super().to_dict()}


def face_rows(predictions: Sequence[Prediction], classes: Sequence[str]) -> list[dict[str, Any]]:
    """Flat rows, one per face: source, face, box (x, y, w, h), detector score, label and each class's probability."""
    return [{"source": p.source, "face": p.index, **dict(zip("xywh", p.face.box)), "score": p.face.score,
             "label": p.label, **{c: p.probs[c] for c in classes}} for p in predictions]


def to_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """`rows` as a pandas DataFrame.

    Raises:
        FerlabError: pandas is not installed (it is optional: ``pip install pandas``).
    """
    try:
        pandas = importlib.import_module("pandas")
    except ImportError:
        raise FerlabError("a DataFrame needs pandas, which is not installed: pip install pandas") from None
    return pandas.DataFrame(list(rows))
