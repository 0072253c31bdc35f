"""Training speed on this CPU: fp32 vs bf16 autocast, NCHW vs channels-last, and ferlab's loop vs a bare one.

    python benchmarks/train_speed.py [--data fer2013-train-val.zip] [--images 8192] [--steps 12]
                                     [--models cnn3_bn deep_cnn vgg_fer] [--batch-size 64]

Two tables, measured side by side in one run (run it with nothing else on the machine):
1. img/s of training steps (forward, backward, SGD step; batch 64) for the zoo's 48-px models
   and the crop recipe's vgg_fer (global-pooled head, 40-px crops), in fp32 and under bf16
   autocast, each in NCHW and channels-last, with the ratio of the best to fp32 NCHW.
2. one epoch (train + validation) of `ferlab train` on the crop recipe's model and
   augmentation, against a bare PyTorch loop over the same model, data loader, precision,
   memory format and batch size, and the data loader alone (decoded images, augmentation,
   crop, normalisation): the ratio ferlab / bare (aim <= 1.2) and the loader's share of a step.
The data is --images images of the FER2013 zip when it is there, else generated 48x48 faces.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from torch.utils.data import DataLoader

from ferlab.data import ImageDataset, build_augmentation, open_dataset, prepare_splits
from ferlab.data.splits import subsample
from ferlab.models import create_model, load_model
from ferlab.training import load_config, train
from ferlab.training.speed import bf16_supported, resolve_speed

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared/data/fer2013/fer2013-train-val.zip"
RECIPE = ROOT / "configs/crop/vgg_fer-half.yaml"
#: (name, builder options, input side): the zoo at its 48-px default, and the crop recipe's candidates.
ZOO = [
    ("baseline_cnn", {}, 48), ("cnn3_bn", {}, 48), ("cnn5_leaky", {}, 48), ("deep_cnn", {}, 48), ("cnn11", {}, 48),
    ("mini_xception", {}, 48), ("vgg_fer", {"width": 0.5, "pool": True, "fc": 256}, 40),
    ("vgg_fer", {"pool": True, "fc": 256}, 40),
]
EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
MODES = [("fp32", False, False), ("fp32 CL", False, True), ("bf16", True, False), ("bf16 CL", True, True)]


def _autocast(bf16: bool) -> contextlib.AbstractContextManager:
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def step_rate(name: str, kwargs: dict, size: int, bf16: bool, channels_last: bool, steps: int, batch: int) -> float:
    """Training images per second of `steps` SGD steps on random batches, after two warm-up steps."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = create_model(name, num_classes=7, input_size=size, **kwargs).to(memory_format=fmt).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    images = torch.randn(batch, 1, size, size).contiguous(memory_format=fmt)
    targets = torch.randint(0, 7, (batch,))
    started = 0.0
    for i in range(steps + 2):
        if i == 2:
            started = time.perf_counter()
        with _autocast(bf16):
            loss = F.cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - started)


def zoo_table(steps: int, batch: int, names: list[str] | None) -> None:
    print(f"\n1. training steps, img/s at batch {batch} ({torch.get_num_threads()} threads)\n")
    print(f"{'model':34s}" + "".join(f"{label:>10s}" for label, _, _ in MODES) + f"{'best/fp32':>11s}")
    for name, kwargs, size in ZOO:
        if names and name not in names:
            continue
        rates = [step_rate(name, kwargs, size, bf16, cl, steps, batch) for _, bf16, cl in MODES
                 if bf16_supported() or not bf16]
        label = f"{name} {','.join(f'{k}={v}' for k, v in kwargs.items())} @{size}"
        print(f"{label:34s}" + "".join(f"{r:10.0f}" for r in rates) + f"{max(rates) / rates[0]:10.2f}x")


def _generated_tree(folder: Path, images: int) -> Path:
    """`images` 48x48 grayscale faces-like blobs in 7 class folders (train/ and val/), when FER2013 is absent."""
    rng = np.random.default_rng(0)
    for i in range(images):
        split = "val" if i % 10 == 0 else "train"
        target = folder / split / EMOTIONS[i % 7]
        target.mkdir(parents=True, exist_ok=True)
        coarse = rng.random((6, 6)) * 255
        Image.fromarray(coarse.astype(np.uint8)).resize((48, 48), Image.Resampling.BICUBIC).save(target / f"{i}.png")
    return folder


