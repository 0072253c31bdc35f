"""Drawing faces, labels and probabilities onto images with OpenCV, and writing them out."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ferlab._io import atomic_path
from ferlab.errors import FerlabError

if TYPE_CHECKING:
    from ferlab.inference.recognizer import FaceResult

__all__ = ["annotate", "caption", "save_image"]

#: Suffixes OpenCV writes in colour; other images are written as PNG under their name plus ``.png``.
WRITABLE = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
FONT = cv2.FONT_HERSHEY_SIMPLEX


def label_colours() -> tuple[tuple[float, float, float], ...]:
    """Each class's colour, by position (matplotlib's tab10): boxes, the web app's charts and ferlab's plots agree."""
    from matplotlib import colormaps

    return tuple(colormaps["tab10"].colors)


@functools.cache
def _palette() -> tuple[tuple[int, int, int], ...]:
    """`label_colours` as RGB bytes, for OpenCV."""
    return tuple(tuple(round(255 * c) for c in rgb) for rgb in label_colours())


def caption(result: FaceResult, number: int | None = None) -> str:
    """``happy 0.87``, or ``#2 happy 0.87`` for face (or tracked face) number 2."""
    text = f"{result.label} {result.probs[result.label]:.2f}"
    return text if number is None else f"#{number} {text}"


def annotate(
    image: np.ndarray,
    results: Sequence[FaceResult],
    classes: Sequence[str],
    captions: Sequence[str] | None = None,
) -> np.ndarray:
    """A copy of the RGB uint8 image (H, W, 3) with each face's box, landmarks and caption drawn on.

    Args:
        classes: the model's classes; each label gets its own colour, by position.
        captions: one text per result (default: `caption` with the face's number, ``#0 happy 0.87``, the
            number the results' tables and the web app's charts give it).
    """
    captions = [caption(r, i) for i, r in enumerate(results)] if captions is None else captions
    canvas = np.ascontiguousarray(image).copy()
    side = min(canvas.shape[:2])
    thickness = max(1, round(side / 300))
    scale = max(0.35, side / 1000)
    palette = _palette()
    for result, text in zip(results, captions):
        colour = palette[classes.index(result.label) % len(palette)]
        x, y, w, h = result.face.box
        cv2.rectangle(canvas, (x, y), (x + w - 1, y + h - 1), colour, thickness, cv2.LINE_AA)
        for px, py in result.face.landmarks or ():
            cv2.circle(canvas, (round(px), round(py)), thickness + 1, colour, -1, cv2.LINE_AA)
        (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
        top = y - th - base - 2 * thickness if y - th - base - 2 * thickness >= 0 else y + h  # above the box, else below
        cv2.rectangle(canvas, (x, top), (x + tw + 2 * thickness, top + th + base + 2 * thickness), colour, -1)
        cv2.putText(canvas, text, (x + thickness, top + th + thickness), FONT, scale, (255, 255, 255), thickness,
                    cv2.LINE_AA)
    return canvas


def save_image(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB uint8 image atomically in the format its suffix names; returns the path written.

    A suffix OpenCV cannot write in colour (``.gif``, ``.pgm``...) gets ``.png`` appended.

    Raises:
        FerlabError: OpenCV cannot encode the image.
    """
    path = Path(path)
    if path.suffix.lower() not in WRITABLE:
        path = path.with_name(path.name + ".png")
    ok, encoded = cv2.imencode(path.suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise FerlabError(f"cannot encode {path.name} as {path.suffix}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())
    return path
