"""Per-face expressions over a video or a camera: tracked faces, smoothed probabilities, an annotated video.

Faces are detected every `stride` frames (the frames between reuse the last
boxes), matched to the tracks of earlier frames by box overlap (IoU), and each
track's probabilities are smoothed exponentially, so a label does not flicker
from frame to frame.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.ops import box_iou
from tqdm.auto import tqdm

from ferlab._io import save_figure, write_csv
from ferlab.errors import FerlabError
from ferlab.inference.annotate import annotate, caption
from ferlab.inference.detect import Detector, Face
from ferlab.inference.recognizer import Classifier, FaceResult, Recognizer

__all__ = ["IouTracker", "VideoResult", "process_video", "smooth_probs"]

log = logging.getLogger(__name__)

VIDEO_NAME = "annotated.mp4"
CSV_NAME = "frames.csv"
PLOT_NAME = "emotions.png"
WINDOW = "ferlab (q: quit)"
#: Tracks shown in the summary plot, the longest first.
PLOT_TRACKS = 8
#: A file may decode a few frames fewer than its header announces (edit lists, dropped B-frames);
#: a larger shortfall means the file is damaged or cut short.
MISSING_FRAMES_TOLERATED = 3


@dataclass(frozen=True)
class VideoResult:
    """What `process_video` read and wrote.

    Attributes:
        frames: frames read (and rows of the CSV covering them).
        expected_frames: the frame count the file's header announces; None for a camera.
        truncated: fewer frames could be decoded than announced; the outputs cover those before the damage.
        tracks: the face ids seen, each a face followed across frames.
    """

    source: str
    frames: int
    expected_frames: int | None
    fps: float
    tracks: tuple[int, ...]
    video: Path
    csv: Path
    plot: Path
    truncated: bool


class IouTracker:
    """Follows faces across frames: each detection joins the unmatched track whose last box overlaps it most.

    Greedy matching, written here because it is a few lines and enough for the handful of
    faces in a frame (no assignment solver needed).

    Args:
        iou_threshold: the least box overlap (intersection over union) that continues a track.
        max_missed: updates a track may go unmatched before it ends; a face found later gets a new id.
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 10) -> None:
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self._boxes: dict[int, tuple[int, int, int, int]] = {}
        self._missed: dict[int, int] = {}
        self._next_id = 0

    def update(self, faces: Sequence[Face]) -> list[int]:
        """The track id of each face, in order; unmatched faces start new tracks."""
        ids = list(self._boxes)
        overlap = _iou([self._boxes[i] for i in ids], [f.box for f in faces])  # (tracks, faces)
        assigned: list[int | None] = [None] * len(faces)
        while overlap.size and overlap.max() >= self.iou_threshold:
            track, face = np.unravel_index(int(overlap.argmax()), overlap.shape)
            assigned[face] = ids[track]
            overlap[track, :] = -1
            overlap[:, face] = -1
        for i, face in enumerate(faces):
            if assigned[i] is None:
                assigned[i] = self._next_id
                self._next_id += 1
            self._boxes[assigned[i]] = face.box
            self._missed[assigned[i]] = -1
        for track in list(self._missed):
            self._missed[track] += 1
            if self._missed[track] > self.max_missed:
                del self._boxes[track], self._missed[track]
        return assigned


def _iou(a: Sequence[tuple[int, int, int, int]], b: Sequence[tuple[int, int, int, int]]) -> np.ndarray:
    """IoU of x, y, w, h boxes: (len(a), len(b))."""
    def corners(boxes: Sequence[tuple[int, int, int, int]]) -> torch.Tensor:
        xywh = torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4)
        return torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)  # (N, 4) x0 y0 x1 y1

    return box_iou(corners(a), corners(b)).numpy()


def smooth_probs(previous: np.ndarray | None, current: np.ndarray, smooth: float) -> np.ndarray:
    """Exponential smoothing: ``smooth * previous + (1 - smooth) * current``; a new track starts at `current`."""
    return current if previous is None else smooth * previous + (1 - smooth) * current


