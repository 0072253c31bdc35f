"""Per-face expressions over a video or a camera: tracked faces, smoothed probabilities, timelines, a playable video.

Faces are detected every `stride` frames (the frames between reuse the last boxes) and
followed by ByteTrack (`tracking.FaceTracker`); a scene cut ends every track and forces a
detection. Each track's probabilities are smoothed from its own first frame on
(`timeline.Timeline`), so a label does not flicker and never carries over to another person.
The annotated video is H.264 in MP4 (`encode.open_video_writer`), which browsers play.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from tqdm.auto import tqdm

from ferlab.errors import FerlabError
from ferlab.inference.detect import DEFAULT_DETECTOR, Detector, Face
from ferlab.inference.drawing import annotate, caption
from ferlab.inference.encode import FrameWriter, open_video_writer
from ferlab.inference.recognizer import Classifier, Recognizer
from ferlab.inference.timeline import Timeline, TrackSummary, frames_of, plot_timeline, write_tracks
from ferlab.inference.tracking import FaceTracker, SceneCuts

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["VideoResult", "default_out", "process_video"]

log = logging.getLogger(__name__)

VIDEO_NAME = "annotated.mp4"
CSV_NAME = "frames.csv"
PLOT_NAME = "emotions.png"
WINDOW = "ferlab (q: quit)"
#: A file may decode a few frames fewer than its header announces (edit lists, dropped B-frames);
#: a larger shortfall means the file is damaged or cut short.
MISSING_FRAMES_TOLERATED = 3
#: The frame rate assumed where a file or camera announces none.
DEFAULT_FPS = 30.0
#: A shot lasts at least this long (s): a flash or a fast pan does not cut twice in a row.
MIN_SHOT_S = 0.5


@dataclass(frozen=True)
class VideoResult:
    """What `process_video` read and wrote.

    Attributes:
        frames: frames read (and rows of the CSV covering them).
        expected_frames: the frame count the file's header announces; None for a camera.
        truncated: fewer frames could be decoded than announced; the outputs cover those before the damage.
        tracks: the face ids seen, each a face followed across frames.
        summaries: each track's first and last time, frames, mean probabilities and expression segments.
        scene_cuts: the times (s) of the scene cuts found; every track ends at one.
        codec: what the annotated video is encoded with.
        tracks_json, tracks_csv, segments_csv: `summaries` as files.
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
    summaries: tuple[TrackSummary, ...]
    scene_cuts: tuple[float, ...]
    codec: str
    tracks_json: Path
    tracks_csv: Path
    segments_csv: Path

    def tracks_frame(self) -> pd.DataFrame:
        """A row per track (id, first_s, last_s, frames, label, mean probability per class); needs pandas."""
        return frames_of(self.summaries)[0]

    def segments_frame(self) -> pd.DataFrame:
        """A row per expression segment (track, start_s, end_s, frames, label, confidence); needs pandas."""
        return frames_of(self.summaries)[1]


def default_out(source: str | Path | int) -> Path:
    """Where a run writes without ``--out``: ``<clip stem>-ferlab/`` or ``camera<N>-ferlab/``, in the current folder.

    The current folder rather than beside the clip, which may be read-only (a mounted share, a download folder).
    """
    return Path(f"camera{source}-ferlab" if _is_camera(source) else f"{Path(source).stem}-ferlab")


def _is_camera(source: str | Path | int) -> bool:
    return isinstance(source, int) or (isinstance(source, str) and source.isdigit() and not Path(source).exists())


def _open(source: str | Path | int) -> tuple[cv2.VideoCapture, str, bool]:
    """The capture, a name for messages, and whether it is a camera."""
    if _is_camera(source):
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


@dataclass(frozen=True)
class _Source:
    """An opened video file or camera and what its header announces."""

    capture: cv2.VideoCapture
    name: str
    file: Path | None  # None for a camera
    fps: float
    expected: int | None
    size: tuple[int, int]


