"""Each tracked face's expressions over time: per-frame rows, per-track summaries with expression segments, a plot.

A track's probabilities are smoothed exponentially from its first frame on, so smoothing never
carries one person's expression into another's: a new track (a new face, or any face after a
scene cut) starts from its own first frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ferlab._io import save_figure, write_csv, write_json

if TYPE_CHECKING:
    import pandas as pd

    from ferlab.inference.recognizer import FaceResult

__all__ = ["Segment", "Timeline", "TrackSummary", "segments", "smooth_probs"]

#: Tracks drawn in the plot, the longest first; the rest are counted in its title.
PLOT_TRACKS = 20


def smooth_probs(previous: np.ndarray | None, current: np.ndarray, smooth: float) -> np.ndarray:
    """Exponential smoothing: ``smooth * previous + (1 - smooth) * current``; a new track starts at `current`."""
    return current if previous is None else smooth * previous + (1 - smooth) * current


@dataclass(frozen=True)
class Segment:
    """A stretch of one track with one dominant expression.

    Attributes:
        start_s, end_s: when it starts (its first frame's time) and ends (its last frame's time plus one frame).
        confidence: the mean smoothed probability of `label` over its frames.
    """

    start_s: float
    end_s: float
    frames: int
    label: str
    confidence: float


@dataclass(frozen=True)
class TrackSummary:
    """One tracked face: when it was seen, its mean probabilities, and its expression segments.

    Attributes:
        first_s, last_s: the times of its first and last frames.
        label: the class of highest mean probability.
    """

    id: int
    first_s: float
    last_s: float
    frames: int
    label: str
    probs: dict[str, float]
    segments: tuple[Segment, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def segments(times: np.ndarray, probs: np.ndarray, classes: Sequence[str], frame_s: float,
             min_seconds: float) -> list[Segment]:
    """A track's frames cut where its dominant class changes, no segment shorter than `min_seconds`.

    A segment too short is absorbed by the neighbour whose class the short stretch's frames give
    more probability, shortest first, until none is too short or one is left.

    Args:
        times: (T,) each frame's time, increasing.
        probs: (T, K) each frame's smoothed probabilities.
        frame_s: one frame's duration, the length of a track's last frame.
    """
    label = probs.argmax(axis=1)  # (T,)
    ends = np.append(times[1:], times[-1] + frame_s)  # when each frame stops being shown
    while True:
        starts = np.flatnonzero(np.diff(label, prepend=-1))  # each run's first frame
        bounds = np.append(starts, len(label))
        lengths = ends[bounds[1:] - 1] - times[starts]
        short = [i for i in np.argsort(lengths, kind="stable") if lengths[i] < min_seconds - 1e-9]
        if len(starts) == 1 or not short:
            break
        run = short[0]
        frames = slice(bounds[run], bounds[run + 1])
        neighbours = [label[bounds[run] - 1]] if run > 0 else []
        neighbours += [label[bounds[run + 1]]] if run + 1 < len(starts) else []
        label[frames] = max(neighbours, key=lambda k: probs[frames, k].sum())
    return [Segment(round(float(times[a]), 4), round(float(ends[b - 1]), 4), int(b - a), classes[label[a]],
                    round(float(probs[a:b, label[a]].mean()), 4)) for a, b in zip(starts, bounds[1:])]


class Timeline:
    """Each track's smoothed probabilities as the frames come, their history, the CSV rows and the scene cuts.

    Args:
        classes: the model's classes, the order of the probability columns.
        smooth: weight of a track's past in its probabilities, in [0, 1).
    """

    def __init__(self, classes: Sequence[str], smooth: float) -> None:
        self.classes = list(classes)
        self.smooth = smooth
        self.smoothed: dict[int, np.ndarray] = {}
        self.history: dict[int, list[tuple[float, np.ndarray]]] = {}
        self.rows: list[dict[str, object]] = []
        self.cuts: list[float] = []

    def cut(self, seconds: float) -> None:
        """Record a scene cut (the tracker has ended every track there)."""
        self.cuts.append(round(seconds, 4))

    def add(self, frame: int, seconds: float, ids: Sequence[int], results: Sequence[FaceResult]) -> list[FaceResult]:
        """Record one frame's faces; returns them with smoothed probabilities and labels."""
        from ferlab.inference.recognizer import FaceResult

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

    def summaries(self, frame_s: float, min_segment_s: float) -> tuple[TrackSummary, ...]:
        """Every track, in order of id, with its segments (none shorter than `min_segment_s`)."""
        found = []
        for track in sorted(self.history):
            times = np.array([t for t, _ in self.history[track]])  # (T,)
            probs = np.stack([p for _, p in self.history[track]])  # (T, K)
            mean = probs.mean(axis=0)
            found.append(TrackSummary(track, round(float(times[0]), 4), round(float(times[-1]), 4), len(times),
                                      self.classes[int(mean.argmax())],
                                      {c: round(float(p), 6) for c, p in zip(self.classes, mean)},
                                      tuple(segments(times, probs, self.classes, frame_s, min_segment_s))))
        return tuple(found)

    def write_csv(self, path: Path) -> Path:
        write_csv(path, self.rows, ["frame", "time_s", "face_id", "x", "y", "w", "h", "score", "label", *self.classes])
        return path


