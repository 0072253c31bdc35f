"""Per-face expressions in photos: detect faces, crop them as the model was trained, classify them in one batch.

The classifier runs on PyTorch or on ONNX Runtime. With backend ``auto`` a
trained model is exported to ONNX in memory (through a temporary file that is
deleted at once), because ONNX Runtime classifies crops faster on a CPU; a
model that does not export, or a missing onnxruntime, falls back to PyTorch.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ferlab.data.transforms import check_tta, to_pixels
from ferlab.errors import FerlabError
from ferlab.inference.detect import Detector, Face, create_detector
from ferlab.inference.faces import face_pixels, load_image
from ferlab.models.bundled import bundled_dir, resolve_model
from ferlab.models.io import LoadedModel, load_model
from ferlab.models.onnx import ONNX_NAME, OnnxModel, export_onnx, stored_onnx

__all__ = ["BACKENDS", "Classifier", "FaceResult", "Recognizer"]

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")
Classifier = LoadedModel | OnnxModel


@dataclass(frozen=True)
class FaceResult:
    """One face and the model's calibrated probabilities for it."""

    face: Face
    label: str
    probs: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {**self.face.to_dict(), "label": self.label, "probs": self.probs}


def _exported(model: LoadedModel) -> OnnxModel:
    """`model` on ONNX Runtime; the session holds the graph in memory, so the file can go at once."""
    with tempfile.TemporaryDirectory(prefix="ferlab-onnx-") as tmp:
        return OnnxModel.load(export_onnx(model, Path(tmp) / "model.onnx"))


def _classifier(model: str | Path | Classifier, backend: str) -> tuple[Classifier, str]:
    """The model on the chosen backend, and that backend's name (``torch`` or ``onnx``).

    Raises:
        FerlabError: an unknown backend, an ONNX model with backend torch, or a model that cannot be loaded
            (or exported, with backend onnx).
    """
    if backend not in BACKENDS:
        raise FerlabError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if isinstance(model, OnnxModel) or (not isinstance(model, LoadedModel) and Path(model).suffix == ".onnx"):
        if backend == "torch":
            raise FerlabError("an ONNX model runs on ONNX Runtime only; give its run folder for backend torch")
        return (model if isinstance(model, OnnxModel) else OnnxModel.load(model)), "onnx"
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    if backend == "torch":
        return loaded, "torch"
    if backend == "auto" and importlib.util.find_spec("onnxruntime") is None:
        log.info("backend auto: onnxruntime is not installed, classifying on PyTorch")
        return loaded, "torch"
    folder = None if isinstance(model, LoadedModel) else resolve_model(model)
    stored = stored_onnx(folder, loaded.meta) if folder is not None and folder.is_dir() else None
    if stored is not None:  # the run's own export (training and save_ensemble write it): no export at start-up
        log.info("backend %s: classifying on ONNX Runtime (%s)", backend, ONNX_NAME)
        return stored, "onnx"
    try:
        onnx_model = _exported(loaded)
    except FerlabError as err:
        if backend == "onnx":
            raise
        log.info("backend auto: %s; classifying on PyTorch", err)
        return loaded, "torch"
    log.info("backend %s: classifying on ONNX Runtime", backend)
    return onnx_model, "onnx"


class Recognizer:
    """Finds the faces in images and classifies each one's expression.

    Args:
        model: a run folder, model file or ``.onnx`` file, or a loaded model.
        detector: a name from `ferlab.inference.detect.DETECTORS`, or a detector object.
            With ``none`` each image is a face crop and is prepared exactly as training crops were.
        backend: ``torch``, ``onnx`` or ``auto`` (ONNX Runtime where the model exports); the choice is in `backend`.
        tta: test-time augmentation (``none``, ``flip`` or ``tencrop``); None: the model's own (`ModelMeta.tta`).
        margin, align: expert overrides of the model's own framing of detected faces (its
            `ModelMeta.framing_for` the detector; see `ferlab.data.framing.Framing`); None keeps it.
        detector_path: the YuNet model file, with ``detector="yunet"``.

    Raises:
        FerlabError: an unknown backend, detector or tta, or a model or detector file that cannot be used.
    """

    def __init__(
        self,
        model: str | Path | Classifier,
        detector: str | Detector = "haar",
        *,
        backend: str = "auto",
        tta: str | None = None,
        margin: float | None = None,
        align: bool | None = None,
        detector_path: str | Path | None = None,
    ) -> None:
        if tta is not None:
            check_tta(tta)  # before a detector file is opened
        if detector_path is not None and not isinstance(detector, str):
            raise FerlabError("detector_path goes with a detector name, not a detector object")
        self.detector = create_detector(detector, model_path=detector_path) if isinstance(detector, str) else detector
        self.model, self.backend = _classifier(model, backend)
        self.tta = self.model.resolve_tta(tta)
        overrides = {name: value for name, value in (("margin", margin), ("align", align)) if value is not None}
        try:
            self.framing = replace(self.model.meta.framing_for(self.detector.name), **overrides)
        except FerlabError as err:
            raise FerlabError(f"face framing override: {err}") from None

    @classmethod
    def from_pretrained(cls, name: str = "fast", **kwargs: Any) -> Recognizer:
        """The bundled model `name` (``fast`` or ``accurate``, shipped in the package) with `kwargs` for the constructor.

        Raises:
            FerlabError: an unknown name.
        """
        return cls(str(bundled_dir(name)), **kwargs)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.model.classes

    def recognize(self, image: str | Path | Image.Image | np.ndarray) -> list[FaceResult]:
        """The faces in one image (a path, PIL image or uint8 array, RGB), left to right; none found: []."""
        return self.recognize_batch([image])[0]

    def recognize_batch(self, images: Sequence[str | Path | Image.Image | np.ndarray]) -> list[list[FaceResult]]:
        """`recognize` for each image; all faces of all images go through the classifier as one batch.

        Raises:
            FerlabError: an image that cannot be read (named).
        """
        arrays = [load_image(image) for image in images]
        return self.classify([(array, self.detector.detect(array)) for array in arrays])

    def classify(self, items: Sequence[tuple[np.ndarray, Sequence[Face]]]) -> list[list[FaceResult]]:
        """Classify faces found already (a video frame reusing earlier detections), in one batch.

        Args:
            items: (RGB uint8 image (H, W, 3), its faces) pairs.
        """
        pixels = [self._pixels(image, faces) for image, faces in items]  # each (n_i, C, S, S)
        counts = [len(p) for p in pixels]
        if not sum(counts):
            return [[] for _ in items]
        probs = self.model.predict_proba(torch.cat(pixels), tta=self.tta)  # (sum of n_i, K)
        classes = self.classes
        results, start = [], 0
        for (_, faces), n in zip(items, counts):
            results.append([FaceResult(face, classes[int(p.argmax())], {c: float(v) for c, v in zip(classes, p)})
                            for face, p in zip(faces, probs[start:start + n])])
            start += n
        return results

    def _pixels(self, image: np.ndarray, faces: Sequence[Face]) -> torch.Tensor:
        prep = self.model.meta.preprocessing
        if self.detector.name == "none":
            # The image is the crop: resized like a training crop (stretched), not padded square with a margin.
            return to_pixels(Image.fromarray(image), prep, self.framing.filter).unsqueeze(0).repeat(len(faces), 1, 1, 1)
        return face_pixels(image, faces, prep, self.framing)
