"""What each ``ferlab`` subcommand does with its parsed arguments: call the library, print the outcome.

`ferlab.cli` builds the parser and sets each subcommand's ``run`` to one of these.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from ferlab.errors import FerlabError
from ferlab.rundir import RunDir

log = logging.getLogger("ferlab")

#: Share of images on which an export may change the top answer before `ferlab export` warns.
MAX_EXPORT_DISAGREEMENT = 0.01


def run_train(args: argparse.Namespace) -> int | None:
    """Train or resume; a run stopped by a signal exits with the shell's status for it and says how to go on."""
    from ferlab.training import TrainingInterrupted

    try:
        _train_or_resume(args)
    except TrainingInterrupted as stop:
        print(f"ferlab train: stopped by {stop.signal.name}; the run keeps its finished epochs, continue it with: "
              f"ferlab train --resume {shlex.quote(str(stop.run_dir))}", file=sys.stderr)
        return stop.code
    return None


#: The `ferlab train` flags (argparse dests) that set one config key each; tests check that both sides exist.
TRAIN_FLAGS = {
    "data": "data.path", "model": "model.name", "epochs": "epochs", "out": "out", "classes": "data.classes",
    "batch_size": "data.batch_size", "image_size": "data.image_size", "channels": "data.channels",
    "optimizer": "optim.name", "lr": "optim.lr", "seed": "seed", "patience": "patience",
    "pretrained": "model.pretrained", "init": "model.init", "freeze": "model.freeze", "precision": "precision", "devices": "devices",
    "num_nodes": "num_nodes", "balance": "data.balance", "cache_dir": "data.cache_dir",
    "soft_labels": "data.soft_labels",
}


def _train_or_resume(args: argparse.Namespace) -> None:

    from ferlab.training import load_config, resume, train

    flags = {key: getattr(args, dest) for dest, key in TRAIN_FLAGS.items()}
    if args.classes:
        flags["data.classes"] = args.classes.split(",")
    if args.augment:
        from dataclasses import asdict

        from ferlab.data import AugmentConfig

        flags.update({f"data.augment.{k}": v for k, v in asdict(AugmentConfig.parse(args.augment)).items()})
    given = {k: v for k, v in flags.items() if v is not None}
    if args.resume:
        stored = RunDir(args.resume).config
        asked = args.config or args.overrides or given
        # Settings given with --resume must match the run's own: resume() names any that differ.
        wanted = load_config(args.config or stored, args.overrides, given) if asked and stored.is_file() else None
        result = resume(args.resume, wanted=wanted)
    else:
        result = train(load_config(args.config, args.overrides, given))
    print(f"best val accuracy {result.best_val_acc:.4f} (epoch {result.best_epoch} of {result.epochs_run}); "
          f"model in {result.run_dir}")


def _photo_options(args: argparse.Namespace) -> dict:
    """evaluate_model's options for whole photos: the detector, its file and a margin override."""
    if args.detector == "none":
        return {"margin": args.margin} if args.margin is not None else {}
    return {"detector": args.detector, "detector_path": args.detector_model, "margin": args.margin}


def run_evaluate(args: argparse.Namespace) -> None:
    from ferlab.evaluation import compare_models, evaluate

    args.model = args.model or [_inference_model(args)]
    photos = _photo_options(args)
    if len(args.model) > 1:
        result = compare_models(args.model, args.data, args.out, split=args.split, tta=args.tta,
                                merge=_merges(args.merge), **photos)
        print(result.markdown, end="")
        print(f"comparison.md, comparison.csv and one evaluation folder per model written to {args.out}")
        return
    metrics = evaluate(args.model[0], args.data, args.out, split=args.split, tta=args.tta, merge=_merges(args.merge),
                       **photos).to_dict()
    found = ""
    if "detection_rate" in metrics:
        found = (f"{metrics['photos']} photos, a face found in {metrics['detection_rate']:.1%} "
                 f"({metrics['no_face']} without, counted as errors); ")
    print(f"{found}{metrics['samples']} faces: accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}, "
          f"ECE {metrics['ece']:.4f}; written to {args.out}")
    if metrics["left_out"]:
        print(f"left out (classes the model does not predict): {metrics['left_out']}")