def write_tracks(folder: Path, tracks: Sequence[TrackSummary], classes: Sequence[str],
                 about: dict[str, Any]) -> tuple[Path, Path, Path]:
    """``tracks.json`` (everything), ``tracks.csv`` (a row per track) and ``segments.csv`` (a row per segment).

    Args:
        about: what the JSON says of the video besides its tracks (source, fps, frames, scene cuts...).
    """
    paths = folder / "tracks.json", folder / "tracks.csv", folder / "segments.csv"
    write_json(paths[0], {**about, "tracks": [t.to_dict() for t in tracks]})
    write_csv(paths[1], track_rows(tracks), ["id", "first_s", "last_s", "frames", "label", *classes])
    write_csv(paths[2], segment_rows(tracks), ["track", "start_s", "end_s", "frames", "label", "confidence"])
    return paths


def track_rows(tracks: Sequence[TrackSummary]) -> list[dict[str, Any]]:
    """A flat row per track: id, first_s, last_s, frames, label and the mean probability of each class."""
    return [{"id": t.id, "first_s": t.first_s, "last_s": t.last_s, "frames": t.frames, "label": t.label, **t.probs}
            for t in tracks]


def segment_rows(tracks: Sequence[TrackSummary]) -> list[dict[str, Any]]:
    """A flat row per segment, with its track's id first."""
    return [{"track": t.id, **asdict(s)} for t in tracks for s in t.segments]


def frames_of(tracks: Sequence[TrackSummary]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tracks and their segments as pandas DataFrames (pandas is imported here: it is optional)."""
    import pandas as pd

    return pd.DataFrame(track_rows(tracks)), pd.DataFrame(segment_rows(tracks))


def plot_timeline(tracks: Sequence[TrackSummary], history: dict[int, list[tuple[float, np.ndarray]]],
                  classes: Sequence[str], cuts: Sequence[float], path: Path) -> Path:
    """One row per track: its segments coloured by expression, its top probability drawn over them, cuts marked."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    shown = sorted(sorted(tracks, key=lambda t: -t.frames)[:PLOT_TRACKS], key=lambda t: t.id)
    fig = Figure(figsize=(10, 1.6 + 0.45 * max(1, len(shown))), layout="constrained")
    ax = fig.subplots()
    if not shown:
        ax.text(0.5, 0.5, "no faces found", ha="center", va="center", fontsize="large")
        ax.set_axis_off()
        return save_figure(fig, path)
    for row, track in enumerate(shown):
        colours = [f"C{classes.index(s.label) % 10}" for s in track.segments]
        ax.broken_barh([(s.start_s, s.end_s - s.start_s) for s in track.segments], (row - 0.4, 0.8),
                       facecolors=colours, edgecolor="white", linewidth=0.5)
        times = [t for t, _ in history[track.id]]
        top = [float(p.max()) for _, p in history[track.id]]
        ax.plot(times, [row + 0.4 - 0.8 * p for p in top], color="black", linewidth=0.8)  # 0 at the bar's foot
    for cut in cuts:
        ax.axvline(cut, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(shown)), [f"face #{t.id}" for t in shown])
    ax.set_ylim(len(shown) - 0.5, -0.5)  # the first track on top
    ax.set_xlabel("time (s)")
    hidden = len(tracks) - len(shown)
    ax.set_title("dominant expression per tracked face" + (f" ({hidden} shorter tracks not shown)" if hidden else ""))
    handles = [Patch(color=f"C{k % 10}", label=c) for k, c in enumerate(classes)]
    handles.append(Line2D([], [], color="black", linewidth=0.8, label="top probability"))
    if cuts:
        handles.append(Line2D([], [], color="black", linestyle="--", label="scene cut"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5), fontsize="small")
    return save_figure(fig, path)
