"""Predictions for image files, folders and globs: one row per face, annotated copies, a CSV and a JSON file."""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ferlab._io import write_csv, write_json
from ferlab.data.images import is_image_name
from ferlab.errors import FerlabError
from ferlab.inference.annotate import annotate, save_image
from ferlab.inference.detect import Detector
from ferlab.inference.faces import load_image
from ferlab.inference.recognizer import Classifier, FaceResult, Recognizer
from ferlab.models import LoadedModel, load_model

__all__ = ["FilePredictions", "ImageInput", "Prediction", "Predictor", "expand_inputs", "predict_files"]

log = logging.getLogger(__name__)

ImageInput = str | Path | Image.Image | np.ndarray
#: Below this many files the progress bar stays hidden.
PROGRESS_MIN_FILES = 20


@dataclass(frozen=True)
class Prediction(FaceResult):
    """A face of a named image: `index` counts its image's faces from the left, from 0."""

    source: str
    index: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "face": self.index, **super().to_dict()}


def _name(item: ImageInput, position: int) -> str:
    if isinstance(item, Image.Image):
        return f"<image {position}>"
    if isinstance(item, np.ndarray):
        return f"<array {position}>"
    return str(item)


class Predictor:
    """Classifies images that already are face crops, one Prediction per image, on PyTorch.

    A `Recognizer` with detector ``none``: each image is prepared exactly as training crops were.

    Args:
        tta: test-time augmentation, ``none``, ``flip`` or ``tencrop`` (see `ferlab.data.transforms.tta_views`);
            None: the model's own (`ModelMeta.tta`).

    Raises:
        FerlabError: an unknown `tta`.
    """

    def __init__(self, model: LoadedModel, tta: str | None = None) -> None:
        self.recognizer = Recognizer(model, "none", backend="torch", tta=tta)

    @property
    def model(self) -> LoadedModel:
        return self.recognizer.model

    @classmethod
    def from_path(cls, path: str | Path, tta: str | None = None) -> Predictor:
        return cls(load_model(path), tta)

    def predict(self, images: Sequence[ImageInput]) -> list[Prediction]:
        """One Prediction per image: paths, PIL images or uint8 arrays (RGB), in one batch."""
        results = self.recognizer.recognize_batch(images)
        return [Prediction(r.face, r.label, r.probs, _name(item, i))
                for i, (item, (r,)) in enumerate(zip(images, results))]


@dataclass(frozen=True)
class FilePredictions:
    """What `predict_files` found and wrote.

    Attributes:
        predictions: one per face, files in input order, faces left to right.
        faces: each image read, with its number of faces (0: none found; it has no prediction).
        unreadable: each file skipped, with the reason.
        annotated: the annotated copies written (none with detector ``none``).
        backend: ``torch`` or ``onnx``, as the `Recognizer` chose.
    """

    predictions: list[Prediction]
    faces: dict[str, int]
    unreadable: dict[str, str]
    annotated: list[Path]
    backend: str


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given; folders searched recursively for images; glob patterns expanded.

    Raises:
        FerlabError: a path that does not exist, or a folder or pattern with no images.
    """
    found: list[Path] = []
    for item in map(str, inputs):
        path = Path(item).expanduser()
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            images = sorted(p for p in path.rglob("*") if p.is_file() and is_image_name(p.name))
            if not images:
                raise FerlabError(f"folder {path} holds no images")
            found += images
        elif glob.has_magic(item):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not matches:
                raise FerlabError(f"no files match {item}")
            found += matches
        else:
            raise FerlabError(f"no such file or folder: {path}")
    return found


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


def predict_files(
    model: str | Path | Classifier,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    detector: str | Detector = "haar",
    detector_path: str | Path | None = None,
    backend: str = "auto",
    tta: str | None = None,
    margin: float | None = None,
    batch_size: int = 32,
) -> FilePredictions:
    """Find and classify the faces in image files, folders or globs; write the results to `out`.

    Writes ``predictions.csv`` (one row per face), ``predictions.json`` (also listing images without
    a face and unreadable files) and, unless the detector is ``none``, annotated copies of the images
    under ``annotated/``, in the inputs' folder structure. An unreadable file is skipped, not fatal.

    Args:
        model, detector, detector_path, backend, tta, margin: as for `Recognizer`.
        batch_size: images decoded and classified together.

    Raises:
        FerlabError: a missing input, options the Recognizer refuses, or no readable image at all.
    """
    paths = expand_inputs(inputs)  # before the model: a mistyped path fails at once, not after the load
    if not paths:
        raise FerlabError("no input images given")
    recognizer = Recognizer(model, detector, backend=backend, tta=tta, detector_path=detector_path, margin=margin)
    out = Path(out)
    classes = list(recognizer.classes)
    crops = recognizer.detector.name == "none"
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
                if not crops:
                    target = out / "annotated" / path.resolve().relative_to(root)
                    annotated.append(save_image(target, annotate(image, results, classes)))
            bar.update(min(batch_size, len(paths) - start))
    if not faces:
        raise FerlabError(f"none of the {len(paths)} input files could be read; first: {next(iter(unreadable.values()))}")
    write_json(out / "predictions.json", {
        "classes": classes, "detector": recognizer.detector.name, "backend": recognizer.backend, "tta": recognizer.tta,
        "framing": recognizer.framing.to_dict(),
        "predictions": [p.to_dict() for p in predictions],
        "images": [{"source": source, "faces": n} for source, n in faces.items()],
        "unreadable": [{"source": source, "error": error} for source, error in unreadable.items()],
    })
    write_csv(
        out / "predictions.csv",
        [{"source": p.source, "face": p.index, **dict(zip("xywh", p.face.box)), "score": round(p.face.score, 4),
          "label": p.label, **{c: round(p.probs[c], 6) for c in classes}} for p in predictions],
        ["source", "face", "x", "y", "w", "h", "score", "label", *classes],
    )
    return FilePredictions(predictions, faces, unreadable, annotated, recognizer.backend)