def _open(source: str | Path | int) -> tuple[cv2.VideoCapture, str, bool]:
    """The capture, a name for messages, and whether it is a camera."""
    camera = isinstance(source, int) or (isinstance(source, str) and source.isdigit() and not Path(source).exists())
    if camera:
        capture = cv2.VideoCapture(int(source))
        if not capture.isOpened():
            raise FerlabError(f"cannot open camera {source}")
        return capture, f"camera {source}", True
    path = Path(source).expanduser()
    if not path.is_file():
        raise FerlabError(f"no such video file: {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FerlabError(f"cannot read video {path}: not a video OpenCV can decode, or damaged "
                          "(an MP4 cut short loses the index at its end)")
    return capture, str(path), False


def _window(show: bool) -> bool:
    """Whether a live window can be shown; says why not when it was asked for."""
    if not show:
        return False
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        log.warning("no display: not showing a live window")
        return False
    try:
        cv2.namedWindow(WINDOW)
    except cv2.error:
        log.warning("this OpenCV build has no GUI (opencv-python-headless): not showing a live window")
        return False
    return True


@contextlib.contextmanager
def _video_writer(path: Path, fps: float, size: tuple[int, int]) -> Iterator[cv2.VideoWriter]:
    """A VideoWriter on a temporary file beside `path`, renamed to `path` when the block succeeds.

    By hand rather than `ferlab._io.atomic_path`: OpenCV picks the container from the file's suffix.
    """
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    try:
        if not writer.isOpened():
            raise FerlabError(f"OpenCV cannot write an mp4v video to {path.parent}")
        yield writer
        writer.release()
        os.replace(tmp, path)
    finally:
        writer.release()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _frames(capture: cv2.VideoCapture, max_frames: int | None) -> Iterator[np.ndarray]:
    """BGR frames until the end, the first undecodable frame, or `max_frames`."""
    count = 0
    while max_frames is None or count < max_frames:
        ok, frame = capture.read()
        if not ok:
            return
        count += 1
        yield frame


class _Timeline:
    """Each track's smoothed probabilities, their history (for the plot) and the CSV rows."""

    def __init__(self, classes: Sequence[str], smooth: float) -> None:
        self.classes = list(classes)
        self.smooth = smooth
        self.smoothed: dict[int, np.ndarray] = {}
        self.history: dict[int, list[tuple[float, np.ndarray]]] = {}
        self.rows: list[dict[str, object]] = []

    def add(self, frame: int, seconds: float, ids: Sequence[int], results: Sequence[FaceResult]) -> list[FaceResult]:
        """Record one frame's faces; returns them with smoothed probabilities and labels."""
        shown = []
        for track, result in zip(ids, results):
            current = np.array([result.probs[c] for c in self.classes])  # (K,)
            probs = self.smoothed[track] = smooth_probs(self.smoothed.get(track), current, self.smooth)
            self.history.setdefault(track, []).append((seconds, probs))
            label = self.classes[int(probs.argmax())]
            shown.append(FaceResult(result.face, label, dict(zip(self.classes, probs.tolist()))))
            self.rows.append({"frame": frame, "time_s": round(seconds, 4), "face_id": track,
                              **dict(zip("xywh", result.face.box)), "score": round(result.face.score, 4),
                              "label": label, **{c: round(float(p), 6) for c, p in zip(self.classes, probs)}})
        if not shown:
            self.rows.append({"frame": frame, "time_s": round(seconds, 4)})  # the other fields stay empty
        return shown

    def write_csv(self, path: Path) -> Path:
        write_csv(path, self.rows, ["frame", "time_s", "face_id", "x", "y", "w", "h", "score", "label", *self.classes])
        return path


def _plot(tracks: dict[int, list[tuple[float, np.ndarray]]], classes: Sequence[str], path: Path) -> Path:
    """Each face's smoothed probabilities over time, one panel per face (the longest tracks)."""
    from matplotlib.figure import Figure

    shown = sorted(tracks, key=lambda t: -len(tracks[t]))[:PLOT_TRACKS]
    fig = Figure(figsize=(9, 1.2 + 2.2 * max(1, len(shown))), layout="constrained")
    axes = fig.subplots(max(1, len(shown)), 1, squeeze=False)[:, 0]
    if not shown:
        axes[0].text(0.5, 0.5, "no faces found", ha="center", va="center")
        axes[0].set_axis_off()
    for ax, track in zip(axes, shown):
        times = [t for t, _ in tracks[track]]
        probs = np.stack([p for _, p in tracks[track]])  # (frames, K)
        for k, name in enumerate(classes):
            ax.plot(times, probs[:, k], ".-" if len(times) < 30 else "-", label=name, color=f"C{k % 10}")
        ax.set(title=f"face #{track}", ylabel="probability", ylim=(0, 1))
    axes[-1].set_xlabel("time (s)")
    if shown:
        axes[0].legend(loc="upper right", ncols=min(len(classes), 7), fontsize="small")
    return save_figure(fig, path)


