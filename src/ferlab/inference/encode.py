"""Writing the annotated video so that browsers play it: H.264 in MP4, the source's audio kept, atomically.

OpenCV's wheels can only write MPEG-4 Part 2 (``mp4v``), which Chromium and Firefox refuse
(``DEMUXER_ERROR_NO_SUPPORTED_STREAMS``). PyAV (BSD-3-Clause) ships FFmpeg in its wheels with
libx264; note that this bundled FFmpeg is built with ``--enable-gpl`` (x264, x265), so the
binary PyAV wheel as a whole is GPL-licensed, while ferlab only imports it. Where PyAV or an
H.264 encoder is missing, the writer falls back to OpenCV's mp4v with a warning.

Frames carry their own timestamps, so a variable-frame-rate source keeps its timing.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from ferlab.errors import FerlabError

__all__ = ["FrameWriter", "h264_encoder", "open_video_writer"]

log = logging.getLogger(__name__)

#: H.264 encoders in order of preference: x264, then whatever FFmpeg names ``h264`` (openh264 in some builds).
H264_ENCODERS = ("libx264", "h264")
#: x264 speed/size trade-off, measured on a 596x336 clip here, one encoder thread: ultrafast 0.83 ms a frame and
#: about mp4v's bytes (2.1 MB against 1.75 MB; mp4v 0.63 ms), superfast 1.21 ms and 0.88 MB, veryfast 1.41 ms and
#: 0.34 MB. Ultrafast keeps `ferlab video` within 10% of the mp4v writer's fps; crf 23 is x264's default quality.
X264_OPTIONS = {"preset": "ultrafast", "crf": "23"}
#: One encoder thread: x264's own threads only contend with detection for the cores (1.85 ms a frame with them).
X264_THREADS = 1
#: Timestamps in 1/90000 s, MPEG's clock: fine enough for any frame rate, variable ones included.
TIME_BASE = Fraction(1, 90000)
#: ``moov`` before the data, so a browser starts playing before the whole file has arrived.
MP4_OPTIONS = {"movflags": "+faststart"}


class FrameWriter(Protocol):
    """What `open_video_writer` yields: ``write(rgb, seconds)`` per frame; ``codec`` names what it writes."""

    codec: str

    def write(self, rgb: np.ndarray, seconds: float) -> None: ...


def h264_encoder() -> str | None:
    """The name of an H.264 encoder PyAV can use here; None without PyAV or without such an encoder."""
    try:
        import av
    except ImportError:
        return None
    return next((name for name in H264_ENCODERS if name in av.codecs_available and _encodes(av, name)), None)


def _encodes(av, name: str) -> bool:
    try:
        return av.codec.Codec(name, "w").type == "video"
    except (ValueError, av.error.FFmpegError):  # a decoder only, under this name
        return False


class _AvWriter:
    """H.264 (yuv420p) in MP4 through PyAV; each frame's pts from its time, kept strictly increasing."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], encoder: str) -> None:
        import av

        self._container = av.open(str(path), mode="w", format="mp4", options=MP4_OPTIONS)
        # yuv420p needs even sides: an odd last column or row is dropped.
        self._size = (size[0] - size[0] % 2, size[1] - size[1] % 2)
        stream = self._container.add_stream(encoder, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = self._size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = TIME_BASE
        if encoder == "libx264":
            stream.options = dict(X264_OPTIONS)
            stream.codec_context.thread_count = X264_THREADS
        self._stream = stream
        self._last = -1
        self.codec = f"H.264 ({encoder})"

    def write(self, rgb: np.ndarray, seconds: float) -> None:
        import av

        width, height = self._size
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:height, :width]), format="rgb24")
        self._last = frame.pts = max(self._last + 1, round(seconds / TIME_BASE))
        frame.time_base = TIME_BASE
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():  # flush the encoder's delayed frames
            self._container.mux(packet)
        self._container.close()


class _CvWriter:
    """OpenCV's MPEG-4 Part 2 (mp4v), the fallback: plays in desktop players, not in browsers."""

    codec = "MPEG-4 Part 2 (mp4v)"

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self._writer.isOpened():
            raise FerlabError(f"OpenCV cannot write an mp4v video to {path.parent}")

    def write(self, rgb: np.ndarray, seconds: float) -> None:
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self._writer.release()


@contextlib.contextmanager
def open_video_writer(path: str | Path, fps: float, size: tuple[int, int], *,
                      audio_from: str | Path | None = None) -> Iterator[FrameWriter]:
    """A writer of RGB frames to `path` (MP4), which appears only when the block succeeds.

    Frames go to a temporary file beside `path`; at the end the audio of `audio_from`
    (a video file) is copied in when it has one and MP4 can hold its codec, then the file is
    renamed to `path`. An exception in the block leaves no file behind.

    Args:
        fps: the nominal frame rate, a hint to the encoder (each frame's time sets its timestamp).
        size: width, height of the frames written.

    Raises:
        FerlabError: the file cannot be written.
    """
    path = Path(path)
    encoder = h264_encoder()
    partial = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    video = partial.with_name(partial.name + ".video.mp4")
    if encoder is None:
        log.warning("PyAV with an H.264 encoder is not installed (pip install av): %s is written as MPEG-4 Part 2 "
                    "(mp4v), which desktop players play and browsers do not", path.name)
        writer: _AvWriter | _CvWriter = _CvWriter(video, fps, size)
    else:
        writer = _AvWriter(video, fps, size, encoder)
    try:
        try:
            yield writer
        finally:
            writer.close()
        if encoder is None or audio_from is None or not _copy_audio(video, Path(audio_from), partial):
            os.replace(video, partial)
        os.replace(partial, path)
    finally:
        for leftover in (video, partial):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


def _copy_audio(video: Path, source: Path, out: Path) -> bool:
    """Mux `video`'s stream and `source`'s first audio stream (copied, not re-encoded) into `out`.

    The audio is cut where the video ends (a damaged file or ``max_frames`` stop it early).

    Returns:
        Whether `out` was written: False when `source` has no audio, or MP4 cannot hold its codec.
    """
    import av

    try:
        with av.open(str(source)) as src:
            if not src.streams.audio:
                return False
            with av.open(str(video)) as annotated, \
                    av.open(str(out), mode="w", format="mp4", options=MP4_OPTIONS) as dst:
                picture, sound = annotated.streams.video[0], src.streams.audio[0]
                end = float(picture.duration * picture.time_base) if picture.duration else None
                targets = {picture: dst.add_stream_from_template(picture), sound: dst.add_stream_from_template(sound)}
                for *_, packet in heapq.merge(_timed(annotated.demux(picture), 0, None),
                                              _timed(src.demux(sound), 1, end)):
                    packet.stream = targets[packet.stream]
                    dst.mux(packet)
        return True
    except (av.error.FFmpegError, ValueError) as err:
        log.warning("%s: its audio is not kept in the annotated video (%s)", source.name, err)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(out)
        return False


def _timed(packets, rank: int, end: float | None) -> Iterator[tuple[float, int, int, object]]:
    """(seconds, rank, order, packet) for the packets that carry data and start before `end`, for heapq.merge.

    `rank` breaks ties between the streams, and `order` within one, so packets are never compared.
    """
    for order, packet in enumerate(packets):
        if packet.dts is None or packet.size == 0:  # the demuxer's empty flush packet
            continue
        seconds = float(packet.dts * packet.time_base)
        if end is not None and seconds >= end:
            return
        yield seconds, rank, order, packet
