"""End-to-end speed on real media: video frames per second and photos per second, YuNet vs Haar, in one table.

    python benchmarks/end_to_end.py --model runs/cnn3 [--wild ../shared/data/wild] [--yunet FILE] [--backend auto]

Videos go through `process_video` exactly as `ferlab video` runs them (decode, detect,
crop, classify, track, smooth, draw, write the annotated video and the CSV); photos
through `Recognizer.recognize` (read with EXIF, detect, crop, classify). Every clip and
photo is timed with each detector in turn, so a background load slows both alike.
Skips with a message when the shared media are missing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2

from ferlab.inference import Recognizer
from ferlab.inference.video import process_video
from ferlab.models.io import load_model

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
DETECTORS = ("yunet", "haar")


def _size(path: Path) -> str:
    capture = cv2.VideoCapture(str(path))
    try:
        return f"{int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))}"
    finally:
        capture.release()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="run folder or model file")
    parser.add_argument("--wild", type=Path, default=SHARED / "data" / "wild", help="folder of .jpg and .mp4 files")
    parser.add_argument("--yunet", type=Path, default=SHARED / "models" / "yunet" / "face_detection_yunet_2023mar.onnx")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"))
    parser.add_argument("--photo-rounds", type=int, default=3, help="times each photo is recognised")
    args = parser.parse_args()
    videos, photos = sorted(args.wild.glob("*.mp4")), sorted(args.wild.glob("*.jpg"))
    if not videos and not photos:
        print(f"no media in {args.wild}; skipped")
        return 0
    model = load_model(args.model)
    recognizers = {name: Recognizer(model, name, backend=args.backend,
                                    detector_path=args.yunet if name == "yunet" else None) for name in DETECTORS}
    backend = recognizers["yunet"].backend
    print(f"\n{model.meta.architecture} on {backend}; media in {args.wild}\n")
    print(f"{'video':28s} {'size':>9s} {'frames':>6s} " + " ".join(f"{d + ' fps':>10s}" for d in DETECTORS)
          + f" {'yunet/haar':>10s}")
    with tempfile.TemporaryDirectory() as tmp:
        for video in videos:
            rates = {}
            for name in DETECTORS:
                started = time.perf_counter()
                result = process_video(recognizers[name].model, video, Path(tmp) / f"{video.stem}-{name}",
                                       detector=recognizers[name].detector)
                rates[name] = result.frames / (time.perf_counter() - started)
            print(f"{video.name:28s} {_size(video):>9s} {result.frames:6d} "
                  + " ".join(f"{rates[d]:10.1f}" for d in DETECTORS) + f" {rates['yunet'] / rates['haar']:9.2f}x")
    if photos:
        elapsed = dict.fromkeys(DETECTORS, 0.0)
        faces = dict.fromkeys(DETECTORS, 0)
        for _ in range(args.photo_rounds):
            for photo in photos:
                for name in DETECTORS:
                    started = time.perf_counter()
                    found = recognizers[name].recognize(photo)
                    elapsed[name] += time.perf_counter() - started
                    faces[name] += len(found)
        count = len(photos) * args.photo_rounds
        print(f"\n{'photos (' + str(len(photos)) + ' jpg)':28s} " + " ".join(
            f"{d}: {count / elapsed[d]:.1f} photos/s, {faces[d] // args.photo_rounds} faces" for d in DETECTORS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
