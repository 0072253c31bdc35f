"""Face detectors behind one interface, selected by name.

``yunet`` is OpenCV's `FaceDetectorYN` with the YuNet model (boxes, five landmarks,
scores; about 4x faster than Haar here and it misses far fewer faces), from a local
file, ``$FERLAB_YUNET`` or a checked copy in the user cache. ``haar`` is OpenCV's
bundled frontal-face cascade: it always works offline, but gives no landmarks.
``auto``, the default, is YuNet where its model file is at hand and Haar, with one
warning saying how to get YuNet, where it is not (ferlab may not redistribute the
file itself, so a fresh offline install still finds faces). ``none`` treats the whole image as one face, for inputs that already are
crops. Big images are downscaled to `max_side` for detection (both detectors
are far faster, and YuNet finds large faces more reliably); YuNet enlarges images
whose shorter side is under `YUNET_MIN_SIDE`. The boxes are mapped back to the image's
own pixels.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from ferlab._io import atomic_path
from ferlab.errors import FerlabError

__all__ = ["DEFAULT_DETECTOR", "DETECTORS", "YUNET_ENV", "YUNET_SHA256", "YUNET_URL", "Detector", "Face",
           "create_detector", "yunet_model"]

log = logging.getLogger(__name__)

DETECTORS = ("auto", "yunet", "haar", "none")
DEFAULT_DETECTOR = "auto"
#: A YuNet model file to use when none is given (checked against `YUNET_SHA256` like any other).
YUNET_ENV = "FERLAB_YUNET"
YUNET_FILE = "face_detection_yunet_2023mar.onnx"
YUNET_URL = f"https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/{YUNET_FILE}"
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
# YuNet's default threshold: the face counts of ../shared/data/wild/README.md were taken at 0.8.
YUNET_SCORE = 0.8
#: YuNet's answer for an image under 64 px on a side varied between processes (opencv-python 4.x: the same
#: 32x36 photo found at 0.86 in one process, nothing in the next, a score of 1.0 in a third); enlarged to this
#: shorter side it is the same in every process and finds more of such faces (../shared/data/photos, 118 of
#: 1,507 photos that small: 105 found enlarged, 93-95 not).
YUNET_MIN_SIDE = 64
# Haar cascade settings of OpenCV's face-detection tutorial; 5 neighbours keep false positives on photos rare.
HAAR_FILE = "haarcascade_frontalface_default.xml"
HAAR_SCALE_STEP = 1.1
HAAR_NEIGHBOURS = 5


@dataclass(frozen=True)
class Face:
    """One detected face.

    Attributes:
        box: x, y, width, height in the image's pixels (inside the image).
        score: the detector's confidence in [0, 1]; 1.0 where it gives none (haar, none).
        landmarks: five (x, y) points, right eye, left eye, nose tip, right and left mouth
            corner (the person's right and left), or None where the detector gives none.
    """

    box: tuple[int, int, int, int]
    score: float
    landmarks: tuple[tuple[float, float], ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": list(self.box),
            "score": self.score,
            "landmarks": None if self.landmarks is None else [list(point) for point in self.landmarks],
        }


class Detector(Protocol):
    """Finds faces in an RGB uint8 image (H, W, 3); faces come sorted left to right."""

    name: str

    def detect(self, image: np.ndarray) -> list[Face]: ...


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise FerlabError(f"face detection takes an RGB uint8 image (H, W, 3), got {got}; read it with load_image")


class _ScaledDetector:
    """Shared work of the real detectors: downscale, detect, map back, drop small faces, sort.

    Subclasses implement `_raw`, which returns, in the downscaled image's pixels,
    boxes (N, 4) as x, y, w, h floats, scores (N,) and landmarks (N, 5, 2) or None.
    """

    name = ""
    #: Images whose shorter side is under this are enlarged to it for detection (0: never).
    min_image_side = 0

    def __init__(self, min_face: int, max_side: int) -> None:
        self.min_face = min_face
        self.max_side = max_side

    def _raw(self, image: np.ndarray, min_side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def detect(self, image: np.ndarray) -> list[Face]:
        _check_image(image)
        height, width = image.shape[:2]
        scale = max(min(1.0, self.max_side / max(height, width)), self.min_image_side / min(height, width))
        if scale != 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            # area: no aliasing when shrinking; bilinear when enlarging
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        boxes, scores, landmarks = self._raw(image, max(1, int(self.min_face * scale)))
        boxes = boxes / scale
        corners = np.round(np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1))  # (N, 4) x0 y0 x1 y1
        corners = np.clip(corners, 0, [width, height, width, height]).astype(int)
        faces = []
        for i, (x0, y0, x1, y1) in enumerate(corners.tolist()):
            if min(x1 - x0, y1 - y0) < self.min_face:
                continue
            points = None if landmarks is None else tuple((float(x), float(y)) for x, y in landmarks[i] / scale)
            faces.append(Face((x0, y0, x1 - x0, y1 - y0), float(scores[i]), points))
        return sorted(faces, key=lambda face: (face.box[0], face.box[1]))


class _Haar(_ScaledDetector):
    name = "haar"

    def __init__(self, min_face: int, max_side: int) -> None:
        super().__init__(min_face, max_side)
        self._cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / HAAR_FILE))
        if self._cascade.empty():
            raise FerlabError(f"OpenCV's {HAAR_FILE} is missing from {cv2.data.haarcascades}; reinstall opencv-python")

    def _raw(self, image: np.ndarray, min_side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        found = self._cascade.detectMultiScale(gray, HAAR_SCALE_STEP, HAAR_NEIGHBOURS, minSize=(min_side, min_side))
        boxes = np.asarray(found, dtype=np.float64).reshape(-1, 4)
        return boxes, np.ones(len(boxes)), None


class _YuNet(_ScaledDetector):
    """Not thread-safe: OpenCV's detector keeps the input size of the last image."""

    name = "yunet"
    min_image_side = YUNET_MIN_SIDE

    def __init__(self, model_path: Path, score_threshold: float, min_face: int, max_side: int) -> None:
        super().__init__(min_face, max_side)
        self._net = cv2.FaceDetectorYN.create(str(model_path), "", (320, 320), score_threshold)

    def _raw(self, image: np.ndarray, min_side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        height, width = image.shape[:2]
        self._net.setInputSize((width, height))
        _, rows = self._net.detect(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        rows = np.zeros((0, 15)) if rows is None else rows.astype(np.float64)  # (N, 15): box, 5 (x, y), score
        # Rows of NaN were seen now and then in long processes (3-5 of 1,503 photos, likely the small ones whose
        # answer varied between processes: see YUNET_MIN_SIDE); they are no face, and cast to int they became
        # garbage boxes.
        rows = rows[np.isfinite(rows).all(axis=1)]
        return rows[:, :4], rows[:, 14], rows[:, 4:14].reshape(-1, 5, 2)


class _WholeImage:
    """The input already is a face crop: one face covering it."""

    name = "none"

    def detect(self, image: np.ndarray) -> list[Face]:
        _check_image(image)
        return [Face((0, 0, image.shape[1], image.shape[0]), 1.0)]


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "ferlab"


def _how_to_get(cached: Path) -> str:
    return (
        f"download {YUNET_URL} (sha256 {YUNET_SHA256}) on a machine with a network and pass it with "
        f"--detector-model PATH, set {YUNET_ENV}=PATH, or copy it to {cached}; or use the haar detector, "
        f"which needs no download"
    )


def _verified(path: Path) -> Path:
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    if digest != YUNET_SHA256:
        raise FerlabError(
            f"{path} is not the YuNet model ferlab expects (sha256 {digest}, expected {YUNET_SHA256}); "
            f"delete it and {_how_to_get(_cache_dir() / YUNET_FILE)}"
        )
    return path


def _download(target: Path) -> None:
    """Fetch YuNet into `target`, atomically, only if its sha256 is right (urllib: no extra dependency)."""
    log.info("downloading the YuNet face detector from %s into %s", YUNET_URL, target)
    try:
        with atomic_path(target) as tmp, urllib.request.urlopen(YUNET_URL, timeout=30) as response:
            with tmp.open("wb") as handle:
                shutil.copyfileobj(response, handle)
            _verified(tmp)
    except (OSError, urllib.error.URLError) as err:  # HTTP and network errors are OSErrors too
        raise FerlabError(f"cannot download the YuNet face detector ({err}); {_how_to_get(target)}") from None


def yunet_model(path: str | Path | None = None, *, download: bool = True) -> Path:
    """The YuNet model file, checked against `YUNET_SHA256`.

    `path` when given; else ``$FERLAB_YUNET`` when set; else the copy in the user cache
    (``$XDG_CACHE_HOME/ferlab``, by default ``~/.cache/ferlab``), downloaded there from
    the OpenCV model zoo once when missing and `download` is true.

    Raises:
        FerlabError: `path` is missing, the file has another sha256, or there is no
            copy and it cannot be downloaded (the message says how to get one).
    """
    path = path if path is not None else os.environ.get(YUNET_ENV) or None
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise FerlabError(f"no YuNet model file at {path}")
        return _verified(path)
    cached = _cache_dir() / YUNET_FILE
    if not cached.is_file():
        if not download:
            raise FerlabError(f"no YuNet model in {cached.parent}; {_how_to_get(cached)}")
        _download(cached)
    return _verified(cached)


def create_detector(
    name: str = DEFAULT_DETECTOR,
    *,
    model_path: str | Path | None = None,
    score_threshold: float | None = None,
    min_face: int = 24,
    max_side: int = 1280,
) -> Detector:
    """A face detector by name (one of `DETECTORS`).

    Args:
        model_path: yunet and auto: a local model file (else ``$FERLAB_YUNET`` or the cached copy, which
            yunet, not auto, downloads when missing).
        score_threshold: yunet and auto: the lowest score kept (default `YUNET_SCORE`).
        min_face: faces whose box is narrower or lower than this, in the image's pixels, are dropped.
        max_side: images whose longer side exceeds this are downscaled to it for detection.

    Raises:
        FerlabError: an unknown name, an option the detector does not take, an
            out-of-range value, or no usable YuNet model (see `yunet_model`).
    """
    if name not in DETECTORS:
        raise FerlabError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTORS)}")
    if name not in ("yunet", "auto") and (model_path is not None or score_threshold is not None):
        raise FerlabError(f"a model path and a score threshold apply to the yunet detector only, not {name!r}")
    if min_face < 1 or max_side < 1:
        raise FerlabError(f"min_face and max_side must be at least 1, got {min_face} and {max_side}")
    if name == "none":
        return _WholeImage()
    if name == "haar":
        return _Haar(min_face, max_side)
    threshold = YUNET_SCORE if score_threshold is None else score_threshold
    if not 0.0 < threshold < 1.0:
        raise FerlabError(f"the yunet score threshold must lie between 0 and 1, got {threshold}")
    if name == "auto":
        return _auto(model_path, threshold, min_face, max_side)
    return _YuNet(yunet_model(model_path), threshold, min_face, max_side)


def _auto(model_path: str | Path | None, threshold: float, min_face: int, max_side: int) -> Detector:
    """YuNet from a given, ``$FERLAB_YUNET`` or cached copy (checked; never a download), else Haar with a warning.

    A copy that is there but wrong is an error, not a quiet fall-back to the weaker detector.
    """
    cached = _cache_dir() / YUNET_FILE
    if model_path is not None or os.environ.get(YUNET_ENV) or cached.is_file():
        return _YuNet(yunet_model(model_path, download=False), threshold, min_face, max_side)
    _warn_haar(f"no YuNet model given, in ${YUNET_ENV} or in {cached.parent}")
    return _Haar(min_face, max_side)


@functools.cache
def _warn_haar(reason: str) -> None:
    """Once per process: a video or a server would otherwise repeat it for every detector it makes."""
    log.warning("face detector auto: using haar, which misses more faces than yunet (%s). "
                "`--detector yunet` downloads yunet once, with a network", reason)
