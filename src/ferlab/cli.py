"""The ``ferlab`` command: parses arguments and calls the library, nothing more."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from ferlab import __version__, _commands
from ferlab.errors import FerlabError
from ferlab.extras import missing_extra

log = logging.getLogger("ferlab")

TTA_CHOICES = ("none", "flip", "tencrop")  # ferlab.data.transforms.TTA_MODES, without importing torch for --help
TTA_HELP = "test-time augmentation (default: the model's own, listed by `ferlab models`)"
DETECTOR_CHOICES = ("auto", "yunet", "haar", "none")  # ferlab.inference.detect.DETECTORS, without importing OpenCV for --help
BACKEND_CHOICES = ("auto", "torch", "onnx")  # ferlab.inference.recognizer.BACKENDS
MAX_IMAGE_BYTES = 64 * 2**20  # ferlab.data.images.MAX_IMAGE_BYTES, without importing Pillow for --help

EXAMPLES = """examples:
  ferlab train --data fer2013-train-val.zip --model cnn3_bn --epochs 30 --out runs/cnn3
  ferlab train --config configs/cnn3_bn.yaml --out runs/cnn3 optim.lr=3e-4 data.classes=[angry,happy,neutral]
  ferlab train --data faces/ --model cnn5_leaky --out runs/c5 optim.label_smoothing=0.1 schedule.name=plateau
  ferlab train --resume runs/c5
  ferlab evaluate --model runs/cnn3 --data fer2013-train-val.zip --out runs/cnn3/eval
  ferlab report runs/cnn3
  ferlab predict photo.jpg                    # one line per face: file, face, box, label, confidence
  ferlab predict --model runs/cnn3 photos/ group.jpg --out predictions/ --detector yunet
  ferlab predict --model runs/cnn3 faces/ --detector none --out predictions/ --tta flip
  ferlab video clip.mp4 --model runs/cnn3 --out clip-emotions/ --stride 2
  ferlab serve --model runs/cnn3 --model runs/resnet   # web app on http://127.0.0.1:7860
  ferlab calibrate --model runs/old-cnn3 --data fer2013-train-val.zip --split val
  ferlab train --data faces/ --model resnet50 --image-size 48 --channels 1 --pretrained hub --freeze last:2
  ferlab ensemble runs/cnn3 runs/resnet --method mean --out runs/ensemble
  ferlab explain --model runs/cnn3 faces/ --out explain/ --class happy
  ferlab export --model runs/cnn3 --out cnn3.onnx --int8 --calibration fer2013-train-val.zip
  ferlab tune --space configs/search/cnn.yaml --data faces/ --out runs/tune --trials 20 --epochs 10
  ferlab data scan my-faces/ --out scan/ && ferlab data clean my-faces/ --quarantine quarantine/
  ferlab data split ckplus/ --ratios 70/10/20 --groups ckplus --out ckplus-split/
  ferlab models          # every registered architecture, and the bundled models with their TTA
  ferlab models vgg_fer  # one architecture's layers
  ferlab compare configs/compare/sgd_vs_adam.yaml --data fer2013-train-val.zip --out runs/sgd_vs_adam
  ferlab api --model runs/cnn3 --port 8000
"""

DATA_EXAMPLES = """examples:
  ferlab data scan fer2013-train-val.zip --out scan/
  ferlab data clean faces/ --quarantine faces-quarantine/
  ferlab data restore faces-quarantine/
  ferlab data stats fer2013-train-val.zip --out stats/
  ferlab data split faces/ --ratios 80/20 --subsample 5000 --out faces-small/ --format csv
  ferlab data split jaffe/ --kfold 5 --groups jaffe --out jaffe-folds/
  ferlab data preview faces/ --augment heavy,mixup=0 --out heavy.png
  ferlab data framing fer2013-train-val.zip --detector-model yunet.onnx --out framing.json
  ferlab data suspects fer2013-train-val.zip data.batch_size=128 --out suspects/ --folds 5 --epochs 10
