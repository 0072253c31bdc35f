"""A small sketch of a training set, stored with the model, that tells later whether images were among it.

A model trained on images scores them in-sample: confident on their labels, wrong ones
included, so label-noise search (`ferlab data suspects`) and evaluation on them mislead.
The sketch keeps the `SKETCH_SIZE` smallest 64-bit hashes of the decoded training images
(a bottom-k sketch, Broder 1997): a few kilobytes whatever the data's size, and enough to
estimate which share of other images it contained, wherever those files now live.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ferlab.errors import FerlabError

__all__ = ["SKETCH_SIZE", "DataSketch", "pixel_hashes"]

SKETCH_SIZE = 256
#: Below this many images under the sketch's threshold, a share is too noisy to report.
MIN_PROBES = 5


def pixel_hashes(pixels: Any) -> np.ndarray:
    """The 64-bit blake2b hash of each decoded image (N, C, H, W) uint8, as uint64 (N,)."""
    array = np.ascontiguousarray(np.asarray(pixels, dtype=np.uint8))
    return np.array([int.from_bytes(hashlib.blake2b(image.tobytes(), digest_size=8).digest(), "big")
                     for image in array], dtype=np.uint64)


@dataclass(frozen=True)
class DataSketch:
    """The bottom-k hashes of a set of decoded images, and what they were decoded as.

    Attributes:
        samples: images in the set.
        shape: (channels, height, width) of the decoded images; other images cannot be compared.
        hashes: the smallest `SKETCH_SIZE` image hashes, ascending.
    """

    samples: int
    shape: tuple[int, int, int]
    hashes: tuple[int, ...]

    @classmethod
    def from_pixels(cls, pixels: Any) -> DataSketch:
        hashes = np.unique(pixel_hashes(pixels))[:SKETCH_SIZE]
        return cls(len(pixels), tuple(int(v) for v in np.asarray(pixels).shape[1:]), tuple(int(h) for h in hashes))

    def share_of(self, pixels: Any) -> float | None:
        """Estimated share of `pixels` (N, C, H, W) that were in the sketched set; None when it cannot tell.

        It cannot tell for images of another decoded shape, or too few of them to compare
        (each image is compared only if its hash falls below the sketch's largest).
        """
        if not self.hashes or tuple(np.asarray(pixels).shape[1:]) != self.shape:
            return None
        probes = pixel_hashes(pixels)
        if len(self.hashes) == self.samples:  # the whole set is in the sketch: an exact answer
            return float(np.isin(probes, self.hashes).mean()) if len(probes) else None
        probes = probes[probes <= np.uint64(self.hashes[-1])]
        if len(probes) < MIN_PROBES:
            return None
        return float(np.isin(probes, np.array(self.hashes, dtype=np.uint64)).mean())

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "shape": list(self.shape), "hashes": [f"{h:016x}" for h in self.hashes]}

    @classmethod
    def from_dict(cls, data: Any, source: str) -> DataSketch:
        """Raises: FerlabError naming `source` (e.g. ``field training_data``) when the record is not a sketch."""
        try:
            hashes = tuple(int(h, 16) for h in data["hashes"])
            shape = tuple(int(v) for v in data["shape"])
            if len(shape) != 3 or len(hashes) > SKETCH_SIZE or any(not 0 <= h < 2**64 for h in hashes):
                raise ValueError("a shape of 3 sides and at most 256 hashes of 64 bits")
            return cls(int(data["samples"]), shape, tuple(sorted(hashes)))  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as err:
            raise FerlabError(f"{source} is not a data sketch ({err})") from None