def _bare_epoch(model: torch.nn.Module, loaders: tuple[DataLoader, DataLoader], bf16: bool, fmt) -> float:
    """Seconds of one training pass and one validation pass, as plain PyTorch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)
    started = time.perf_counter()
    model.train()
    for images, targets in loaders[0]:
        with _autocast(bf16):
            loss = F.cross_entropy(model(images.contiguous(memory_format=fmt)), targets, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.inference_mode(), _autocast(bf16):
        for images, _ in loaders[1]:
            model(images.contiguous(memory_format=fmt))
    return time.perf_counter() - started


def loop_table(data: Path, images: int, batch: int) -> None:
    """One epoch of `ferlab train` on the crop recipe vs a bare loop vs the data loader alone."""
    with tempfile.TemporaryDirectory() as folder:
        if not data.exists():
            data = _generated_tree(Path(folder) / "faces", images)
        table = open_dataset(data)
        table = subsample(table, images, seed=0) if len(table) > images else table
        cfg = load_config(RECIPE, [f"data.batch_size={batch}", "epochs=1", "calibrate=false"],
                          {"data.path": str(data), "out": str(Path(folder) / "run"), "data.framing": None})
        precision, channels_last = resolve_speed(cfg.model.name, cfg.precision, cfg.channels_last)
        train(cfg, table=table)
        ferlab_seconds = float((Path(folder) / "run/metrics.csv").read_text().splitlines()[1].split(",")[-1])
        splits = prepare_splits(table, cfg.data.val_fraction, cfg.data.test_fraction, cfg.seed)
        classes = splits.classes()
        prep = load_model(Path(folder) / "run").meta.preprocessing  # the crop recipe's, as train resolved it
        train_set = ImageDataset(splits.split("train"), classes, prep, build_augmentation(cfg.data.augment))
        val_set = ImageDataset(splits.split("val"), classes, prep)
        loaders = (DataLoader(train_set, batch_size=batch, shuffle=True, drop_last=True),
                   DataLoader(val_set, batch_size=batch))
        started = time.perf_counter()
        for loader in loaders:
            for _ in loader:
                pass
        loader_seconds = time.perf_counter() - started
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model = create_model(cfg.model.name, num_classes=len(classes), input_size=prep.input_size,
                             **cfg.model.kwargs).to(memory_format=fmt)
        bare_seconds = _bare_epoch(model, loaders, precision == "bf16-mixed", fmt)
    print(f"\n2. one epoch of {len(train_set)} training + {len(val_set)} validation images, {cfg.model.name} "
          f"{cfg.model.kwargs}, crop {prep.input_size} of {prep.pixel_size}, {precision}, channels_last "
          f"{channels_last}, batch {batch}\n")
    print(f"{'loop':28s} {'seconds':>8s} {'img/s':>8s} {'ratio':>7s}")
    for label, seconds in (("ferlab train", ferlab_seconds), ("bare PyTorch loop", bare_seconds),
                           ("data loader alone", loader_seconds)):
        rate = (len(train_set) + len(val_set)) / seconds
        print(f"{label:28s} {seconds:8.1f} {rate:8.0f} {seconds / bare_seconds:6.2f}x")
    print(f"\nferlab / bare = {ferlab_seconds / bare_seconds:.2f}x; the loader's share of a bare epoch: "
          f"{loader_seconds / bare_seconds:.0%}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=8192, help="images for the epoch table")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per model and mode")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--models", nargs="*", help="only these zoo models in table 1")
    args = parser.parse_args()
    print(f"bf16 on this machine: {bf16_supported()}; CPU capability {torch.backends.cpu.get_cpu_capability()}")
    zoo_table(args.steps, args.batch_size, args.models)
    loop_table(args.data, args.images, args.batch_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
