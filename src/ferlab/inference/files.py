"""Predictions for image files, folders and globs: one row per face, annotated copies, a CSV and a JSON file.

`Recognizer.predict_files` is the public entry.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from ferlab._io import write_csv, write_json
from ferlab.data.inputs import expand_inputs
from ferlab.errors import FerlabError
from ferlab.inference.drawing import annotate, save_image
from ferlab.inference.faces import load_image
from ferlab.inference.results import Prediction, face_rows, to_frame

if TYPE_CHECKING:
    import pandas as pd

    from ferlab.inference.recognizer import Recognizer

__all__ = ["FilePredictions", "expand_inputs", "write_predictions"]

log = logging.getLogger(__name__)

#: Below this many files the progress bar stays hidden.
PROGRESS_MIN_FILES = 20


@dataclass(frozen=True)
class FilePredictions:
    """What `Recognizer.predict_files` found (and wrote, given a folder).

    Attributes:
        predictions: one per face, files in input order, faces left to right.
        faces: each image read, with its number of faces (0: none found; it has no prediction).
        unreadable: each file skipped, with the reason.
        annotated: the annotated copies written (none with detector ``none`` or without an output folder).
        backend: ``torch`` or ``onnx``, as the `Recognizer` chose.
        classes: the model's classes, the columns of `to_frame`.
    """

    predictions: list[Prediction]
    faces: dict[str, int]
    unreadable: dict[str, str]
    annotated: list[Path]
    backend: str
    classes: tuple[str, ...] = ()

    def to_frame(self) -> pd.DataFrame:
        """One row per face (see `face_rows`); needs pandas."""
        return to_frame(face_rows(self.predictions, self.classes))


def _read(paths: Sequence[Path], unreadable: dict[str, str]) -> dict[Path, np.ndarray]:
    """The images that can be read, as RGB arrays; the others are logged and noted in `unreadable`."""
    images = {}
    for path in paths:
        try:
            images[path] = load_image(path)
        except FerlabError as err:
            log.warning("skipped: %s", err)
            unreadable[str(path)] = str(err)
    return images


def _write_tables(out: Path, recognizer: Recognizer, found: FilePredictions) -> None:
    classes = list(recognizer.classes)
    write_json(out / "predictions.json", {
        "classes": classes, "detector": recognizer.detector.name, "backend": recognizer.backend, "tta": recognizer.tta,
        "framing": recognizer.framing.to_dict(),
        "predictions": [p.to_dict() for p in found.predictions],
        "images": [{"source": source, "faces": n} for source, n in found.faces.items()],
        "unreadable": [{"source": source, "error": error} for source, error in found.unreadable.items()],
    })
    rows = face_rows(found.predictions, classes)
    for row in rows:
        row.update({"score": round(row["score"], 4), **{c: round(row[c], 6) for c in classes}})
    write_csv(out / "predictions.csv", rows, ["source", "face", "x", "y", "w", "h", "score", "label", *classes])


def write_predictions(
    recognizer: Recognizer, paths: Sequence[Path], out: Path | None, batch_size: int = 32
) -> FilePredictions:
    """Classify the faces in `paths` in batches; with `out`, write tables and annotated copies there.

    Raises:
        FerlabError: no readable image at all.
    """
    classes = recognizer.classes
    annotating = out is not None and recognizer.detector.name != "none"
    root = Path(os.path.commonpath([p.resolve().parent for p in paths]))
    predictions: list[Prediction] = []
    faces: dict[str, int] = {}
    unreadable: dict[str, str] = {}
    annotated: list[Path] = []
    with tqdm(total=len(paths), unit="image", disable=len(paths) < PROGRESS_MIN_FILES or None) as bar:
        for start in range(0, len(paths), batch_size):
            images = _read(paths[start:start + batch_size], unreadable)
            for (path, image), results in zip(images.items(), recognizer.recognize_batch(list(images.values()))):
                faces[str(path)] = len(results)
                predictions += [Prediction(r.face, r.label, r.probs, str(path), i) for i, r in enumerate(results)]
                if annotating:
                    target = out / "annotated" / path.resolve().relative_to(root)
                    annotated.append(save_image(target, annotate(image, results, list(classes))))
            bar.update(min(batch_size, len(paths) - start))
    if not faces:
        raise FerlabError(f"none of the {len(paths)} input files could be read; first: {next(iter(unreadable.values()))}")
    found = FilePredictions(predictions, faces, unreadable, annotated, recognizer.backend, tuple(classes))
    if out is not None:
        _write_tables(out, recognizer, found)
    return found