def run_report(args: argparse.Namespace) -> None:
    from ferlab.evaluation import report

    result = report(args.run_dir, data=args.data, out=args.out, split=args.split, tta=args.tta, **_photo_options(args))
    print(f"{result.metrics['samples']} images: accuracy {result.metrics['accuracy']:.4f}, "
          f"macro-F1 {result.metrics['macro_f1']:.4f}; report in {result.html} and {result.markdown}")


def _inference_model(args: argparse.Namespace) -> str:
    from ferlab.models.bundled import DEFAULT_MODEL

    return args.model or DEFAULT_MODEL


def _inference_models(args: argparse.Namespace) -> list[str]:
    return args.model or [_inference_model(args)]


def run_predict(args: argparse.Namespace) -> None:
    from ferlab.inference.files import expand_inputs
    from ferlab.inference.recognizer import Recognizer

    paths = expand_inputs(args.inputs)  # before the model: a mistyped path fails at once, not after the load
    recognizer = Recognizer(_inference_model(args), args.detector, backend=args.backend, tta=args.tta,
                            detector_path=args.detector_model, margin=args.margin)
    found = recognizer.predict_files(paths, args.out)
    if args.json:
        print(json.dumps({"classes": list(found.classes), "backend": found.backend,
                          "predictions": [p.to_dict() for p in found.predictions],
                          "images": [{"source": source, "faces": n} for source, n in found.faces.items()],
                          "unreadable": [{"source": s, "error": e} for s, e in found.unreadable.items()]}, indent=2))
        return
    shown = found.predictions if args.out is None else found.predictions[:20]
    for p in shown:
        print(f"{p.source}\t{p.index}\t{','.join(map(str, p.face.box))}\t{p.label}\t{p.probs[p.label]:.3f}")
    if len(found.predictions) > len(shown):
        print(f"... {len(found.predictions) - len(shown)} more in {Path(args.out) / 'predictions.csv'}")
    no_face = sum(n == 0 for n in found.faces.values())
    where = f"; written to {args.out}" if args.out is not None else ""
    print(f"{len(found.predictions)} faces in {len(found.faces)} images ({no_face} without a face, "
          f"{len(found.unreadable)} unreadable files skipped; classified on {found.backend}){where}",
          file=sys.stderr if args.out is None else sys.stdout)


def run_video(args: argparse.Namespace) -> None:
    from ferlab.inference.video import default_out, process_video

    out = Path(args.out) if args.out else default_out(args.input)
    result = process_video(_inference_model(args), args.input, out, detector=args.detector,
                           detector_path=args.detector_model, backend=args.backend, tta=args.tta, margin=args.margin,
                           stride=args.stride, smooth=args.smooth, cut_threshold=args.cut_threshold,
                           min_segment=args.min_segment, show=args.show, max_frames=args.max_frames)
    damaged = f" of {result.expected_frames} announced (damaged or cut short)" if result.truncated else ""
    cuts = f", {len(result.scene_cuts)} scene cuts" if result.scene_cuts else ""
    print(f"{result.frames} frames{damaged}{cuts}, {len(result.tracks)} faces tracked; {result.video.name} "
          f"({result.codec}), {result.csv.name}, {result.tracks_json.name}, {result.tracks_csv.name}, "
          f"{result.segments_csv.name} and {result.plot.name} written to {out}")


def run_serve(args: argparse.Namespace) -> None:
    from ferlab.serving.app import MAX_UPLOAD_BYTES, build_app

    app = build_app(_inference_models(args), args.detector, tta=args.tta, backend=args.backend, detector_path=args.detector_model)
    app.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_UPLOAD_BYTES)


def run_calibrate(args: argparse.Namespace) -> None:
    from ferlab.evaluation.calibration import calibrate

    result = calibrate(args.model, args.data, split=args.split, out=args.out).to_dict()
    nll, ece = result["nll"], result["ece"]
    kept = "kept the fitted one" if result["fitted_kept"] else "kept the stored one, the fit did not lower NLL"
    print(f"temperature {result['temperature_before']:.3f} -> {result['temperature']:.3f} (fitted "
          f"{result['temperature_fitted']:.3f}: {kept}): NLL {nll['before']:.4f} -> {nll['after']:.4f}, "
          f"ECE {ece['before']:.4f} -> {ece['after']:.4f} on {result['samples']} {result['split']} images; "
          f"stored in {result['model']}")


