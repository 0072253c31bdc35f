"""Per-face expressions in photos: detect faces, crop them as the model was trained, classify them in one batch.

The one way to predict: a bundled model name, run folder, ``.safetensors`` or
``.onnx`` file goes in; `recognize`, `recognize_batch`, `predict_files` and the video
functions build on it, and the CLI, web app and API call it. The classifier runs
on ONNX Runtime where it can: a run's own ``model.onnx`` (training and ensembles
write it, the bundled models ship it) loads with no torch at all, which is what the
inference install (``pip install ferlab``) has. PyTorch is needed only for a model
without a current ``model.onnx``, or with backend ``torch``.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ferlab.data.transforms import check_tta, to_pixels
from ferlab.errors import FerlabError
from ferlab.inference.detect import DEFAULT_DETECTOR, Detector, Face, create_detector
from ferlab.inference.faces import face_pixels, load_image
from ferlab.inference.files import FilePredictions, expand_inputs, write_predictions
from ferlab.inference.results import FaceResult, Prediction, face_rows, to_frame
from ferlab.models.backend import ModelBackend
from ferlab.models.bundled import bundled_dir, is_bundled, resolve_model
from ferlab.models.files import model_files, read_meta
from ferlab.models.onnx_runtime import ONNX_NAME, OnnxModel, stored_onnx

if TYPE_CHECKING:
    import pandas as pd

    from ferlab.models.io import LoadedModel

__all__ = ["BACKENDS", "Classifier", "FaceResult", "Recognizer"]

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")
#: What `Recognizer` classifies with: a `LoadedModel` (PyTorch) or an `OnnxModel` (ONNX Runtime).
Classifier = ModelBackend


def _has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def _torch_model(model: str | Path, why: str) -> LoadedModel:
    """The model on PyTorch, or a message saying how to do without it where torch is not installed.

    Raises:
        FerlabError: no torch (the training extra is not installed), or a model that cannot be loaded.
    """
    if not _has_torch():
        raise FerlabError(
            f"{model}: {why}, and running its model.safetensors needs PyTorch, which this install lacks; "
            f"export it where ferlab[train] is installed (`ferlab export --model {model} --out model.onnx`, "
            f"then pass the .onnx file), or pip install 'ferlab[train]'")
    from ferlab.models.io import load_model  # the PyTorch stack, imported only when a model needs it

    return load_model(model)


def _exported(model: LoadedModel) -> OnnxModel:
    """`model` on ONNX Runtime; the session holds the graph in memory, so the file can go at once."""
    from ferlab.models.onnx import export_onnx  # a LoadedModel means torch is there

    with tempfile.TemporaryDirectory(prefix="ferlab-onnx-") as tmp:
        return OnnxModel.load(export_onnx(model, Path(tmp) / "model.onnx"))


def _on_onnx(loaded: LoadedModel, backend: str) -> tuple[Classifier, str]:
    """A PyTorch model exported to ONNX Runtime at start-up; with backend auto, PyTorch where it does not export."""
    try:
        onnx_model = _exported(loaded)
    except FerlabError as err:
        if backend == "onnx":
            raise
        log.info("backend auto: %s; classifying on PyTorch", err)
        return loaded, "torch"
    log.info("backend %s: classifying on ONNX Runtime (exported at start-up)", backend)
    return onnx_model, "onnx"


def _stored(model: str | Path) -> OnnxModel | None:
    """The run's own ``model.onnx`` when it is current (its metadata equals ``model.json``), else None."""
    folder = resolve_model(model)
    if not folder.is_dir():
        return None
    stored = stored_onnx(folder, read_meta(model_files(folder)[1], model)[1])
    if stored is not None:
        log.info("classifying on ONNX Runtime (%s)", folder / ONNX_NAME)
    return stored


