"""Measuring how a dataset frames its faces, by running the face detector over its own crops.

Each crop is enlarged (the detectors miss faces of 48 pixels) and padded (a
tight crop cuts the chin or forehead, and a detector needs to see the whole
face to box it), then the detector's box is mapped back into the crop's pixels.
The median geometry of those boxes (`ferlab.data.framing.framing_from_boxes`)
is the framing that cuts a detected face in a photo the way the dataset's crops are cut.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from ferlab._io import write_json
from ferlab.data.framing import FramingStats, framing_from_boxes
from ferlab.data.sources import open_dataset
from ferlab.data.splits import subsample
from ferlab.errors import FerlabError
from ferlab.inference.detect import Detector, Face, create_detector

__all__ = ["measure_framing", "write_framing"]

log = logging.getLogger(__name__)

#: Crops are enlarged to this side before detection: YuNet and Haar find faces of 150-200 pixels reliably.
DETECT_SIDE = 192
#: Padding on every side, as a share of the enlarged crop's side.
PAD = 0.5


def _central_face(faces: list[Face], centre: float) -> Face | None:
    """The face whose box centre lies nearest the crop's centre (a crop holds one subject)."""
    if not faces:
        return None
    return min(faces, key=lambda f: (f.box[0] + f.box[2] / 2 - centre) ** 2 + (f.box[1] + f.box[3] / 2 - centre) ** 2)


def _box_in_crop(crop: np.ndarray, detector: Detector) -> tuple[float, float, float, float] | None:
    """The detector's box of the face in an RGB crop (S, S, 3), in the crop's own pixels, or None."""
    side = crop.shape[0]
    scale = DETECT_SIDE / side
    big = cv2.resize(crop, (DETECT_SIDE, DETECT_SIDE), interpolation=cv2.INTER_CUBIC)
    pad = round(DETECT_SIDE * PAD)
    grey = tuple(int(v) for v in np.median(np.concatenate([big[0], big[-1], big[:, 0], big[:, -1]]), axis=0))
    padded = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=grey)  # the edges' median colour
    face = _central_face(detector.detect(padded), pad + DETECT_SIDE / 2)
    if face is None:
        return None
    x, y, w, h = face.box
    return (x - pad) / scale, (y - pad) / scale, w / scale, h / scale


def measure_framing(
    data: str | Path,
    detector: str | Detector = "yunet",
    *,
    limit: int = 2000,
    split: str | None = "train",
    seed: int = 0,
    align: bool = True,
) -> FramingStats:
    """The framing of a dataset's face crops, measured on up to `limit` of them (class shares kept).

    Args:
        data: any dataset `open_dataset` reads.
        detector: a detector name or object; YuNet gives the tightest boxes.
        split: measure this split only where the dataset has it (None: all images).
        align: the `align` stored in the result.

    Raises:
        FerlabError: no dataset at `data`, a crop that is not square, or no face found in any crop.
    """
    detector = create_detector(detector) if isinstance(detector, str) else detector
    table = open_dataset(data)
    if split is not None and split in table.splits():
        table = table.split(split)
    if len(table) > limit:
        table = subsample(table, limit, seed=seed)
    boxes, frame = [], None
    for sample in tqdm(table.samples, desc="measuring framing", unit="img", disable=None, leave=False):
        try:
            crop = np.asarray(table.read_image(sample).convert("RGB"))
        except FerlabError as err:
            log.warning("skipping %s", err)
            continue
        if crop.shape[0] != crop.shape[1] or (frame is not None and crop.shape[0] != frame):
            raise FerlabError(f"{sample.path}: framing is measured on square crops of one size, got "
                              f"{crop.shape[1]}x{crop.shape[0]}" + (f" beside {frame}x{frame}" if frame else ""))
        frame = crop.shape[0]
        box = _box_in_crop(crop, detector)
        if box is not None:
            boxes.append(box)
    return framing_from_boxes(np.array(boxes), float(frame or 0), crops=len(table), align=align)


def write_framing(
    data: str | Path,
    out: str | Path,
    detectors: Sequence[str] = ("yunet", "haar"),
    *,
    detector_path: str | Path | None = None,
    **options: Any,
) -> dict[str, FramingStats]:
    """Measure `data`'s framing for each detector and write it as JSON to `out` (training's ``data.framing``).

    Args:
        detector_path: the YuNet model file.
        options: `measure_framing`'s ``limit``, ``split``, ``seed`` and ``align``.

    Raises:
        FerlabError: as `measure_framing`, or a YuNet file that cannot be used.
    """
    measured = {}
    for name in detectors:
        detector = create_detector(name, model_path=detector_path if name == "yunet" else None)
        measured[name] = measure_framing(data, detector, **options)
    write_json(Path(out), {"data": str(data), "detectors": {name: s.to_dict() for name, s in measured.items()}})
    return measured