def run_models(args: argparse.Namespace) -> None:
    from ferlab.models.catalog import read_catalog

    if not any(c in args.pattern for c in "*?["):  # a name: unknown ones get close matches
        from ferlab.models import create_model, model_entry
        from ferlab.models.summary import layer_table

        entry = model_entry(args.pattern)
        prep = entry.preprocessing
        print(f"{entry.name}: {entry.description}\ndefault input {prep.input_size}x{prep.input_size}x{prep.channels}, "
              f"mean {prep.mean}, std {prep.std}; 7 classes\n")
        print(layer_table(create_model(entry.name, num_classes=7)))
        return
    summaries = read_catalog(args.pattern)  # the shipped listing: no torch or timm to import
    if not summaries:
        raise FerlabError(f"no registered model matches {args.pattern!r}; `ferlab models` lists them all")
    print(f"{'model':16s} {'params':>12s}  {'input':>9s}  description")
    for s in summaries:
        params = f"{s.params:,d}" if s.params is not None else "-"
        print(f"{s.name:16s} {params:>12s}  {s.input_size:>3d}x{s.input_size:<3d}x{s.channels}  {s.description}")
    print("\nalso: timm:<name> for any timm model; `ferlab models NAME` shows one model's layers")
    from ferlab.models.bundled import BUNDLED, describe_bundled

    print("bundled, trained (--model NAME in predict, video, serve, api, evaluate, export):")
    for name in BUNDLED:
        print(f"  {describe_bundled(name)}")


def run_compare(args: argparse.Namespace) -> None:
    from ferlab.experiments.compare import compare

    grid, *overrides = args.grid_and_overrides  # one positional list: argparse cannot split two around options
    result = compare(grid, data=args.data, out=args.out, overrides=overrides, resume=not args.no_resume)
    print(result.table_markdown, end="")
    print(f"results.csv, summary.csv, summary.md and curves.png written to {args.out}")


def run_reproduce(args: argparse.Namespace) -> int | None:
    """Every stage of a recipe; a stage stopped by a signal exits with the shell's status and says how to go on."""
    from ferlab.experiments.recipes import recipe_status, reproduce
    from ferlab.training import TrainingInterrupted

    recipe, *overrides = args.recipe_and_overrides  # one positional list: argparse cannot split two around options
    if args.status:
        _print_recipe_status(recipe_status(recipe, data=args.data, out=args.out, overrides=overrides))
        return None
    try:
        result = reproduce(recipe, data=args.data, out=args.out, overrides=overrides)
    except TrainingInterrupted as stop:
        again = shlex.join(["ferlab", "reproduce", *args.recipe_and_overrides, "--data", args.data, "--out", args.out])
        print(f"ferlab reproduce: stopped by {stop.signal.name} in {stop.run_dir}; the stage keeps its finished "
              f"epochs, carry on with: {again}", file=sys.stderr)
        return stop.code
    for stage in result.stages:
        print(f"{stage.name}: {stage.status}, best val accuracy {stage.best_val_acc:.4f} (epoch {stage.best_epoch} "
              f"of {stage.epochs_run}) in {stage.run_dir}")
    print(f"model in {result.model_dir}")
    return None


def _print_recipe_status(states: list) -> None:
    """One row per stage; a folder trained under other settings says which (reproduce would refuse it)."""
    from ferlab._markdown import markdown_table

    rows = [[s.name, s.state + (f", trained with other {', '.join(s.changed)}" if s.changed else ""),
             f"{s.epochs_done}/{s.epochs}", "-" if s.best_val_acc is None else f"{s.best_val_acc:.4f}", s.run_dir]
            for s in states]
    print("\n".join(markdown_table(["stage", "state", "epochs", "best val acc", "folder"], rows, align="llrrl")))


def run_tune(args: argparse.Namespace) -> None:
    from ferlab.experiments.tune import tune

    result = tune(args.space, data=args.data, out=args.out, trials=args.trials, sampler=args.sampler,
                  storage=args.storage, study_name=args.study, seed=args.seed, epochs=args.epochs,
                  overrides=args.overrides, timeout=args.timeout, prune=not args.no_prune)
    print(f"best {result.best_value:.4f} with {result.best_params}")
    print(f"{len(result.trials)} trials in study {result.study_name!r} ({result.storage}); best config: "
          f"{result.best_config_path} (retrain: ferlab train --config {result.best_config_path} --out RUN epochs=30)")


