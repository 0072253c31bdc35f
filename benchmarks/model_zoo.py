"""Parameters, training and inference throughput of every registered model on this CPU, in one table.

    python benchmarks/model_zoo.py [--models 'cnn*'] [--seconds 4] [--small]

Each model is measured at its default input (48x48 grayscale for the from-scratch
CNNs, the backbone's native size in RGB for the timm ones) with 7 classes;
`--small` adds the timm backbones at 48x48 grayscale with the small stem, the way
they are fine-tuned on FER crops. Training: forward, backward and an Adam step on
batches of 32; inference: eval-mode forward without gradients on batches of 64.
Every row is measured in the same run on random inputs, after warm-up steps.
"""

from __future__ import annotations

import argparse
import time

import torch

from ferlab.models import count_parameters, create_model, list_models, model_entry
from ferlab.models.transfer import BACKBONES


def _throughput(step, batch: int, seconds: float) -> float:
    """Images per second of `step`, timed for at least `seconds` after two warm-up calls."""
    for _ in range(2):
        step()
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds or done < 3:
        step()
        done += 1
    return done * batch / elapsed


def measure(name: str, input_size: int, channels: int, seconds: float) -> tuple[int, float, float]:
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_chans=channels, input_size=input_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x_train, y = torch.randn(32, channels, input_size, input_size), torch.randint(0, 7, (32,))

    def train_step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x_train), y).backward()
        optimizer.step()

    model.train()
    train = _throughput(train_step, 32, seconds)
    model.eval()
    x_eval = torch.randn(64, channels, input_size, input_size)
    with torch.inference_mode():
        infer = _throughput(lambda: model(x_eval), 64, seconds)
    return count_parameters(model), train, infer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="*", help="name pattern (default: every registered model)")
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per measurement")
    parser.add_argument("--small", action="store_true", help="also the timm backbones at 48x48x1, small stem")
    args = parser.parse_args()
    rows = []
    for name in list_models(args.models):
        prep = model_entry(name).preprocessing
        try:
            rows.append((name, prep.input_size, prep.channels, *measure(name, prep.input_size, prep.channels, args.seconds)))
        except Exception as err:  # e.g. an ensemble, which needs members
            print(f"skipped {name}: {err}")
    if args.small:
        for name in BACKBONES:
            if name in list_models(args.models):
                rows.append((f"{name} (small stem)", 48, 1, *measure(name, 48, 1, args.seconds)))
    print(f"\n{torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print(f"{'model':28s} {'input':>9s} {'params':>13s} {'train img/s':>12s} {'infer img/s':>12s}")
    for name, size, channels, params, train, infer in rows:
        print(f"{name:28s} {size:>3d}x{size:<3d}x{channels} {params:13,d} {train:12.1f} {infer:12.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
