"""ONNX Runtime's thread spinning: a bundled model's crops/s at batch 1 against YuNet's time per frame beside it.

    python benchmarks/onnx_threads.py [--model fast] [--rounds 3] [--yunet ../shared/models/yunet/...onnx]

Each policy runs in its own process (a spinning thread pool outlives its session and would slow the next
policy), the policies taking turns for `--rounds` rounds; the table gives the medians over the rounds.
`ferlab.models.onnx_runtime` uses the policy this measures best: spin during a run, stop when it returns.
The frame is noise at 640x360 (YuNet's cost does not depend on what it finds); skipped without a YuNet file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from fer_peer import calls_per_second  # beside this file
from ferlab.models.bundled import bundled_dir

ROOT = Path(__file__).resolve().parents[1]
SHARED_YUNET = ROOT.parent / "shared" / "models" / "yunet" / "face_detection_yunet_2023mar.onnx"
POLICIES = {
    "no spinning": {"session.intra_op.allow_spinning": "0"},
    "spinning (ORT default)": {"session.intra_op.allow_spinning": "1"},
    "spin, stop after run": {"session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "1"},
}


def _measure(policy: str, model: Path, yunet: Path, seconds: float) -> dict:
    """crops/s at batch 1 alone, then YuNet's and the classifier's median ms when they take turns."""
    options = ort.SessionOptions()
    for key, value in POLICIES[policy].items():
        options.add_session_config_entry(key, value)
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).integers(
        0, 256, (1, *session.get_inputs()[0].shape[1:]), dtype=np.uint8)}
    crops_per_s = calls_per_second(lambda: session.run(None, feed), seconds, windows=1)
    detector = cv2.FaceDetectorYN.create(str(yunet), "", (640, 360))
    frame = np.random.default_rng(1).integers(0, 256, (360, 640, 3), dtype=np.uint8)
    detect_ms, classify_ms = [], []
    for _ in range(300):
        tick = time.perf_counter()
        detector.detect(frame)
        tock = time.perf_counter()
        session.run(None, feed)
        detect_ms.append((tock - tick) * 1e3)
        classify_ms.append((time.perf_counter() - tock) * 1e3)
    return {"crops/s": crops_per_s, "yunet ms": statistics.median(detect_ms),
            "face ms": statistics.median(classify_ms)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fast", help="bundled model name or an exported .onnx file")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds of batch-1 runs per policy")
    parser.add_argument("--yunet", default=str(SHARED_YUNET), help="YuNet model file")
    parser.add_argument("--child", choices=list(POLICIES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    model = Path(args.model) if args.model.endswith(".onnx") else bundled_dir(args.model) / "model.onnx"
    if args.child:
        print(json.dumps(_measure(args.child, model, Path(args.yunet), args.seconds)))
        return 0
    if not Path(args.yunet).is_file():
        print(f"skipped: no YuNet model at {args.yunet}")
        return 0
    results: dict[str, list[dict]] = {policy: [] for policy in POLICIES}
    for _ in range(args.rounds):
        for policy in POLICIES:
            command = [sys.executable, __file__, "--child", policy, "--model", str(model), "--yunet", args.yunet,
                       "--seconds", str(args.seconds)]
            results[policy].append(json.loads(subprocess.run(command, check=True, capture_output=True,
                                                             text=True).stdout))
    print(f"{model}, batch 1; medians over {args.rounds} rounds (one process per policy and round)\n")
    print(f"{'policy':24s} {'crops/s':>8s} {'range':>12s} {'YuNet ms beside':>16s} {'face ms beside':>15s}")
    for policy, rows in results.items():
        speeds = [row["crops/s"] for row in rows]
        print(f"{policy:24s} {statistics.median(speeds):8.0f} {min(speeds):5.0f}-{max(speeds):<6.0f} "
              f"{statistics.median(r['yunet ms'] for r in rows):16.2f} "
              f"{statistics.median(r['face ms'] for r in rows):15.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
