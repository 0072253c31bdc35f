"""Face crops per second: PyTorch vs ONNX Runtime fp32 vs ONNX Runtime int8, at batch 1 and 64, in one table.

    python benchmarks/inference_speed.py [--model runs/cnn3] [--seconds 3] [--rounds 3] [--threads 2]
                                         [--calibration fer2013-train-val.zip] [--quick]

Each backend runs the full prediction call, `predict_proba` on uint8 crops as
`to_pixels` makes them (normalisation, forward pass, temperature, softmax), so
the figures are what the Recognizer gets. Without --model, a freshly initialised
cnn3_bn with FER2013's seven classes (random weights cost the same as trained
ones). The backends are measured side by side: each round times every backend
and batch in turn, so a background load slows them alike; the table sums the rounds.
Ratios are against PyTorch at the same batch size. --quick: one short round, a smoke test.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ferlab.data.labels import EMOTIONS
from ferlab.models import LoadedModel, ModelMeta, build_model, load_model, model_entry
from ferlab.models.onnx import OnnxModel, dataset_pixels, export_onnx

BATCHES = (1, 64)


def _timed(step: Callable[[], object], seconds: float) -> tuple[int, float]:
    """(calls, elapsed seconds) of `step` run for at least `seconds`, after one warm-up call."""
    step()
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds or calls < 2:
        step()
        calls += 1
    return calls, elapsed


def _model(path: str | None) -> LoadedModel:
    if path:
        return load_model(path)
    meta = ModelMeta("cnn3_bn", EMOTIONS[:7], model_entry("cnn3_bn").preprocessing)
    torch.manual_seed(0)
    return LoadedModel(build_model(meta).eval(), meta)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="run folder or model .safetensors (default: a fresh cnn3_bn)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per backend, batch and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every backend and batch")
    parser.add_argument("--threads", type=int, help="threads for both runtimes (default: each runtime's own)")
    parser.add_argument("--calibration", metavar="DATA",
                        help="dataset to calibrate int8 on (default: generated images)")
    parser.add_argument("--quick", action="store_true", help="one round of 0.2 s: checks the script runs")
    args = parser.parse_args()
    seconds, rounds = (0.2, 1) if args.quick else (args.seconds, args.rounds)
    if args.threads:
        torch.set_num_threads(args.threads)

    model = _model(args.model)
    prep = model.meta.preprocessing
    calibration = dataset_pixels(args.calibration, prep) if args.calibration else None
    with tempfile.TemporaryDirectory() as folder:
        fp32 = OnnxModel.load(export_onnx(model, Path(folder) / "fp32.onnx"), threads=args.threads)
        int8 = OnnxModel.load(export_onnx(model, Path(folder) / "int8.onnx", int8=True, calibration=calibration),
                              threads=args.threads)
    backends = {"pytorch": model, "onnxruntime fp32": fp32, "onnxruntime int8": int8}

    generator = torch.Generator().manual_seed(0)
    crops = torch.randint(0, 256, (max(BATCHES), prep.channels, prep.input_size, prep.input_size),
                          dtype=torch.uint8, generator=generator)  # (64, C, S, S)
    totals = {(name, batch): [0, 0.0] for name in backends for batch in BATCHES}
    for _ in range(rounds):
        for batch in BATCHES:
            for name, backend in backends.items():
                calls, elapsed = _timed(lambda b=backend, n=batch: b.predict_proba(crops[:n]), seconds)
                totals[name, batch][0] += calls * batch
                totals[name, batch][1] += elapsed

    threads = (f"{args.threads} threads" if args.threads
               else f"torch {torch.get_num_threads()} threads, onnxruntime default")
    print(f"\n{model.meta.architecture}, {prep.input_size}x{prep.input_size}x{prep.channels}, "
          f"{len(model.classes)} classes; {threads}; {rounds} round(s) of {seconds:g} s\n")
    print(f"{'backend':18s} {'batch':>5s} {'crops/s':>10s} {'vs pytorch':>10s}")
    for batch in BATCHES:
        base = totals["pytorch", batch][0] / totals["pytorch", batch][1]
        for name in backends:
            crops_done, elapsed = totals[name, batch]
            rate = crops_done / elapsed
            print(f"{name:18s} {batch:5d} {rate:10.0f} {rate / base:9.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
