import csv
from fractions import Fraction

import cv2
import numpy as np
import pytest
from PIL import Image

from ferlab.cli import main
from ferlab.errors import FerlabError
from ferlab.inference.detect import Face
from ferlab.inference.timeline import segments, smooth_probs
from ferlab.inference.tracking import FaceTracker
from ferlab.inference.video import process_video
from ferlab.models import load_model
from tests.inference.test_recognizer import WILD, YUNET, ScriptedDetector, paste

FRAMES = 12
SIZE = (160, 120)  # width, height


@pytest.fixture(scope="module")
def model(trained_run):
    return load_model(trained_run)


def write_video(path, frames, fps=10.0, fourcc="mp4v"):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, SIZE)
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def moving_faces(tree, tmp_path_factory):
    """A video of a happy and an angry synthetic face drifting right, 3 px a frame; the faces of each frame."""
    happy, angry = (np.asarray(Image.open(next((tree / "val" / label).iterdir()))) for label in ("happy", "angry"))
    frames, faces = [], []
    for i in range(FRAMES):
        canvas = np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)
        faces.append([paste(canvas, happy, 4 + 3 * i, 10), paste(canvas, angry, 70 + 3 * i, 60)])
        frames.append(canvas)
    return write_video(tmp_path_factory.mktemp("video") / "moving.mp4", frames), faces


def read_rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_video_rows_cover_every_frame_and_tracks_are_stable(model, moving_faces, tmp_path):
    video, faces = moving_faces
    script = [f if i not in (5, 6) else [] for i, f in enumerate(faces)]  # no face found in frames 5 and 6
    result = process_video(model, video, tmp_path, detector=ScriptedDetector(script), backend="torch", smooth=0)
    assert (result.frames, result.expected_frames, result.truncated, result.tracks) == (FRAMES, FRAMES, False, (0, 1))
    rows = read_rows(result.csv)
    assert sorted({int(r["frame"]) for r in rows}) == list(range(FRAMES))
    assert len(rows) == 2 * FRAMES - 2
    assert [r["face_id"] for r in rows if r["frame"] == "5"] == [""]  # a frame without faces: one empty row
    faced = [r for r in rows if r["face_id"]]
    assert all(r["face_id"] == ("0" if int(r["x"]) < 50 else "1") for r in faced)  # ids kept across frames and gap
    assert {r["label"] for r in faced if r["face_id"] == "0"} == {"happy"}
    assert {r["label"] for r in faced if r["face_id"] == "1"} == {"angry"}
    assert float(rows[-1]["time_s"]) == pytest.approx((FRAMES - 1) / 10)
    capture = cv2.VideoCapture(str(result.video))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    capture.release()
    assert result.plot.stat().st_size > 0


def test_stride_reuses_detections_and_smoothing_follows_its_formula(model, moving_faces, tmp_path):
    video, faces = moving_faces
    detector = ScriptedDetector(faces[::3])
    rows = read_rows(process_video(model, video, tmp_path / "s", detector=detector, backend="torch", stride=3,
                                   smooth=0.6).csv)
    raw = read_rows(process_video(model, video, tmp_path / "raw", detector=ScriptedDetector(faces[::3]),
                                  backend="torch", stride=3, smooth=0).csv)
    assert detector.calls == 4  # frames 0, 3, 6, 9
    assert [int(r["x"]) for r in rows if r["face_id"] == "0"] == [4 + 3 * (i - i % 3) for i in range(FRAMES)]
    for track in ("0", "1"):
        smoothed = np.array([[float(r[c]) for c in model.classes] for r in rows if r["face_id"] == track])
        current = np.array([[float(r[c]) for c in model.classes] for r in raw if r["face_id"] == track])
        expected = [current[0]]
        for p in current[1:]:
            expected.append(0.6 * expected[-1] + 0.4 * p)
        np.testing.assert_allclose(smoothed, expected, atol=5e-6)
        assert not np.allclose(smoothed, current, atol=1e-4)


def test_tracker_follows_faces_through_gaps_and_ends_tracks_at_a_cut():
    tracker = FaceTracker(fps=10, lost_seconds=0.2)
    a, b = Face((0, 0, 10, 10), 1.0), Face((50, 0, 10, 10), 1.0)
    assert tracker.update([a, b]) == [0, 1]
    # shifted by 2 px, listed in the other order: each keeps its id
    assert tracker.update([Face((52, 0, 10, 10), 1.0), Face((2, 0, 10, 10), 1.0)]) == [1, 0]
    assert tracker.update([Face((4, 0, 10, 10), 1.0), Face((100, 80, 10, 10), 1.0)]) == [0, 2]  # a new face: id 2
    tracker.update([])
    assert tracker.update([Face((8, 0, 10, 10), 1.0)]) == [0]  # one update missed, within 0.2 s at 10 updates/s
    for _ in range(5):
        tracker.update([])
    assert tracker.update([Face((14, 0, 10, 10), 1.0)]) == [3]  # 5 missed, well past 2 updates: a new track
    tracker.cut()
    assert tracker.update([Face((14, 0, 10, 10), 1.0)]) == [4]  # same place, after a cut: someone new
    np.testing.assert_allclose(smooth_probs(np.array([1.0, 0.0]), np.array([0.0, 1.0]), 0.6), [0.6, 0.4])
    np.testing.assert_allclose(smooth_probs(None, np.array([0.2, 0.8]), 0.6), [0.2, 0.8])