def _source(source: str | Path | int) -> _Source:
    """Open `source` and read its header; a frame rate it does not announce is taken as `DEFAULT_FPS`, said once."""
    capture, name, camera = _open(source)
    fps = capture.get(cv2.CAP_PROP_FPS)
    if not (np.isfinite(fps) and 0 < fps <= 1000):
        log.warning("%s announces no usable frame rate (%s): the annotated video assumes %g fps, and the CSV's "
                    "times come from the frames' own timestamps", name, fps, DEFAULT_FPS)
        fps = DEFAULT_FPS
    expected = None if camera else int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    return _Source(capture, name, None if camera else Path(name), fps, expected, size)


def _frames(source: _Source, max_frames: int | None) -> Iterator[tuple[np.ndarray, float]]:
    """BGR frames and their times in seconds, until the end, the first undecodable frame, or `max_frames`.

    A file's times are its frames' timestamps from the first one on, so a variable frame rate keeps
    its timing; a timestamp that does not advance is replaced by one frame later at the announced rate.
    A camera's times are the wall clock since the first frame.
    """
    started = time.monotonic()
    first: float | None = None
    last = -np.inf
    count = 0
    while max_frames is None or count < max_frames:
        ok, frame = source.capture.read()
        if not ok:
            return
        if source.file is None:
            seconds = time.monotonic() - started
        else:
            stamp = source.capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
            first = stamp if first is None else first
            seconds = stamp - first if stamp - first > last else last + 1 / source.fps
        last = seconds
        count += 1
        yield frame, seconds


