"""The ``ferlab`` command: parses arguments and calls the library, nothing more."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ferlab import __version__
from ferlab.errors import FerlabError

log = logging.getLogger("ferlab")

EXAMPLES = """examples:
  ferlab train --data fer2013-train-val.zip --model cnn3_bn --epochs 30 --out runs/cnn3
  ferlab train --config configs/cnn3_bn.yaml --out runs/cnn3 optim.lr=3e-4 data.classes=[angry,happy,neutral]
  ferlab evaluate --model runs/cnn3 --data fer2013-train-val.zip --out runs/cnn3/eval
  ferlab predict --model runs/cnn3 faces/ photo.jpg --out predictions/
"""


def _train(args: argparse.Namespace) -> None:
    from ferlab.training import load_config, train

    flags = {
        "data.path": args.data, "model.name": args.model, "epochs": args.epochs, "out": args.out,
        "data.classes": args.classes.split(",") if args.classes else None,
        "data.batch_size": args.batch_size, "data.image_size": args.image_size, "data.channels": args.channels,
        "optim.name": args.optimizer, "optim.lr": args.lr, "seed": args.seed, "patience": args.patience,
    }
    cfg = load_config(args.config, args.overrides, {k: v for k, v in flags.items() if v is not None})
    result = train(cfg)
    print(f"best val accuracy {result.best_val_acc:.4f} (epoch {result.best_epoch} of {result.epochs_run}); "
          f"model in {result.run_dir}")


def _evaluate(args: argparse.Namespace) -> None:
    from ferlab.evaluation import evaluate

    metrics = evaluate(args.model, args.data, args.out, split=args.split)
    print(f"{metrics['samples']} images: accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}; "
          f"written to {args.out}")


def _predict(args: argparse.Namespace) -> None:
    from ferlab.inference import predict_files

    predictions = predict_files(args.model, args.inputs, args.out)
    for p in predictions[:20]:
        print(f"{p.source}\t{p.label}\t{p.probs[p.label]:.3f}")
    if len(predictions) > 20:
        print(f"... {len(predictions) - 20} more")
    print(f"{len(predictions)} predictions written to {args.out}")


def _models(args: argparse.Namespace) -> None:
    from ferlab.models import list_models, model_entry

    for name in list_models(args.pattern):
        entry = model_entry(name)
        prep = entry.preprocessing
        print(f"{name:16s} {prep.input_size}x{prep.input_size}x{prep.channels}  {entry.description}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ferlab", description="Facial expression recognition: train, evaluate, predict.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ferlab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model; writes a run folder",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--config", help="YAML config (see configs/)")
    train.add_argument("--data", help="class-folder tree, .zip of one, or FER2013 .csv")
    train.add_argument("--model", help="registered model name (ferlab models)")
    train.add_argument("--epochs", type=int)
    train.add_argument("--out", help="new run folder")
    train.add_argument("--classes", help="comma-separated subset, e.g. angry,happy,neutral")
    train.add_argument("--batch-size", type=int)
    train.add_argument("--image-size", type=int, help="input side in pixels (model default: 48)")
    train.add_argument("--channels", type=int, choices=(1, 3))
    train.add_argument("--optimizer", choices=("adam", "sgd"))
    train.add_argument("--lr", type=float)
    train.add_argument("--seed", type=int)
    train.add_argument("--patience", type=int, help="early-stopping patience in epochs")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=3e-4")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="metrics, confusion matrix and predictions of a model on a dataset")
    evaluate.add_argument("--model", required=True, help="run folder or model .safetensors")
    evaluate.add_argument("--data", required=True, help="class-folder tree, .zip or FER2013 .csv")
    evaluate.add_argument("--out", required=True, help="output folder")
    evaluate.add_argument("--split", default="auto", help="auto (test, else val, else a bare tree whole), all, train, val or test")
    evaluate.set_defaults(run=_evaluate)

    predict = commands.add_parser("predict", help="classify face-crop images; writes CSV and JSON")
    predict.add_argument("--model", required=True, help="run folder or model .safetensors")
    predict.add_argument("inputs", nargs="+", metavar="PATH", help="image files, folders or glob patterns")
    predict.add_argument("--out", required=True, help="output folder")
    predict.set_defaults(run=_predict)

    models = commands.add_parser("models", help="list registered models")
    models.add_argument("pattern", nargs="?", default="*", help="name filter, e.g. 'cnn*'")
    models.set_defaults(run=_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Only ferlab's own logger: Lightning already prints its messages through its own handler.
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        args.run(args)
    except FerlabError as err:
        print(f"ferlab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ferlab {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