"""


def _add_data_commands(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="scan, clean, describe, split, preview and find mislabelled images",
                               epilog=DATA_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    tools = data.add_subparsers(dest="data_command", required=True, metavar="TOOL")
    _add_cleaning_tools(tools)
    _add_dataset_tools(tools)
    _add_inspection_tools(tools)


def _add_cleaning_tools(tools: argparse._SubParsersAction) -> None:
    """`data scan`, `clean` and `restore`: find bad files, move them aside, put them back."""
    scan = tools.add_parser("scan", help="find unreadable, odd, tiny and duplicate images, and leakage between splits")
    scan.add_argument("path", help="class-folder tree or .zip of one")
    scan.add_argument("--out", required=True, help="folder for scan.json and scan.txt")
    scan.add_argument("--min-size", type=int, default=32, help="smallest usable side in pixels (default 32)")
    scan.add_argument("--near-threshold", type=int, default=4,
                      help="perceptual-hash bits (of 64) within which images count as near duplicates; -1: off")
    scan.add_argument("--max-bytes", type=int, default=MAX_IMAGE_BYTES,
                      help="files larger than this are reported as too_large, never read (default 64 MiB)")
    scan.set_defaults(run=_commands.run_data_scan)

    clean = tools.add_parser("clean", help="move what scan flags into a quarantine folder (never deletes)")
    clean.add_argument("path", help="class-folder tree")
    clean.add_argument("--quarantine", required=True, help="folder outside the tree that receives the files")
    clean.add_argument("--kinds", help="comma-separated finding kinds to move (default: all but near duplicates)")
    clean.add_argument("--report", help="scan.json (or its folder) to act on; default: scan PATH now")
    clean.set_defaults(run=_commands.run_data_clean)

    restore = tools.add_parser("restore", help="put every quarantined file back where it was")
    restore.add_argument("quarantine", help="quarantine folder written by clean")
    restore.set_defaults(run=_commands.run_data_restore)


def _add_dataset_tools(tools: argparse._SubParsersAction) -> None:
    """`data stats`, `split` and `preview`: describe a dataset, write splits of it, see its augmentation."""
    stats = tools.add_parser("stats", help="class counts per split, imbalance, a bar chart and sample images")
    stats.add_argument("path")
    stats.add_argument("--out", required=True, help="output folder")
    stats.add_argument("--per-class", type=int, default=8, help="sample images per class in samples.png")
    stats.add_argument("--seed", type=int, default=0)
    stats.set_defaults(run=_commands.run_data_stats)

    split = tools.add_parser("split", help="ratio, subject-aware or k-fold splits, subsets and merges, written out")
    split.add_argument("path")
    split.add_argument("--out", required=True, help="new folder")
    split.add_argument("--ratios", help="train/val/test such as 70/10/20, or train/test such as 80/20")
    split.add_argument("--kfold", type=int, help="k stratified folds (fold i is val in foldI/)")
    split.add_argument("--groups", help="subject pattern in file names: ckplus, jaffe, kdef or a regex with one group")
    split.add_argument("--subsample", type=int, help="keep N images, class and split shares kept")
    split.add_argument("--classes", help="comma-separated subset")
    split.add_argument("--merge", action="append", metavar="TARGET=CLASS[,CLASS]", help="relabel classes, e.g. angry=disgust")
    split.add_argument("--format", choices=("tree", "csv"), default="tree", help="class-folder copy or CSV manifest")
    split.add_argument("--seed", type=int, default=0)
    split.set_defaults(run=_commands.run_data_split)

    preview = tools.add_parser("preview", help="a PNG grid of augmented samples, to see a setting's strength")
    preview.add_argument("path")
    preview.add_argument("--augment", default="light", help="preset none|light|medium|heavy|photo, plus knobs: heavy,mixup=0")
    preview.add_argument("--out", help="PNG file (default augment-PRESET.png)")
    preview.add_argument("--images", type=int, default=6)
    preview.add_argument("--variants", type=int, default=7)
    preview.add_argument("--image-size", type=int, default=48)
    preview.add_argument("--channels", type=int, choices=(1, 3), default=1)
    preview.add_argument("--seed", type=int, default=0)
    preview.set_defaults(run=_commands.run_data_preview)


def _add_inspection_tools(tools: argparse._SubParsersAction) -> None:
    """`data framing` and `suspects`: how the crops frame faces, and which labels look wrong."""
    framing = tools.add_parser(
        "framing", help="measure how a dataset's crops frame faces (the face detector run over them), for data.framing")
    framing.add_argument("path", help="dataset of face crops")
    framing.add_argument("--out", required=True, help="JSON file to write (pass it to training as data.framing)")
    framing.add_argument("--detector", choices=("yunet", "haar"), action="append",
                         help="detector whose boxes are measured; repeat for several (default: yunet and haar)")
    framing.add_argument("--detector-model", "--detector-path", dest="detector_model", metavar="FILE",
                         help="YuNet .onnx file for --detector yunet")
    framing.add_argument("--limit", type=int, default=4000, help="crops measured (class shares kept; default 4000)")
    framing.add_argument("--split", default="train", help="split measured where the dataset has one (default train)")
    framing.add_argument("--seed", type=int, default=0)
    framing.set_defaults(run=_commands.run_data_framing)

    suspects = tools.add_parser("suspects", help="rank likely mislabelled images (confident learning on out-of-fold predictions)")
    suspects.add_argument("data_and_overrides", nargs="+", metavar="DATA [KEY=VALUE ...]",
                          help="dataset, then training config overrides right after it, e.g. data.batch_size=128")
    suspects.add_argument("--out", required=True, help="new folder, or an earlier run's with the same settings to continue it")
    suspects.add_argument("--folds", type=int, default=5, help="models trained, each predicting the fold it never saw")
    suspects.add_argument("--model", help="registered model name (default: the config's, else cnn3_bn)")
    suspects.add_argument("--epochs", type=int, help="epochs per fold (default: the config's, else 10)")
    suspects.add_argument("--config", help="training YAML (see configs/)")
    suspects.add_argument("--split", default="train", help="split to check (an unsplit dataset is checked whole)")
    suspects.add_argument("--models", nargs="+", metavar="MODEL",
                          help="score with these trained models (run folders, model files, exported .onnx, bundled "
                               "names) instead of training folds")
    suspects.add_argument("--gallery", type=int, default=64, help="suspects shown in suspects.png (0: none)")
    suspects.add_argument("--seed", type=int, help="folds and training seed (default: the config's, else 0)")
    suspects.set_defaults(run=_commands.run_data_suspects)


def _add_inference_options(parser: argparse.ArgumentParser, several_models: bool = False) -> None:
    parser.add_argument("--model", action="append" if several_models else "store",
                        help="fast or accurate (the bundled models; default fast), a run folder, "
                             "model .safetensors or exported .onnx"
                             + ("; repeat it to compare models" if several_models else ""))
    parser.add_argument("--detector", choices=DETECTOR_CHOICES, default="auto",
                        help="face detector; auto (default): yunet where its model file is at hand (--detector-model, "
                             "$FERLAB_YUNET or the user cache), else haar; yunet downloads it once when missing; "
                             "none: the images already are face crops")
    parser.add_argument("--detector-model", "--detector-path", dest="detector_model", metavar="FILE",
                        help="YuNet .onnx file for --detector yunet or auto (default: $FERLAB_YUNET, else the user "
                             "cache)")
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                        help="classify on torch, onnx (ONNX Runtime) or auto (onnx where the model exports)")
    parser.add_argument("--tta", choices=TTA_CHOICES, default=None, help=TTA_HELP)


def _add_photo_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detector", choices=DETECTOR_CHOICES, default="none",
                        help="none: the images are face crops (default); yunet or haar: they are whole photos, "
                             "the largest face of each is cut with the model's framing and classified")
    parser.add_argument("--detector-model", "--detector-path", dest="detector_model", metavar="FILE",
                        help="YuNet .onnx file for --detector yunet")
    _add_margin_option(parser)


def _add_margin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--margin", type=float,
                        help="expert: override the margin of the model's stored face framing (crop side = "
                             "(1 + margin) x the detector box's side; see `ferlab data framing`)")


def _add_listen_options(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=port, help=f"port (default {port})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ferlab", description="Facial expression recognition: train, evaluate, predict.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ferlab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train_command(commands)
    _add_evaluation_commands(commands)
    _add_prediction_commands(commands)
    _add_serving_commands(commands)
    _add_experiment_commands(commands)
    _add_model_commands(commands)
    _add_data_commands(commands)
    _add_examples(commands)
    return parser


def _add_train_command(commands: argparse._SubParsersAction) -> None:
    """`ferlab train`: its flags set config keys (``--lr`` is ``optim.lr``); KEY=VALUE sets any."""
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
    train.add_argument("--optimizer", choices=("sgd", "adam", "adamw", "rmsprop"))
    train.add_argument("--lr", type=float)
    train.add_argument("--seed", type=int)
    train.add_argument("--patience", type=int, help="early-stopping patience in epochs")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    train.add_argument("--precision", help="auto (default: bf16 where it is faster), 32, bf16-mixed or 16-mixed")
    train.add_argument("--devices", type=int, help="devices (GPUs or CPU processes); more than one trains with DDP")
    train.add_argument("--num-nodes", type=int, help="machines for multi-node DDP")
    train.add_argument("--pretrained", help="timm backbones: 'hub' (download once) or a local weights file")
    train.add_argument("--init", help="start from a saved model's weights (bundled name, run folder, .safetensors) "
                                      "of the same architecture: fine-tune it")
    train.add_argument("--freeze", help="none, backbone, last:N, first:N or gradual:K")
    train.add_argument("--augment", help="preset none|light|medium|heavy|photo, plus knobs: medium,rotation=20,mixup=0.2")
    train.add_argument("--balance", help="class imbalance: none, inverse or effective (loss weights), sampler, oversample")
    train.add_argument("--cache-dir", help="keep decoded pixels here for later runs")
    train.add_argument("--soft-labels", action="store_true", default=None,
                       help="train on vote shares where the data has them (FER+, a manifest's votes column)")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=3e-4")
    train.set_defaults(run=_commands.run_train)


def _add_evaluation_commands(commands: argparse._SubParsersAction) -> None:
    """`evaluate`, `report` and `calibrate`: a model measured on a dataset."""
    evaluate = commands.add_parser(
        "evaluate", help="metrics, plots and predictions of a model on a dataset; several models: a comparison",
        epilog="examples:\n  ferlab evaluate --model runs/cnn3 --data fer2013-train-val.zip --out runs/cnn3/eval --tta flip\n"
               "  ferlab evaluate --model runs/a runs/b --data rafdb/ --out compare-ab   # table + McNemar tests\n"
               "  ferlab evaluate --model runs/cnn3 --data ckplus/ --merge neutral=contempt --out ck-eval\n"
               "  ferlab evaluate --model fast accurate --data photos/ --detector yunet --out photo-eval   # whole photos",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    evaluate.add_argument("--model", nargs="+",
                          help="run folder(s), model .safetensors or exported .onnx file(s), or fast/accurate "
                               "(default fast)")
    evaluate.add_argument("--data", required=True, help="class-folder tree, .zip or FER2013 .csv")
    evaluate.add_argument("--out", required=True, help="output folder")
    evaluate.add_argument("--split", default="auto", help="auto (test, else val, else a bare tree whole), all, train, val or test")
    _add_photo_options(evaluate)
    evaluate.add_argument("--tta", choices=TTA_CHOICES, default=None, help=TTA_HELP)
    evaluate.add_argument("--merge", action="append", metavar="TARGET=CLASS[,CLASS]",
                          help="relabel the data's classes first, e.g. neutral=contempt; classes the model lacks are left out and reported")
    evaluate.set_defaults(run=_commands.run_evaluate)
    report = commands.add_parser("report", help="one self-contained HTML report and a markdown summary of a run")
    report.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by ferlab train")
    report.add_argument("--data", help="dataset to evaluate on (default: the run's own data)")
    report.add_argument("--out", help="output folder (default RUN_DIR/report)")
    report.add_argument("--split", default="auto", help="auto (test, else val, else a bare tree whole), all, train, val or test")
    report.add_argument("--tta", choices=TTA_CHOICES, default=None, help=TTA_HELP)
    _add_photo_options(report)
    report.set_defaults(run=_commands.run_report)
    calibrate = commands.add_parser(
        "calibrate", help="fit a model's temperature on held-out images and store it in the model",
        epilog="example (training calibrates on its val split already; this recalibrates, or calibrates older models):\n"
               "  ferlab calibrate --model runs/cnn3 --data rafdb/ --split val",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    calibrate.add_argument("--model", required=True,
                           help="run folder or model .safetensors (its model.json is updated), or an exported .onnx "
                                "(its embedded metadata is)")
    calibrate.add_argument("--data", required=True, help="class-folder tree, .zip or FER2013 .csv")
    calibrate.add_argument("--split", default="val", help="split to fit on (default val); not the test split you report")
    calibrate.add_argument("--out", help="folder for calibration.json and reliability.png (default MODEL_DIR/calibration)")
    calibrate.set_defaults(run=_commands.run_calibrate)


def _add_prediction_commands(commands: argparse._SubParsersAction) -> None:
    """`predict` and `video`: the bundled or a trained model on photos, clips and cameras."""
    predict = commands.add_parser("predict", help="find and classify the faces in photos; annotated copies, CSV and JSON")
    predict.add_argument("inputs", nargs="+", metavar="PATH", help="image files, folders or glob patterns")
    predict.add_argument("--out", help="output folder for predictions.csv, predictions.json and annotated copies "
                         "(default: none, one line per face on standard output: file, face, box x,y,w,h, label, confidence)")
    predict.add_argument("--json", action="store_true", help="print the predictions as JSON instead of lines")
    _add_inference_options(predict)
    _add_margin_option(predict)
    predict.set_defaults(run=_commands.run_predict)
    video = commands.add_parser(
        "video", help="track and classify the faces of a video or camera; annotated video, per-frame CSV, plot",
        epilog="examples:\n  ferlab video clip.mp4                                  # writes ./clip-ferlab/\n"
               "  ferlab video clip.mp4 --model runs/cnn3 --out clip/ --detector yunet --stride 2\n"
               "  ferlab video 0 --model runs/cnn3 --out webcam/ --show   # camera 0; q or Ctrl-C ends it",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    video.add_argument("input", metavar="INPUT", help="video file, or a camera index such as 0")
    video.add_argument("--out", help="output folder (default: <clip name>-ferlab/, or camera<N>-ferlab/, "
                                     "in the current folder)")
    _add_inference_options(video)
    _add_margin_option(video)
    video.add_argument("--stride", type=int, default=1, help="detect faces every N frames; between, reuse the boxes")
    video.add_argument("--smooth", type=float, default=0.6,
                       help="weight of each face's past probabilities, 0 (none) to below 1 (default 0.6)")
    video.add_argument("--cut-threshold", type=float, default=27.0,
                       help="mean HSV change (0-255) between frames that makes a scene cut, where every track ends "
                            "(default 27; 0: no cut detection)")
    video.add_argument("--min-segment", type=float, default=0.5,
                       help="seconds an expression segment of tracks.json lasts at least (default 0.5)")
    video.add_argument("--show", action="store_true", help="live window, where a display exists")
    video.add_argument("--max-frames", type=int, help="stop after N frames")
    video.set_defaults(run=_commands.run_video)


def _add_serving_commands(commands: argparse._SubParsersAction) -> None:
    """`serve` (the Gradio web app) and `api` (the REST API)."""
    serve = commands.add_parser(
        "serve", help="web app (Gradio): photos, the browser camera, videos, and models side by side",
        epilog="examples:\n  ferlab serve --model runs/cnn3   # then open http://127.0.0.1:7860\n"
               "  ferlab serve --model runs/cnn3 --model cnn3-int8.onnx --detector yunet   # adds a Compare tab",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_inference_options(serve, several_models=True)
    _add_listen_options(serve, port=7860)
    serve.add_argument("--share", action="store_true", help="also publish a temporary public gradio.live link")
    serve.set_defaults(run=_commands.run_serve)
    api = commands.add_parser(
        "api", help="REST API (FastAPI): POST /v1/predict, /v1/predict/batch; GET /v1/models, /health, /docs",
        epilog="examples:\n  ferlab api --model runs/cnn3 --port 8000\n"
               "  ferlab api --model runs/cnn3 --model runs/resnet   # POST /v1/predict?model=resnet\n"
               "  FERLAB_API_KEY=secret ferlab api --model cnn3.onnx --host 0.0.0.0  # clients send X-API-Key",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_listen_options(api, port=8000)
    _add_inference_options(api, several_models=True)
    api.set_defaults(run=_commands.run_api)


def _add_experiment_commands(commands: argparse._SubParsersAction) -> None:
    """`compare`, `reproduce` and `tune`: many training runs."""
    compare = commands.add_parser("compare", help="train a grid of configs over seeds; a table and overlaid curves",
                                  epilog="example (overrides right after the grid):\n  ferlab compare configs/compare/sgd_vs_adam.yaml "
                                         "epochs=5 --data fer2013-train-val.zip --out runs/sgd_vs_adam",
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    compare.add_argument("grid_and_overrides", nargs="+", metavar="GRID [KEY=VALUE ...]",
                         help="grid YAML (see configs/compare/), then overrides for every run, e.g. epochs=5")
    compare.add_argument("--data", required=True)
    compare.add_argument("--out", required=True, help="folder for runs/ and the tables; re-running continues it")
    compare.add_argument("--no-resume", action="store_true", help="refuse finished runs instead of reusing them")
    compare.set_defaults(run=_commands.run_compare)
    reproduce = commands.add_parser(
        "reproduce", help="rebuild a model from scratch: every stage of a recipe (configs/recipes/), resumable",
        epilog="example (the bundled fast: its teacher's two stages, then fast itself; settings right after the "
               "recipe):\n  ferlab reproduce configs/recipes/fast.yaml data.cache_dir=cache --data fer2013-train-val.zip "
               "--out runs/reference",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    reproduce.add_argument("recipe_and_overrides", nargs="+", metavar="RECIPE [KEY=VALUE ...]",
                           help="recipe YAML (stages, each a config and the earlier stages it starts from), then "
                                "settings for every stage, e.g. data.cache_dir=cache (give the same ones again)")
    reproduce.add_argument("--data", required=True)
    reproduce.add_argument("--out", required=True, help="one run folder per stage; re-running carries on")
    reproduce.add_argument("--status", action="store_true", help="say where each stage stands; train nothing")
    reproduce.set_defaults(run=_commands.run_reproduce)
    tune = commands.add_parser("tune", help="hyperparameter search with Optuna; resumable, shareable between workers")
    tune.add_argument("--space", required=True, help="search-space YAML (see configs/search/)")
    tune.add_argument("--data", required=True)
    tune.add_argument("--out", required=True, help="folder for trials, study.db, trials.csv, best.yaml and plots")
    tune.add_argument("--trials", type=int, required=True, help="finished trials the study should hold")
    tune.add_argument("--sampler", choices=("tpe", "grid", "random"), default="tpe")
    tune.add_argument("--storage", help="database URL shared by workers, e.g. postgresql://user@host/db "
                                        "(default: sqlite in OUT)")
    tune.add_argument("--study", help="study name (default: the space file's name)")
    tune.add_argument("--epochs", type=int, help="epochs per trial")
    tune.add_argument("--seed", type=int, default=0)
    tune.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    tune.add_argument("--no-prune", action="store_true", help="let every trial run to the end")
    tune.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="fixed config overrides for every trial")
    tune.set_defaults(run=_commands.run_tune)


def _add_model_commands(commands: argparse._SubParsersAction) -> None:
    """`models`, `ensemble`, `explain` and `export`: models listed, combined, explained and exported."""
    models = commands.add_parser("models", help="list registered models, or show one model's layers")
    models.add_argument("pattern", nargs="?", default="*", help="a model name (shows its layers) or a filter such as 'cnn*'")
    models.set_defaults(run=_commands.run_models)
    ensemble = commands.add_parser(
        "ensemble", help="combine trained models by (weighted) probability averaging or majority vote",
        description="A stacking ensemble (a head trained on the members' features) is trained with "
                    "`ferlab train --model ensemble model.kwargs.members=[runs/a,runs/b] model.kwargs.method=stacking`.",
    )
    ensemble.add_argument("members", nargs="+", metavar="MODEL", help="run folders or model .safetensors files")
    ensemble.add_argument("--method", choices=("mean", "vote"), default="mean")
    ensemble.add_argument("--weights", help="comma-separated member weights, e.g. 0.6,0.4")
    ensemble.add_argument("--out", required=True, help="new folder for the ensemble model")
    ensemble.set_defaults(run=_commands.run_ensemble)
    explain = commands.add_parser("explain", help="Grad-CAM heat maps: which face regions drove each prediction")
    explain.add_argument("--model", required=True, help="run folder or model .safetensors (not an ensemble)")
    explain.add_argument("inputs", nargs="+", metavar="PATH", help="face-crop image files, folders or glob patterns")
    explain.add_argument("--out", required=True, help="new output folder")
    explain.add_argument("--class", dest="class_label", metavar="LABEL",
                         help="explain this class instead of each image's predicted one")
    explain.add_argument("--layer", help="module to explain, e.g. 8 (see `ferlab models NAME`; "
                                         "default: the last convolution with a spatial output)")
    explain.set_defaults(run=_commands.run_explain)
    export = commands.add_parser(
        "export", help="write a model as one ONNX file (preprocessing and labels inside) for ONNX Runtime",
        epilog="examples:\n  ferlab export --model runs/cnn3 --out cnn3.onnx\n"
               "  ferlab export --model runs/cnn3 --out cnn3-int8.onnx --int8 --calibration fer2013-train-val.zip\n"
               "  ferlab export --model cnn3.onnx --out cnn3-int8.onnx --int8 --calibration faces/   # from an export",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    export.add_argument("--model", required=True,
                        help="run folder, model .safetensors, bundled name, or an fp32 .onnx export (with --int8)")
    export.add_argument("--out", required=True, help="the .onnx file to write (an earlier export there is replaced)")
    export.add_argument("--force", action="store_true", help="replace --out even if it is not a ferlab ONNX export")
    export.add_argument("--format", choices=("onnx",), default="onnx", help="export format (only onnx so far)")
    export.add_argument("--int8", action="store_true", help="quantise weights and activations to int8 (static)")
    export.add_argument("--calibration", metavar="DATA",
                        help="dataset whose images (256 at most) calibrate --int8 and check parity (default: generated images)")
    export.set_defaults(run=_commands.run_export)


def _add_examples(commands: argparse._SubParsersAction) -> None:
    """Give every subcommand without examples of its own the lines of `EXAMPLES` (or `DATA_EXAMPLES`) that use it."""
    for name, sub in commands.choices.items():
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        for action in nested:
            _add_examples(action)
        prefix = f"ferlab {sub.prog.split(' ', 1)[1]} " if " " in sub.prog else f"ferlab {name} "
        lines = [line for line in (EXAMPLES + DATA_EXAMPLES).splitlines() if line.strip().startswith(prefix)]
        if sub.epilog is None and lines:
            sub.epilog = "examples:\n" + "\n".join(dict.fromkeys(lines))
            sub.formatter_class = argparse.RawDescriptionHelpFormatter


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at each message, not the stream of the first call to `main`.

    A library user (or a test) who calls `main` again after replacing sys.stderr would
    otherwise log into a closed stream.
    """

    @property
    def stream(self) -> TextIO:  # logging.StreamHandler reads and sets this attribute
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Only ferlab's own logger: Lightning already prints its messages through its own handler.
    if not log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        status = args.run(args)  # None, or an exit status of its own
    except FerlabError as err:
        print(f"ferlab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        message = missing_extra(err)
        if message is None:
            raise
        print(f"ferlab {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ferlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and cut short; Python's documented remedy
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
