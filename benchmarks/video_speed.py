"""`ferlab video` before and after a change, side by side: fps, tracks and output sizes on real clips.

    python benchmarks/video_speed.py [--baseline REV] [--after REV] [--model fast] [--wild ../shared/data/wild]

The baseline's ``src/`` (and the ``--after`` revision's, when given instead of the work tree) is
taken out of git (``git archive REV src``: nothing in the work tree changes) and each clip runs through `process_video` once per round with each version in turn,
in fresh processes (``PYTHONPATH`` picks the version), so a background load slows both alike.
A round's fps is frames over the whole `process_video` call (decode, detect, classify, track,
smooth, draw, encode, CSV, plot) with the model already loaded; the best round is shown.
Skips with a message when the shared media are missing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared"
#: The last commit before issue 19 (mp4v writer, IoU tracker): "today" in the issue's figures.
BASELINE = "916bf2e"
SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")


def _worker(model: str, clip: str, out: str, detector: str, yunet: str, stride: int) -> None:
    """Runs in a child process: one clip through whichever ferlab ``PYTHONPATH`` selects; prints JSON."""
    from ferlab.inference import Recognizer
    from ferlab.inference.video import process_video

    recognizer = Recognizer(model, detector, detector_path=yunet if detector == "yunet" else None)
    started = time.perf_counter()
    result = process_video(recognizer.model, clip, out, detector=recognizer.detector, stride=stride)
    seconds = time.perf_counter() - started
    print(json.dumps({"frames": result.frames, "seconds": seconds, "tracks": len(result.tracks),
                      "video": result.video.name, "bytes": result.video.stat().st_size}))


def _run(src: Path, args: argparse.Namespace, clip: Path, out: Path) -> dict:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from video_speed import _worker; "
            "_worker(*sys.argv[2:7], int(sys.argv[7]))")
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), args.model, str(clip), str(out),
                           args.detector, str(args.yunet), str(args.stride)],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{clip.name} with {src}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _extract(revision: str, folder: Path) -> Path:
    """``src/`` of `revision` written under `folder`; its path."""
    folder.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "src"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "src"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE, help=f"git revision to compare with (default {BASELINE})")
    parser.add_argument("--after", help="git revision to measure instead of the work tree")
    parser.add_argument("--model", default="fast", help="bundled model name, run folder or model file")
    parser.add_argument("--wild", type=Path, default=SHARED / "data" / "wild", help="folder of clips")
    parser.add_argument("--yunet", type=Path, default=SHARED / "models" / "yunet" / "face_detection_yunet_2023mar.onnx")
    parser.add_argument("--detector", default="yunet")
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each version on each clip; the best is shown")
    args = parser.parse_args()
    clips = sorted(p for p in args.wild.glob("*") if p.suffix.lower() in SUFFIXES)
    if not clips:
        print(f"no clips in {args.wild}; skipped")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        versions = {"before": _extract(args.baseline, Path(tmp) / "before"),
                    "after": _extract(args.after, Path(tmp) / "after") if args.after else ROOT / "src"}
        print(f"{args.model}, {args.detector}, stride {args.stride}; before = {args.baseline}, "
              f"after = {args.after or 'work tree'}; "
              f"best of {args.rounds}\n")
        print(f"{'clip':28s} {'frames':>6s} {'fps before':>10s} {'fps after':>10s} {'after/before':>12s} "
              f"{'tracks b/a':>10s} {'video before':>20s} {'video after':>20s}")
        for clip in clips:
            best: dict[str, dict] = {}
            for round_ in range(args.rounds):
                for name, src in versions.items():
                    got = _run(src, args, clip, Path(tmp) / f"{clip.stem}-{name}-{round_}")
                    if name not in best or got["seconds"] < best[name]["seconds"]:
                        best[name] = got
            fps = {n: r["frames"] / r["seconds"] for n, r in best.items()}
            sizes = {n: f"{r['video']} {r['bytes'] / 1e6:.2f} MB" for n, r in best.items()}
            print(f"{clip.name:28s} {best['after']['frames']:6d} {fps['before']:10.1f} {fps['after']:10.1f} "
                  f"{fps['after'] / fps['before']:11.2f}x {best['before']['tracks']:>4d}/{best['after']['tracks']:<5d} "
                  f"{sizes['before']:>20s} {sizes['after']:>20s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
