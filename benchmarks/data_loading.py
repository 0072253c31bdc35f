"""Data throughput on FER2013's training split: first epoch (decoding) vs later epochs and later runs (cached).

    python benchmarks/data_loading.py [--data PATH] [--batch-size 64]

Rows, measured side by side in one run:
- decode: every image read from the zip and decoded once (what a run's first epoch costs);
- disk cache, cold/warm: decoding + writing the pixel cache, then a later run reading it back
  (content key included: the zip's CRCs are read, no JPEG is decoded);
- epoch, augmentation none/light/medium/heavy: one pass of the DataLoader over the decoded
  tensor, i.e. what every epoch after the first costs in data work (no model).
Skips cleanly when ../shared/data/fer2013/fer2013-train-val.zip (or --data) is missing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ferlab.data import AugmentConfig, ImageDataset, Preprocessing, build_augmentation, open_dataset

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/fer2013/fer2013-train-val.zip"


def _timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    if not args.data.exists():
        print(f"skipped: {args.data} not found")
        return 0
    torch.set_num_threads(1)
    table = open_dataset(args.data).split("train")
    classes, prep = table.classes(), Preprocessing()
    n = len(table)
    rows = []
    decoded, seconds = _timed(lambda: ImageDataset(table, classes, prep))
    rows.append(("decode (first epoch)", seconds))
    with tempfile.TemporaryDirectory() as cache:
        _, seconds = _timed(lambda: ImageDataset(table, classes, prep, cache_dir=cache))
        rows.append(("disk cache, cold (decode + write)", seconds))
        cached, seconds = _timed(lambda: ImageDataset(table, classes, prep, cache_dir=cache))
        rows.append(("disk cache, warm (later run)", seconds))
    assert torch.equal(decoded.pixels, cached.pixels)
    for preset in ("none", "light", "medium", "heavy"):
        decoded.augment = build_augmentation(AugmentConfig(preset=preset))
        loader = DataLoader(decoded, batch_size=args.batch_size, shuffle=True)
        _, seconds = _timed(lambda loader=loader: sum(len(targets) for _, targets in loader))
        rows.append((f"epoch, augmentation {preset}", seconds))
    print(f"FER2013 train split: {n} images, {args.data.name}, batch {args.batch_size}, 1 thread\n")
    print(f"{'step':36s} {'seconds':>8s} {'images/s':>10s} {'vs decode':>10s}")
    base = rows[0][1]
    for name, seconds in rows:
        print(f"{name:36s} {seconds:8.2f} {n / seconds:10.0f} {base / seconds:9.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