def process_video(
    model: str | Path | Classifier,
    source: str | Path | int,
    out: str | Path,
    *,
    detector: str | Detector = "haar",
    detector_path: str | Path | None = None,
    backend: str = "auto",
    tta: str | None = None,
    margin: float | None = None,
    stride: int = 1,
    smooth: float = 0.6,
    show: bool = False,
    max_frames: int | None = None,
) -> VideoResult:
    """Recognise and track the faces of a video file or camera; write an annotated video, a CSV and a plot to `out`.

    ``annotated.mp4`` has each face's box, track id, label and probability; ``frames.csv`` has one row
    per face and frame (frame, time_s, face_id, box, score, label, smoothed probabilities), and one
    row with empty face fields for a frame without faces, so it covers every frame read;
    ``emotions.png`` plots each face's probabilities over time. A camera runs until Ctrl-C, q in
    the live window, or `max_frames`. A damaged or cut-short file keeps the frames before the damage.

    Args:
        model, detector, detector_path, backend, tta, margin: as for `Recognizer`.
        source: a video file, or a camera index (an int, or a string of digits that names no file).
        stride: detect faces on every `stride`-th frame; the frames between reuse those boxes (each is still classified).
        smooth: weight of a track's past in its probabilities, in [0, 1); 0: no smoothing.
        show: show a live window, where there is a display.
        max_frames: stop after this many frames.

    Raises:
        FerlabError: a bad option, a missing or unreadable video, an unavailable camera, or no frame decoded.
    """
    if stride < 1:
        raise FerlabError(f"stride must be at least 1, got {stride}")
    if not 0 <= smooth < 1:
        raise FerlabError(f"smooth must lie in [0, 1), got {smooth}")
    capture, name, camera = _open(source)  # before the Recognizer, which may take seconds to export a model
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    expected = None if camera else int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    tracker = IouTracker()
    faces: list[Face] = []
    ids: list[int] = []
    frames = 0
    window = False
    try:
        recognizer = Recognizer(model, detector, backend=backend, tta=tta, detector_path=detector_path, margin=margin)
        timeline = _Timeline(recognizer.classes, smooth)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        window = _window(show)
        started = time.monotonic()
        with _video_writer(out / VIDEO_NAME, fps, size) as writer, \
                tqdm(total=expected or max_frames, unit="frame", disable=None) as bar:
            try:
                for bgr in _frames(capture, max_frames):
                    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # (H, W, 3)
                    seconds = time.monotonic() - started if camera else frames / fps
                    if frames % stride == 0:
                        faces = recognizer.detector.detect(image)
                        ids = tracker.update(faces)
                    shown = timeline.add(frames, seconds, ids, recognizer.classify([(image, faces)])[0])
                    drawn = annotate(image, shown, recognizer.classes, [caption(r, t) for r, t in zip(shown, ids)])
                    if drawn.shape[1::-1] != size:  # a camera may deliver another size than it announced
                        drawn = cv2.resize(drawn, size)
                    drawn = cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)
                    writer.write(drawn)
                    frames += 1
                    bar.update()
                    if window:
                        cv2.imshow(WINDOW, drawn)
                        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                            break
            except KeyboardInterrupt:
                if not camera:
                    raise  # Ctrl-C is how a camera session ends; the frames so far are kept
            if not frames:
                raise FerlabError(f"cannot read video {name}: no frame could be decoded")
    finally:
        capture.release()
        if window:
            cv2.destroyAllWindows()
    announced = expected if max_frames is None or expected is None else min(expected, max_frames)
    truncated = announced is not None and frames < announced - MISSING_FRAMES_TOLERATED
    if truncated:
        log.warning("%s: only %d of the %d frames its header announces could be decoded; it looks damaged or cut "
                    "short, and the outputs cover the frames before the damage", name, frames, expected)
    return VideoResult(name, frames, expected, fps, tuple(sorted(timeline.history)), out / VIDEO_NAME,
                       timeline.write_csv(out / CSV_NAME), _plot(timeline.history, recognizer.classes, out / PLOT_NAME),
                       truncated)