def run_ensemble(args: argparse.Namespace) -> None:
    from ferlab.models import save_ensemble

    weights = [float(w) for w in args.weights.split(",")] if args.weights else None
    path = save_ensemble(args.members, args.out, method=args.method, weights=weights)
    print(f"{args.method} ensemble of {len(args.members)} models written to {path.parent}")


def run_explain(args: argparse.Namespace) -> None:
    from ferlab.evaluation.explain import explain_files

    paths = explain_files(args.model, args.inputs, args.out, target=args.class_label or "predicted", layer=args.layer)
    print(f"Grad-CAM of {len(paths) - 1} image(s) written to {args.out} (gallery: {paths[-1].name})")


def run_export(args: argparse.Namespace) -> None:
    from ferlab.models.onnx import (
        OnnxModel,
        check_parity,
        dataset_pixels,
        export_onnx,
        generated_pixels,
        load_classifier,
        quantize_export,
    )

    source = load_classifier(args.model)
    is_export = isinstance(source, OnnxModel)
    if is_export and not args.int8:
        raise FerlabError(f"{args.model} is an ONNX export already; pass --int8 to write an int8 copy of it")
    prep = source.meta.preprocessing
    real = dataset_pixels(args.calibration, prep) if args.calibration else None
    if is_export:
        path = quantize_export(args.model, args.out, calibration=real, force=args.force)
    else:
        path = export_onnx(source, args.out, int8=args.int8, calibration=real, force=args.force)
    sample = real if real is not None else generated_pixels(prep, seed=1)
    parity = check_parity(source, OnnxModel.load(path), sample)
    images = "--calibration" if real is not None else "generated"
    print(f"{'int8' if args.int8 else 'fp32'} ONNX model written to {path} ({path.stat().st_size / 1e6:.2f} MB); "
          f"parity with {'the fp32 export' if is_export else 'PyTorch'} on {images} images: {parity}")
    if parity.top1_changed > MAX_EXPORT_DISAGREEMENT:
        log.warning("the export changes the top answer on %.2f%% of the %s images (more than %.0f%%)%s; compare it on "
                    "real faces with `ferlab evaluate --model %s`, or export without --int8",
                    100 * parity.top1_changed, images, 100 * MAX_EXPORT_DISAGREEMENT,
                    "" if real is not None else ", and generated images are not faces: pass --calibration DATA", path)


def run_api(args: argparse.Namespace) -> None:
    from ferlab.serving import require_serving
    from ferlab.serving.server import api_key_from_env, run

    require_serving("fastapi", "python_multipart", "uvicorn")
    # The key comes from the environment: a command-line argument would show in `ps` to every user.
    # Checked before the heavy imports and the models, so FERLAB_API_KEY="" fails at once.
    api_key = api_key_from_env(os.environ)
    from ferlab.inference import Recognizer
    from ferlab.serving.api import create_app

    paths = _inference_models(args)
    names = [Path(path).stem for path in paths]
    if len(set(names)) < len(names):
        raise FerlabError(f"two --model files share a name ({', '.join(names)}); the API tells models apart by name")
    models = {name: Recognizer(path, args.detector, backend=args.backend, tta=args.tta,
                               detector_path=args.detector_model) for name, path in zip(names, paths)}
    run(create_app(models, api_key=api_key), host=args.host, port=args.port)


def _merges(specs: Sequence[str] | None) -> dict[str, list[str]]:
    """``["angry=disgust,contempt"]`` -> ``{"angry": ["disgust", "contempt"]}``."""
    merges: dict[str, list[str]] = {}
    for spec in specs or ():
        target, sep, sources = spec.partition("=")
        if not sep or not target or not sources:
            raise FerlabError(f"--merge takes TARGET=CLASS[,CLASS...], got {spec!r}")
        merges.setdefault(target, []).extend(sources.split(","))
    return merges


