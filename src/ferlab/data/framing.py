"""Face framing: how a detected face box becomes the square image a model was trained on.

A dataset of face crops frames its faces in one way (FER2013's crops are tight,
others leave a margin); a photo's detector box frames them in another. A model
stores the framing of its training crops in its metadata (`Framing`), and every
inference path cuts detected faces with it, so a face from a photo looks like
the crops the model learnt from. `framing_from_boxes` measures that framing from
detector boxes found on the training crops themselves.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ferlab.errors import FerlabError

__all__ = ["RESAMPLING", "SCALE_BY", "Framing", "FramingStats", "framing_from_boxes", "read_framing"]

#: Which side of the detector's box the crop's size is measured against.
SCALE_BY = ("width", "height", "longer")
#: Pillow filters for the final resize to the model's input size.
RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}
# An offset this large puts the crop's centre outside the box: no dataset frames faces like that.
_MAX_OFFSET = 0.5


@dataclass(frozen=True)
class Framing:
    """The square cut around a detected face, relative to the detector's box.

    The crop's side is ``(1 + margin)`` times the box's reference side (`scale_by`);
    its centre is the box's centre shifted by ``offset_x`` and ``offset_y`` times
    that side (positive: right and down). The defaults are the framing every
    model had before it was stored: a square 25% wider than the box's longer side,
    on its centre, eyes levelled.

    Attributes:
        margin: the crop's side over the reference side, minus one; above -1
            (negative: the crop is tighter than the box, as FER2013's are).
        scale_by: ``width``, ``height`` or ``longer`` side of the box.
        offset_x, offset_y: shift of the centre, in reference sides, within +-0.5.
        align: rotate the crop so the eyes are level, where the detector gives landmarks.
        resample: Pillow filter of the resize to the model's input (a key of `RESAMPLING`).

    Raises:
        FerlabError: an impossible value, naming its field.
    """

    margin: float = 0.25
    scale_by: str = "longer"
    offset_x: float = 0.0
    offset_y: float = 0.0
    align: bool = True
    resample: str = "bilinear"

    def __post_init__(self) -> None:
        for name in ("margin", "offset_x", "offset_y"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise FerlabError(f"framing field {name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))  # frozen; a plain float for JSON
        if self.margin <= -1:
            raise FerlabError(f"framing field margin must be above -1 (a crop of positive size), got {self.margin}")
        for name in ("offset_x", "offset_y"):
            if abs(getattr(self, name)) > _MAX_OFFSET:
                raise FerlabError(f"framing field {name} must lie within +-{_MAX_OFFSET} (the crop's centre inside "
                                  f"the face box), got {getattr(self, name)}")
        if self.scale_by not in SCALE_BY:
            raise FerlabError(f"framing field scale_by must be one of {', '.join(SCALE_BY)}, got {self.scale_by!r}")
        if not isinstance(self.align, bool):
            raise FerlabError(f"framing field align must be true or false, got {self.align!r}")
        if self.resample not in RESAMPLING:
            raise FerlabError(f"framing field resample must be one of {', '.join(RESAMPLING)}, got {self.resample!r}")

    @property
    def filter(self) -> Image.Resampling:
        return RESAMPLING[self.resample]

    def reference_side(self, width: float, height: float) -> float:
        """The box side the crop is measured against."""
        return {"width": width, "height": height, "longer": max(width, height)}[self.scale_by]

    def square(self, box: tuple[float, float, float, float]) -> tuple[float, float, float]:
        """The crop of a face box (x, y, w, h): its centre x, centre y and side, in the image's pixels."""
        x, y, w, h = box
        reference = self.reference_side(w, h)
        return x + w / 2 + self.offset_x * reference, y + h / 2 + self.offset_y * reference, reference * (1 + self.margin)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "framing") -> Framing:
        """Raises: FerlabError naming `source` and an unknown or impossible field."""
        if not isinstance(data, Mapping):
            raise FerlabError(f"{source}: framing must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FerlabError(f"{source}: unknown framing field(s) {unknown}; known: {', '.join(sorted(known))}")
        try:
            return cls(**data)
        except FerlabError as err:
            raise FerlabError(f"{source}: {err}") from None


@dataclass(frozen=True)
class FramingStats:
    """What a framing measurement saw: how many crops it tried and found a face in, and the spread."""

    crops: int
    detected: int
    framing: Framing
    spread: dict[str, float]  # median absolute deviation of each measured quantity

    @property
    def detection_rate(self) -> float:
        return self.detected / self.crops if self.crops else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"crops": self.crops, "detected": self.detected, "detection_rate": self.detection_rate,
                "framing": self.framing.to_dict(), "spread": self.spread}


def _mad(values: np.ndarray) -> float:
    return float(np.median(np.abs(values - np.median(values))))


def framing_from_boxes(boxes: np.ndarray, frame: float, *, crops: int, align: bool, resample: str = "bilinear") -> FramingStats:
    """The robust (median) framing of square crops of side `frame` from the face boxes found in them.

    The crop size is measured against the box side whose ratio to the frame varies
    least (relative median absolute deviation), so the record keeps the steadier geometry.

    Args:
        boxes: (N, 4) x, y, w, h of one face per crop, in the crop's pixels (may reach outside it).
        frame: the crops' side in the same pixels.
        crops: how many crops were tried (N or more).
        align: the framing's `align`; whether the crops themselves have level eyes is for the caller to judge.

    Raises:
        FerlabError: no boxes.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(boxes):
        raise FerlabError(f"no face was found in any of the {crops} crops, so their framing cannot be measured")
    x, y, w, h = boxes.T
    sides = {"width": w, "height": h, "longer": np.maximum(w, h)}
    ratios = {name: frame / side for name, side in sides.items()}  # crop side over box side
    scale_by = min(("width", "height"), key=lambda name: _mad(ratios[name]) / float(np.median(ratios[name])))
    reference = sides[scale_by]
    centre = frame / 2
    measured = {
        "margin": ratios[scale_by] - 1,
        "offset_x": (centre - (x + w / 2)) / reference,
        "offset_y": (centre - (y + h / 2)) / reference,
    }
    framing = Framing(scale_by=scale_by, align=align, resample=resample,
                      **{name: round(float(np.median(v)), 4) for name, v in measured.items()})
    spread = {name: round(_mad(v), 4) for name, v in measured.items()}
    return FramingStats(crops=crops, detected=len(boxes), framing=framing, spread=spread)


def read_framing(path: str | Path) -> dict[str, Framing]:
    """The framing of each detector in a file written by `ferlab data framing` (`ferlab.inference.framing.write_framing`).

    Raises:
        FerlabError: a missing or malformed file (named).
    """
    path = Path(path).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        detectors = data["detectors"]
        return {str(name): Framing.from_dict(entry["framing"], f"{path}: detectors.{name}.framing")
                for name, entry in detectors.items()}
    except OSError as err:
        raise FerlabError(f"cannot read the framing file {path}: {err.strerror}") from None
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise FerlabError(f"{path} is not a framing file written by `ferlab data framing` ({type(err).__name__}: {err})") from None
