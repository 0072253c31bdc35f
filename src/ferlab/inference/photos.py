"""Labelled whole photos as model inputs the way users' photos are: detect, take the largest face, cut it.

`FaceDecoder` stands in for `ferlab.data.dataset.decode_table` when a dataset holds
photos rather than face crops, so evaluation measures the pipeline behind
``ferlab predict``: a photo where the detector finds no face has no input and is
listed in `FaceDecoder.no_face`.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from tqdm.auto import tqdm

from ferlab.data.framing import Framing
from ferlab.data.samples import SampleTable
from ferlab.data.transforms import Preprocessing
from ferlab.errors import FerlabError
from ferlab.inference.detect import Detector, Face
from ferlab.inference.faces import face_pixels, load_image

__all__ = ["FaceDecoder", "largest_face"]

log = logging.getLogger(__name__)


def largest_face(faces: list[Face]) -> Face | None:
    """The face with the largest box (the subject of a labelled photo), or None."""
    return max(faces, key=lambda face: face.box[2] * face.box[3], default=None)


class FaceDecoder:
    """Decodes a table of photos into the crop of each one's largest face, as `decode_table` decodes crops.

    Args:
        detector: the face detector.
        framing: how the face is cut (the model's `ModelMeta.framing_for` the detector).

    Attributes:
        no_face: sources of the photos in which no face was found, after a call.
        unreadable: sources of the photos that could not be read.
    """

    def __init__(self, detector: Detector, framing: Framing) -> None:
        self.detector = detector
        self.framing = framing
        self.no_face: list[str] = []
        self.unreadable: list[str] = []

    def __call__(self, table: SampleTable, prep: Preprocessing) -> tuple[torch.Tensor, np.ndarray]:
        """uint8 (N, C, S, S) face crops and the mask of photos that have one."""
        pixels = np.zeros((len(table), prep.channels, prep.pixel_size, prep.pixel_size), dtype=np.uint8)
        ok = np.zeros(len(table), dtype=bool)
        self.no_face, self.unreadable = [], []
        for i, sample in enumerate(tqdm(table.samples, desc=f"finding faces in {len(table)} photos", unit="img",
                                        disable=None, leave=False)):
            try:
                image = load_image(table.read_image(sample))
            except FerlabError as err:
                log.warning("skipping %s", err)
                self.unreadable.append(sample.source)
                continue
            face = largest_face(self.detector.detect(image))
            if face is None:
                self.no_face.append(sample.source)
                continue
            pixels[i] = face_pixels(image, [face], prep, self.framing)[0]
            ok[i] = True
        if len(table) and not ok.any():
            raise FerlabError(f"{table.origin}: the {self.detector.name} detector found no face in any of its "
                              f"{len(table)} photos ({len(self.unreadable)} unreadable); are they face photos?")
        if self.no_face or self.unreadable:
            log.warning("%s: no face found in %d and unreadable %d of %d photos", table.origin,
                        len(self.no_face), len(self.unreadable), len(table))
        return torch.from_numpy(pixels), ok
