"""Following faces across frames: ByteTrack for the matching, a scene-cut detector that ends every track at a cut.

ByteTrack comes from ``supervision`` (MIT): its Kalman filter predicts where each face moves, so two
faces that cross keep their ids where plain box overlap swaps them. supervision 0.30 is the last
release that has it (deprecated since 0.28 for the ``trackers`` package, which hard-requires
``opencv-python`` and so would install a second cv2 beside ferlab's ``opencv-python-headless``).

Scene cuts are detected here, by hand: PySceneDetect (the maintained library for it) requires
``opencv-python`` from 0.7 on and ``click<8.3`` before, both at odds with ferlab's dependencies.
The test is PySceneDetect's ``ContentDetector``: the mean absolute change of hue, saturation and
value between consecutive frames, on a small copy of each frame.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import cv2
import numpy as np

from ferlab.inference.detect import Face

__all__ = ["FaceTracker", "SceneCuts"]

#: Width frames are shrunk to before comparing them: a cut changes the whole picture, not its details.
CUT_WIDTH = 128


class SceneCuts:
    """Tells, frame by frame, whether a frame starts a new shot.

    Args:
        threshold: the least mean HSV change (0-255) between consecutive frames that makes a cut;
            27 is PySceneDetect's default, above a pan or a face turning, below a change of shot.
        min_frames: frames a shot lasts at least; a flash or a fade does not cut twice in a row.
    """

    def __init__(self, threshold: float = 27.0, min_frames: int = 15) -> None:
        self.threshold = threshold
        self.min_frames = min_frames
        self._previous: np.ndarray | None = None
        self._since = 0

    def update(self, bgr: np.ndarray) -> bool:
        """Whether `bgr` (H, W, 3) starts a new shot; the first frame does not."""
        height, width = bgr.shape[:2]
        small = cv2.resize(bgr, (CUT_WIDTH, max(1, round(height * CUT_WIDTH / width))), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV).astype(np.int16)  # (h, w, 3)
        previous, self._previous = self._previous, hsv
        self._since += 1
        if previous is None or previous.shape != hsv.shape:
            return False
        change = float(np.abs(hsv - previous).mean())  # the mean over H, S and V of each one's mean change
        if change < self.threshold or self._since < self.min_frames:
            return False
        self._since = 0
        return True


class FaceTracker:
    """Gives each face a track id that follows it from frame to frame; `cut` ends every track at once.

    Ids are ferlab's own, 0, 1, 2... in order of appearance and never reused (ByteTrack's restart
    after a reset, and skip numbers for tracks it drops). Every face gets an id in the frame it
    first appears (ByteTrack confirms a new track only in its second frame).

    Args:
        fps: updates per second (the frame rate over the detection stride), for how long a lost face is waited for.
        lost_seconds: how long a face may go undetected and keep its id.
        min_iou: the least box overlap that continues a track; low, because ByteTrack compares with
            its prediction of where the face has moved, not with where it was.
    """

    def __init__(self, fps: float = 30.0, lost_seconds: float = 1.0, min_iou: float = 0.2) -> None:
        self.fps = fps
        self.lost_seconds = lost_seconds
        self.min_iou = min_iou
        self._next_id = 0
        self.cut()

    def cut(self) -> None:
        """End every track: the faces after this come from another shot."""
        from supervision.tracker.byte_tracker.core import ByteTrack

        with warnings.catch_warnings():  # its deprecation notice, said once in the module docstring instead
            warnings.simplefilter("ignore")
            # activation threshold 0: every face the detector kept may start a track (detectors threshold already)
            self._byte = ByteTrack(track_activation_threshold=0.0, lost_track_buffer=round(30 * self.lost_seconds),
                                   minimum_matching_threshold=1 - self.min_iou, frame_rate=self.fps)
        self._ids: dict[int, int] = {}  # ByteTrack's internal track id -> ferlab's id

    def update(self, faces: Sequence[Face]) -> list[int]:
        """The track id of each face, in order; a face no track continues starts a new one."""
        boxes = np.array([[x, y, x + w, y + h, f.score] for f in faces for x, y, w, h in [f.box]],
                         np.float32).reshape(-1, 5)  # (N, 5): x0 y0 x1 y1 score
        self._byte.update_with_tensors(boxes)
        # The tracks this update touched, unconfirmed new ones included (its public output leaves those out).
        touched = [t for t in self._byte.tracked_tracks if t.frame_id == self._byte.frame_id]
        owner = _assign(boxes[:, :4], np.array([t.tlbr for t in touched], np.float32).reshape(-1, 4))
        ids = []
        for track in owner:
            key = None if track is None else touched[track].internal_track_id
            if key not in self._ids:  # a new track, or a face ByteTrack left out (a box of no area)
                if key is not None:
                    self._ids[key] = self._next_id
                ids.append(self._next_id)
                self._next_id += 1
            else:
                ids.append(self._ids[key])
        return ids


def _assign(boxes: np.ndarray, tracks: np.ndarray) -> list[int | None]:
    """For each box (N, 4 corners), the track box (M, 4) it produced this frame, by most overlap; None for none."""
    from scipy.optimize import linear_sum_assignment

    if not len(boxes) or not len(tracks):
        return [None] * len(boxes)
    top_left = np.maximum(boxes[:, None, :2], tracks[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], tracks[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=2)  # (N, M)
    iou = inter / (_area(boxes)[:, None] + _area(tracks)[None, :] - inter + 1e-9)
    owner: list[int | None] = [None] * len(boxes)
    for face, track in zip(*linear_sum_assignment(-iou)):
        if iou[face, track] > 0.5:  # a track's box is the filter's blend of its prediction and this detection
            owner[face] = int(track)
    return owner


def _area(corners: np.ndarray) -> np.ndarray:
    """Areas of (N, 4) x0 y0 x1 y1 boxes: (N,)."""
    return (corners[:, 2:] - corners[:, :2]).prod(axis=1)