def test_truncated_video_keeps_the_frames_before_the_damage(model, tmp_path, caplog):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (SIZE[1], SIZE[0], 3), dtype=np.uint8) for _ in range(30)]
    whole = write_video(tmp_path / "whole.avi", frames, fourcc="MJPG")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    result = process_video(model, cut, tmp_path / "out", detector="none", backend="torch")
    assert result.truncated and result.expected_frames == 30 and 5 < result.frames < 30
    assert len(read_rows(result.csv)) == result.frames
    assert "could be decoded" in caplog.text


def test_bad_video_inputs(model, tmp_path):
    with pytest.raises(FerlabError, match="no such video file"):
        process_video(model, tmp_path / "missing.mp4", tmp_path / "out", detector="none")
    (tmp_path / "fake.mp4").write_text("not a video")
    with pytest.raises(FerlabError, match=r"cannot read video .*fake\.mp4"):
        process_video(model, tmp_path / "fake.mp4", tmp_path / "out", detector="none", backend="torch")
    with pytest.raises(FerlabError, match="stride must be at least 1"):
        process_video(model, tmp_path / "fake.mp4", tmp_path / "out", stride=0)
    with pytest.raises(FerlabError, match=r"smooth must lie in \[0, 1\)"):
        process_video(model, tmp_path / "fake.mp4", tmp_path / "out", smooth=1.0)
    with pytest.raises(FerlabError, match="cannot open camera 9"):
        process_video(model, "9", tmp_path / "out", detector="none", backend="torch")
    assert not (tmp_path / "out" / "annotated.mp4").exists()


def test_cli_video(trained_run, moving_faces, tmp_path, capsys):
    video, _ = moving_faces
    code = main(["video", str(video), "--model", str(trained_run), "--out", str(tmp_path), "--detector", "none",
                 "--backend", "torch", "--max-frames", "5"])
    assert code == 0
    assert len(read_rows(tmp_path / "frames.csv")) == 5
    assert "5 frames" in capsys.readouterr().out
    assert main(["video", str(video), "--out", str(tmp_path / "x"), "--detector", "none", "--max-frames", "2"]) == 0
    assert len(read_rows(tmp_path / "x" / "frames.csv")) == 2  # the bundled default model


def test_cli_video_writes_beside_the_current_folder_without_out(moving_faces, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["video", str(moving_faces[0]), "--detector", "none", "--max-frames", "3"]) == 0
    said = capsys.readouterr()
    assert "written to moving-ferlab" in said.out and "H.264" in said.out
    assert (tmp_path / "moving-ferlab" / "tracks.json").is_file()
    assert "frame/s" not in said.err and "it/s" not in said.err  # no progress bar where stderr is no terminal


@pytest.mark.skipif(not (WILD.is_dir() and YUNET.is_file()), reason="../shared videos or YuNet model missing")
def test_wild_video_with_yunet(model, tmp_path):
    result = process_video(model, WILD / "single_face.mp4", tmp_path, detector="yunet", detector_path=YUNET,
                           backend="torch", stride=2)
    rows = read_rows(result.csv)
    assert result.frames == 72 and not result.truncated
    assert len(rows) == 72 and result.tracks == (0,)  # one face, one row a frame, one track


