"""Scan FER2013 (train + validation) for data problems; report speed, findings and duplicate groups.

    python benchmarks/scan_fer2013.py [--out runs/scan-fer2013]

Uses ../shared/data/fer2013/fer2013-train-val.zip (or --data); skips cleanly when it is missing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ferlab.data.scan import KINDS, scan, write_report

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/fer2013/fer2013-train-val.zip"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=None, help="also write scan.json and scan.txt here")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default one per CPU)")
    args = parser.parse_args()
    if not args.data.exists():
        print(f"skipped: {args.data} not found")
        return 0
    report = scan(args.data, workers=args.workers)
    if args.out:
        write_report(report, args.out)
    exact = [g for g in report.groups if g.kind == "exact"]
    near = [g for g in report.groups if g.kind == "near"]
    counts = report.counts()
    rows = [
        ("files", report.files),
        ("decoded images", report.images),
        ("workers", args.workers or os.cpu_count()),
        ("seconds", f"{report.seconds:.1f}"),
        ("images/s", f"{report.files / report.seconds:.0f}"),
        *((f"findings: {kind} ({severity})", counts[kind]) for kind, severity in KINDS.items()),
        ("exact duplicate groups", len(exact)),
        ("  of which cross-split", sum(g.cross_split for g in exact)),
        ("  files in them", sum(len(g.sources) for g in exact)),
        (f"near-duplicate groups (<= {report.near_threshold} bits)", len(near)),
        ("  of which cross-split", sum(g.cross_split for g in near)),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"\n{args.data.name}\n{'metric':{width}s} | value\n{'-' * width}-|------")
    for name, value in rows:
        print(f"{name:{width}s} | {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