def run_data_scan(args: argparse.Namespace) -> None:
    from ferlab.data.scan import format_report, scan, write_report

    report = scan(args.path, min_size=args.min_size, near_threshold=args.near_threshold, max_bytes=args.max_bytes)
    json_path, text_path = write_report(report, args.out)
    print(format_report(report, examples=3), end="")
    print(f"full report in {json_path} and {text_path.name}")


def run_data_clean(args: argparse.Namespace) -> None:
    from ferlab.data.quarantine import clean
    from ferlab.data.scan import load_report, scan

    report = load_report(args.report) if args.report else scan(args.path)
    result = clean(report, args.quarantine, kinds=args.kinds.split(",") if args.kinds else None, tree=args.path)
    print(f"moved {len(result.moved)} files into {args.quarantine}; `ferlab data restore {args.quarantine}` puts them back")
    if result.left:
        print(f"left {len(result.left)} FIFOs or devices in place (clean moves files and links only): "
              + ", ".join(result.left[:5]))


def run_data_restore(args: argparse.Namespace) -> None:
    from ferlab.data.quarantine import restore

    restored = restore(args.quarantine)
    print(f"restored {len(restored)} files")


def run_data_stats(args: argparse.Namespace) -> None:
    from ferlab.data import open_dataset
    from ferlab.data.stats import format_stats, write_stats

    stats = write_stats(open_dataset(args.path), args.out, per_class=args.per_class, seed=args.seed)
    print(format_stats(stats), end="")
    print(f"stats, class_counts.png and samples.png written to {args.out}")


def run_data_split(args: argparse.Namespace) -> None:
    from ferlab.data.prepare import split_dataset, write_split

    tables = split_dataset(
        args.path, ratios=args.ratios, groups=args.groups, kfold=args.kfold, subsample_to=args.subsample,
        classes=args.classes.split(",") if args.classes else None, merge=_merges(args.merge), seed=args.seed,
    )
    for path, table in zip(write_split(tables, args.out, args.format), tables):
        print(f"{path}: {table.split_counts()}")


def run_data_preview(args: argparse.Namespace) -> None:
    from ferlab.data import AugmentConfig, Preprocessing, open_dataset
    from ferlab.data.preview import preview_augmentation

    config = AugmentConfig.parse(args.augment)
    prep = Preprocessing(input_size=args.image_size).with_channels(args.channels)
    out = args.out or f"augment-{config.preset}.png"
    preview_augmentation(open_dataset(args.path), config, out, prep=prep, images=args.images,
                         variants=args.variants, seed=args.seed)
    print(f"preview written to {out}")


def run_data_framing(args: argparse.Namespace) -> None:
    from ferlab.inference.framing import write_framing

    measured = write_framing(args.path, args.out, args.detector or ["yunet", "haar"], detector_path=args.detector_model,
                             limit=args.limit, split=args.split, seed=args.seed)
    for name, stats in measured.items():
        framing = stats.framing
        print(f"{name}: a face in {stats.detected} of {stats.crops} crops ({stats.detection_rate:.1%}); crop side "
              f"{1 + framing.margin:.3f} x the box {framing.scale_by}, centre offset "
              f"({framing.offset_x:+.3f}, {framing.offset_y:+.3f}) box sides")
    print(f"written to {args.out}; train with data.framing={args.out} to store it in the model")


def run_data_suspects(args: argparse.Namespace) -> None:
    from ferlab.experiments.suspects import find_suspects

    data, *overrides = args.data_and_overrides  # one positional list: argparse cannot split two around options
    result = find_suspects(data, args.out, config=args.config, model=args.model, folds=args.folds, epochs=args.epochs,
                           seed=args.seed, split=args.split, overrides=overrides, models=args.models,
                           gallery=args.gallery)
    kind = "given models'" if args.models else "out-of-fold"
    print(f"{len(result.suspects)} suspects among {result.samples} images; {kind} accuracy {result.accuracy:.4f}")
    if result.in_sample:
        print(f"warning: {', '.join(result.in_sample)} trained on these images, so their probabilities are in-sample "
              "and miss suspects; leave out --models to get out-of-fold ones")
    for s in result.suspects[:10]:
        print(f"{s.rank:4d}  {s.given} -> {s.suggested} {s.p_suggested:.2f}  {s.source}")
    print(f"suspects.csv, oof_probabilities.csv, suspects.png and summary.json written to {args.out}")