def av_video(path, frames, fps=10, times=None, audio=False):
    """An H.264 MP4 of RGB `frames` through PyAV, with frame `times` (s) for a variable rate and an AAC tone."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = Fraction(1, 1000)
        sound = out.add_stream("aac", rate=16000) if audio else None
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = round(1000 * (i / fps if times is None else times[i]))
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if sound is not None:
            samples = len(frames) * 16000 // fps
            tone = (0.2 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 16000)).astype(np.float32)[None]  # (1, S)
            chunk = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 16000, 0
            out.mux(sound.encode(chunk))
            out.mux(sound.encode())
    return path


def streams(path):
    import av

    with av.open(str(path)) as container:
        return {s.type: (s.codec_context.name, float(s.duration * s.time_base)) for s in container.streams}


@pytest.fixture(scope="module")
def crossing(tree):
    """20 frames of a happy and an angry face crossing on grey, then a hard cut to 20 frames of another shot where
    each stands where the other left off (frames, per-frame faces, per-frame true person of each face)."""
    happy, angry = (np.asarray(Image.open(next((tree / "val" / label).iterdir()))) for label in ("happy", "angry"))
    frames, faces, people = [], [], []
    for i in range(40):
        shot = i // 20
        canvas = np.full((120, 240, 3), (90, 90, 90) if shot == 0 else (40, 160, 220), np.uint8)
        if shot == 0:  # happy goes right, angry left, almost on one line: box overlap alone swaps them at frame 10
            boxes = [paste(canvas, happy, 10 + 9 * i, 30), paste(canvas, angry, 180 - 9 * i, 34)]
        else:  # angry now where happy ended, and happy where angry ended
            boxes = [paste(canvas, happy, 10 + (i - 20), 30), paste(canvas, angry, 180 - (i - 20), 30)]
        frames.append(canvas)
        faces.append(boxes)
        people.append([f"happy{shot}", f"angry{shot}"])
    return frames, faces, people


def tracking_errors(rows, faces, people):
    """(tracks, ID switches, tracks covering more than one person): each row's person is found by its scripted box.

    An ID switch is a person's track id changing from one frame to the next.
    """
    persons, last, switches = {}, {}, 0
    for row in (r for r in rows if r["face_id"]):
        frame = int(row["frame"])
        person = people[frame][[f.box[0] for f in faces[frame]].index(int(row["x"]))]
        persons.setdefault(row["face_id"], set()).add(person)
        switches += last.get(person, row["face_id"]) != row["face_id"]
        last[person] = row["face_id"]
    return len(persons), switches, sum(len(p) > 1 for p in persons.values())


def test_a_cut_ends_every_track_and_crossing_faces_keep_their_ids(model, crossing, tmp_path):
    frames, faces, people = crossing
    clip = av_video(tmp_path / "cut.mp4", frames)
    result = process_video(model, clip, tmp_path / "out", detector=ScriptedDetector(faces), backend="torch", smooth=0.6)
    assert result.scene_cuts == pytest.approx((2.0,))
    rows = [r for r in read_rows(result.csv) if r["face_id"]]
    assert tracking_errors(rows, faces, people) == (4, 0, 0)  # 4 tracks, no switch, none covers two persons
    # smoothing starts again with each track: the first row after the cut is that frame's own answer
    raw = read_rows(process_video(model, clip, tmp_path / "raw", detector=ScriptedDetector(faces), backend="torch",
                                  smooth=0).csv)
    first = [r for r in rows if r["frame"] == "20"]
    assert [r["happy"] for r in first] == [r["happy"] for r in raw if r["frame"] == "20"]
    without = process_video(model, clip, tmp_path / "nocut", detector=ScriptedDetector(faces), backend="torch",
                            cut_threshold=0)
    assert without.scene_cuts == ()
    assert tracking_errors(read_rows(without.csv), faces, people) == (2, 0, 2)  # each id runs on into someone else


def test_annotated_video_is_h264_and_keeps_the_audio_up_to_the_last_frame(model, moving_faces, tmp_path):
    frames = [np.asarray(Image.new("RGB", (160, 120), (90 + i, 90, 90))) for i in range(20)]
    clip = av_video(tmp_path / "talk.mp4", frames, audio=True)
    assert set(streams(clip)) == {"video", "audio"}
    result = process_video(model, clip, tmp_path / "out", detector="none", backend="torch", max_frames=10)
    got = streams(result.video)
    assert result.codec.startswith("H.264") and got["video"][0] == "h264" and got["audio"][0] == "aac"
    assert got["video"][1] == pytest.approx(1.0, abs=0.01) and got["audio"][1] == pytest.approx(1.0, abs=0.1)
    silent = process_video(model, moving_faces[0], tmp_path / "silent", detector="none", backend="torch")
    assert set(streams(silent.video)) == {"video"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [  # no partial file left behind
        "annotated.mp4", "emotions.png", "frames.csv", "segments.csv", "tracks.csv", "tracks.json"]


def test_without_an_h264_encoder_it_writes_mp4v_and_says_so(model, moving_faces, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr("ferlab.inference.encode.h264_encoder", lambda: None)
    result = process_video(model, moving_faces[0], tmp_path, detector="none", backend="torch", max_frames=3)
    assert result.codec == "MPEG-4 Part 2 (mp4v)" and streams(result.video)["video"][0] == "mpeg4"
    assert "browsers do not" in caplog.text


def test_tracks_and_segments_as_files_and_dataframes(model, moving_faces, tmp_path):
    import json

    video, faces = moving_faces
    result = process_video(model, video, tmp_path, detector=ScriptedDetector(faces), backend="torch", min_segment=0.3)
    about = json.loads(result.tracks_json.read_text())
    assert (about["frames"], about["scene_cuts_s"], about["min_segment_s"], about["note"]) == (FRAMES, [], 0.3, "")
    assert [(t["id"], t["first_s"], t["last_s"], t["frames"], t["label"]) for t in about["tracks"]] == [
        (0, 0.0, 1.1, FRAMES, "happy"), (1, 0.0, 1.1, FRAMES, "angry")]
    segments = about["tracks"][0]["segments"]
    assert segments[0]["start_s"] == 0.0 and segments[-1]["end_s"] == pytest.approx(1.2)
    assert sum(s["frames"] for s in segments) == FRAMES and all(0 < s["confidence"] <= 1 for s in segments)
    tracks = result.tracks_frame()
    assert tracks["id"].tolist() == [0, 1] and tracks["label"].tolist() == ["happy", "angry"]
    assert tracks[list(model.classes)].sum(axis=1).tolist() == pytest.approx([1, 1], abs=1e-4)
    assert result.segments_frame()["track"].tolist() == [0] * len(segments) + [1] * len(about["tracks"][1]["segments"])
    assert read_rows(result.tracks_csv)[1]["label"] == "angry"
    assert len(read_rows(result.segments_csv)) == len(result.segments_frame())


def test_segments_absorb_changes_shorter_than_the_minimum():
    classes = ["a", "b", "c"]
    labels = [0] * 10 + [1] * 2 + [0] * 10 + [2] * 10  # a 0.2 s flicker to b inside a, then c for 1 s
    probs = np.full((len(labels), 3), 0.1)
    probs[np.arange(len(labels)), labels] = 0.8
    probs[10:12, 0] = 0.3  # during the flicker a stays ahead of c
    found = segments(np.arange(len(labels)) / 10, probs, classes, 0.1, 0.5)
    assert [(s.start_s, s.end_s, s.frames, s.label) for s in found] == [(0.0, 2.2, 22, "a"), (2.2, 3.2, 10, "c")]
    assert found[0].confidence == pytest.approx((20 * 0.8 + 2 * 0.3) / 22, abs=1e-4)
    assert len(segments(np.arange(len(labels)) / 10, probs, classes, 0.1, 0)) == 4  # no minimum: every change
    assert [s.label for s in segments(np.arange(3) / 10, probs[:3], classes, 0.1, 5)] == ["a"]  # one stays


def test_a_video_without_faces_has_empty_tracks_and_says_so(model, moving_faces, tmp_path):
    import json

    result = process_video(model, moving_faces[0], tmp_path, detector=ScriptedDetector([[]]), backend="torch")
    about = json.loads(result.tracks_json.read_text())
    assert (about["tracks"], about["note"], result.tracks) == ([], "no faces found", ())
    assert read_rows(result.tracks_csv) == [] and result.tracks_frame().empty
    assert len(read_rows(result.csv)) == FRAMES and result.plot.stat().st_size > 0


def test_variable_frame_rate_times_come_from_the_timestamps(model, tmp_path):
    times = [0.0, 0.1, 0.15, 0.5, 0.55, 1.0]
    frames = [np.asarray(Image.new("RGB", (160, 120), (90, 90, 90)))] * len(times)
    result = process_video(model, av_video(tmp_path / "vfr.mp4", frames, times=times), tmp_path / "out",
                           detector="none", backend="torch")
    assert [float(r["time_s"]) for r in read_rows(result.csv)] == pytest.approx(times, abs=1e-3)


def test_a_file_without_a_frame_rate_is_read_at_30_fps_with_a_warning(model, moving_faces, tmp_path, monkeypatch,
                                                                       caplog):
    real = cv2.VideoCapture

    class NoRate:
        def __init__(self, *args):
            self._capture = real(*args)

        def get(self, prop):
            return 0.0 if prop == cv2.CAP_PROP_FPS else self._capture.get(prop)

        def __getattr__(self, name):
            return getattr(self._capture, name)

    monkeypatch.setattr("ferlab.inference.video.cv2.VideoCapture", NoRate)
    result = process_video(model, moving_faces[0], tmp_path, detector="none", backend="torch")
    assert result.fps == 30.0 and "no usable frame rate" in caplog.text
    assert float(read_rows(result.csv)[-1]["time_s"]) == pytest.approx((FRAMES - 1) / 10)  # the frames' own times


def test_a_failure_midway_leaves_no_partial_video(model, moving_faces, tmp_path):
    class Failing(ScriptedDetector):
        def detect(self, image):
            if self.calls == 4:
                raise RuntimeError("detector crashed")
            return super().detect(image)

    with pytest.raises(RuntimeError, match="detector crashed"):
        process_video(model, moving_faces[0], tmp_path, detector=Failing(moving_faces[1]), backend="torch")
    assert list(tmp_path.iterdir()) == []
