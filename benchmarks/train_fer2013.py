"""Train a model on FER2013 (train split) and report PublicTest accuracy, macro-F1, s/epoch and peak memory.

    python benchmarks/train_fer2013.py --model cnn3_bn --epochs 20

Uses ../shared/data/fer2013/fer2013-train-val.zip (or --data); skips cleanly when it is missing.
"""

from __future__ import annotations

import argparse
import csv
import resource
import statistics
import sys
from pathlib import Path

from ferlab.evaluation import evaluate
from ferlab.training import load_config, train

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/fer2013/fer2013-train-val.zip"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="cnn3_bn")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="new run folder (default runs/bench-MODEL-eEPOCHS-sSEED)")
    args = parser.parse_args()
    if not args.data.exists():
        print(f"skipped: {args.data} not found")
        return 0
    out = args.out or Path("runs") / f"bench-{args.model}-e{args.epochs}-s{args.seed}"
    cfg = load_config(values={
        "data.path": str(args.data), "model.name": args.model, "epochs": args.epochs,
        "patience": args.patience, "seed": args.seed, "out": str(out),
    })
    result = train(cfg)
    metrics = evaluate(result.run_dir, args.data, result.run_dir / "eval", split="val").to_dict()
    with open(result.run_dir / "metrics.csv", newline="") as handle:
        seconds = [float(row["seconds"]) for row in csv.DictReader(handle)]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [
        ("model", args.model),
        ("epochs run (max, patience)", f"{result.epochs_run} ({args.epochs}, {args.patience})"),
        ("best epoch", result.best_epoch),
        ("PublicTest accuracy", f"{metrics['accuracy']:.4f}"),
        ("PublicTest macro-F1", f"{metrics['macro_f1']:.4f}"),
        ("seconds/epoch (median, train+val)", f"{statistics.median(seconds):.1f}"),
        ("total seconds", f"{result.seconds:.0f}"),
        ("peak RSS (MB)", f"{peak_mb:.0f}"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"\n{'metric':{width}s} | value\n{'-' * width}-|------")
    for name, value in rows:
        print(f"{name:{width}s} | {value}")
    print("\nper-class recall: " + ", ".join(f"{c} {m['recall']:.2f}" for c, m in metrics["per_class"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