def _classifier(model: str | Path | Classifier, backend: str) -> tuple[Classifier, str]:
    """The model on the chosen backend, and that backend's name (``torch`` or ``onnx``).

    Raises:
        FerlabError: an unknown backend, an ONNX model with backend torch, or a model that cannot be loaded
            (or exported, with backend onnx).
    """
    if backend not in BACKENDS:
        raise FerlabError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if isinstance(model, OnnxModel) or (not isinstance(model, ModelBackend) and not is_bundled(model)
                                        and Path(model).suffix.lower() == ".onnx"):
        if backend == "torch":
            raise FerlabError("an ONNX model runs on ONNX Runtime only; give its run folder for backend torch")
        return (model if isinstance(model, OnnxModel) else OnnxModel.load(model)), "onnx"
    if isinstance(model, ModelBackend):
        return (model, "torch") if backend == "torch" else _on_onnx(model, backend)
    if backend != "torch":
        stored = _stored(model)
        if stored is not None:
            return stored, "onnx"
    loaded = _torch_model(model, f"no current {ONNX_NAME}" if backend != "torch" else "backend torch")
    return (loaded, "torch") if backend == "torch" else _on_onnx(loaded, backend)


class Recognizer:
    """Finds the faces in images and classifies each one's expression.

    Args:
        model: a run folder, model file or ``.onnx`` file, or a loaded model.
        detector: a name from `ferlab.inference.detect.DETECTORS`, or a detector object; ``auto`` (the
            default) is YuNet where its model file is at hand, else Haar (see `create_detector`).
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
        detector: str | Detector = DEFAULT_DETECTOR,
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

    def predict_files(
        self, inputs: Sequence[str | Path], out: str | Path | None = None, *, batch_size: int = 32
    ) -> FilePredictions:
        """Find and classify the faces in image files, folders (searched recursively) or glob patterns.

        With `out`, writes ``predictions.csv`` (one row per face), ``predictions.json`` (also listing
        images without a face and unreadable files) and, unless the detector is ``none``, annotated
        copies under ``annotated/`` in the inputs' folder structure. An unreadable file is skipped, not fatal.

        Args:
            batch_size: images decoded and classified together.

        Raises:
            FerlabError: a missing input, no input, or no readable image at all.
        """
        paths = expand_inputs(inputs)
        if not paths:
            raise FerlabError("no input images given")
        return write_predictions(self, paths, None if out is None else Path(out), batch_size)

    def to_frame(self, images: Sequence[str | Path | Image.Image | np.ndarray]) -> pd.DataFrame:
        """`recognize_batch` as a DataFrame, one row per face (an image's position or path in ``source``); needs pandas."""
        names = [str(image) if isinstance(image, (str, Path)) else f"<image {i}>" for i, image in enumerate(images)]
        found = [Prediction(r.face, r.label, r.probs, name, k)
                 for name, results in zip(names, self.recognize_batch(images)) for k, r in enumerate(results)]
        return to_frame(face_rows(found, self.classes))

    def classify(self, items: Sequence[tuple[np.ndarray, Sequence[Face]]]) -> list[list[FaceResult]]:
        """Classify faces found already (a video frame reusing earlier detections), in one batch.

        Args:
            items: (RGB uint8 image (H, W, 3), its faces) pairs.
        """
        pixels = [self._pixels(image, faces) for image, faces in items]  # each (n_i, C, S, S)
        counts = [len(p) for p in pixels]
        if not sum(counts):
            return [[] for _ in items]
        probs = self.model.predict_proba(np.concatenate(pixels), tta=self.tta)  # (sum of n_i, K)
        classes = self.classes
        results, start = [], 0
        for (_, faces), n in zip(items, counts):
            results.append([FaceResult(face, classes[int(p.argmax())], {c: float(v) for c, v in zip(classes, p)})
                            for face, p in zip(faces, probs[start:start + n])])
            start += n
        return results

    def _pixels(self, image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        prep = self.model.meta.preprocessing
        if self.detector.name == "none":
            # The image is the crop: resized like a training crop (stretched), not padded square with a margin.
            return np.repeat(to_pixels(Image.fromarray(image), prep, self.framing.filter)[None], len(faces), axis=0)
        return face_pixels(image, faces, prep, self.framing)