@dataclass
class _Loop:
    """The per-frame work of `process_video`: detect, track, classify, smooth, draw, write."""

    recognizer: Recognizer
    source: _Source
    timeline: Timeline
    stride: int
    cut_threshold: float
    frames: int = 0  # written so far: what a camera session stopped by Ctrl-C keeps

    def run(self, writer: FrameWriter, window: bool, max_frames: int | None, bar: tqdm) -> None:
        """Process frames until the end, a damaged frame, `max_frames`, or q/Esc in the window."""
        tracker = FaceTracker(fps=self.source.fps / self.stride)
        cuts = SceneCuts(self.cut_threshold, min_frames=max(1, round(MIN_SHOT_S * self.source.fps)))
        faces: list[Face] = []
        ids: list[int] = []
        since = 0
        for bgr, seconds in _frames(self.source, max_frames):
            image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # (H, W, 3)
            cut = self.cut_threshold > 0 and cuts.update(bgr)
            if cut:  # every face after a cut is someone new, and the boxes before it are stale
                tracker.cut()
                self.timeline.cut(seconds)
                since = 0
            if since % self.stride == 0:
                faces = self.recognizer.detector.detect(image)
                ids = tracker.update(faces)
            since += 1
            shown = self.timeline.add(self.frames, seconds, ids, self.recognizer.classify([(image, faces)])[0])
            drawn = annotate(image, shown, self.recognizer.classes, [caption(r, t) for r, t in zip(shown, ids)])
            if drawn.shape[1::-1] != self.source.size:  # a camera may deliver another size than it announced
                drawn = cv2.resize(drawn, self.source.size)
            writer.write(drawn, seconds)
            self.frames += 1
            bar.update()
            if window:
                cv2.imshow(WINDOW, cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    return


def process_video(
    model: str | Path | Classifier,
    source: str | Path | int,
    out: str | Path,
    *,
    detector: str | Detector = DEFAULT_DETECTOR,
    detector_path: str | Path | None = None,
    backend: str = "auto",
    tta: str | None = None,
    margin: float | None = None,
    stride: int = 1,
    smooth: float = 0.6,
    cut_threshold: float = 27.0,
    min_segment: float = 0.5,
    show: bool = False,
    max_frames: int | None = None,
) -> VideoResult:
    """Recognise and track the faces of a video file or camera; write an annotated video, tables and a plot to `out`.

    ``annotated.mp4`` (H.264, with the source's audio) has each face's box, track id, label and
    probability; ``frames.csv`` has one row per face and frame (frame, time_s, face_id, box, score,
    label, smoothed probabilities), and one row with empty face fields for a frame without faces,
    so it covers every frame read; ``tracks.json``, ``tracks.csv`` and ``segments.csv`` summarise
    each track (first and last time, frames, mean probabilities, expression segments);
    ``emotions.png`` draws each track's segments over time, scene cuts marked. A camera runs until
    Ctrl-C, q in the live window, or `max_frames`. A damaged or cut-short file keeps the frames
    before the damage. Every file appears whole or not at all.

    Args:
        model, detector, detector_path, backend, tta, margin: as for `Recognizer`.
        source: a video file, or a camera index (an int, or a string of digits that names no file).
        stride: detect faces on every `stride`-th frame; the frames between reuse those boxes (each is still classified).
        smooth: weight of a track's past in its probabilities, in [0, 1); 0: no smoothing.
        cut_threshold: the mean HSV change (0-255) between frames that makes a scene cut (`SceneCuts`); 0: no cuts.
        min_segment: seconds an expression segment lasts at least; shorter changes join a neighbour.
        show: show a live window, where there is a display.
        max_frames: stop after this many frames.

    Raises:
        FerlabError: a bad option, a missing or unreadable video, an unavailable camera, or no frame decoded.
    """
    _check_options(stride, smooth, cut_threshold, min_segment)
    opened = _source(source)  # before the Recognizer, which may take seconds to load a model
    window = False
    try:
        recognizer = Recognizer(model, detector, backend=backend, tta=tta, detector_path=detector_path, margin=margin)
        loop = _Loop(recognizer, opened, Timeline(recognizer.classes, smooth), stride, cut_threshold)
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        window = _window(show)
        codec = _write_annotated(loop, out / VIDEO_NAME, window, max_frames)
    finally:
        opened.capture.release()
        if window:
            cv2.destroyAllWindows()
    return _finish(opened, loop.timeline, loop.frames, max_frames, min_segment, out, codec)


def _write_annotated(loop: _Loop, path: Path, window: bool, max_frames: int | None) -> str:
    """Run `loop` into the annotated video at `path` (whole or not at all); the codec it is in.

    Raises:
        FerlabError: not one frame could be decoded.
    """
    opened = loop.source
    with open_video_writer(path, opened.fps, opened.size, audio_from=opened.file) as writer, \
            tqdm(total=opened.expected or max_frames, unit="frame", disable=None) as bar:
        try:
            loop.run(writer, window, max_frames, bar)
        except KeyboardInterrupt:
            if opened.file is not None:
                raise  # Ctrl-C is how a camera session ends; the frames so far are kept
        if not loop.frames:
            raise FerlabError(f"cannot read video {opened.name}: no frame could be decoded")
    return writer.codec


def _check_options(stride: int, smooth: float, cut_threshold: float, min_segment: float) -> None:
    if stride < 1:
        raise FerlabError(f"stride must be at least 1, got {stride}")
    if not 0 <= smooth < 1:
        raise FerlabError(f"smooth must lie in [0, 1), got {smooth}")
    if cut_threshold < 0:
        raise FerlabError(f"the scene-cut threshold must be 0 (no cuts) or more, got {cut_threshold}")
    if min_segment < 0:
        raise FerlabError(f"the shortest segment must be 0 s or more, got {min_segment}")


def _finish(opened: _Source, timeline: Timeline, frames: int, max_frames: int | None, min_segment: float,
            out: Path, codec: str) -> VideoResult:
    """Write the tables and the plot; say whether the file looked damaged."""
    announced = opened.expected if max_frames is None or opened.expected is None else min(opened.expected, max_frames)
    truncated = announced is not None and frames < announced - MISSING_FRAMES_TOLERATED
    if truncated:
        log.warning("%s: only %d of the %d frames its header announces could be decoded; it looks damaged or cut "
                    "short, and the outputs cover the frames before the damage", opened.name, frames, opened.expected)
    summaries = timeline.summaries(1 / opened.fps, min_segment)
    about = {"source": opened.name, "fps": round(opened.fps, 4), "frames": frames, "truncated": truncated,
             "min_segment_s": min_segment, "scene_cuts_s": timeline.cuts,
             "note": "" if summaries else "no faces found"}
    files = write_tracks(out, summaries, timeline.classes, about)
    plot = plot_timeline(summaries, timeline.history, timeline.classes, timeline.cuts, out / PLOT_NAME)
    return VideoResult(opened.name, frames, opened.expected, opened.fps, tuple(s.id for s in summaries),
                       out / VIDEO_NAME, timeline.write_csv(out / CSV_NAME), plot, truncated, summaries,
                       tuple(timeline.cuts), codec, *files)
