import csv

import cv2
import numpy as np
import pytest
from PIL import Image

from ferlab.cli import main
from ferlab.errors import FerlabError
from ferlab.inference.detect import Face
from ferlab.inference.timeline import smooth_probs
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


@pytest.mark.skipif(not (WILD.is_dir() and YUNET.is_file()), reason="../shared videos or YuNet model missing")
def test_wild_video_with_yunet(model, tmp_path):
    result = process_video(model, WILD / "single_face.mp4", tmp_path, detector="yunet", detector_path=YUNET,
                           backend="torch", stride=2)
    rows = read_rows(result.csv)
    assert result.frames == 72 and not result.truncated
    assert len(rows) == 72 and result.tracks == (0,)  # one face, one row a frame, one track
