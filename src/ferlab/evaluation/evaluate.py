"""`evaluate(...)`: a model on a dataset, written out as metrics, plots, galleries and per-image predictions."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import softmax

from ferlab._compat import DictAccess
from ferlab._io import write_csv, write_json
from ferlab.data import ImageDataset, SampleTable, merge_classes, open_dataset
from ferlab.errors import FerlabError
from ferlab.evaluation.galleries import class_gallery, mistake_gallery
from ferlab.evaluation.metrics import classification_metrics
from ferlab.evaluation.plots import plot_confusion_matrix, plot_precision_recall, plot_reliability, plot_roc
from ferlab.inference.detect import Detector, create_detector
from ferlab.inference.photos import FaceDecoder
from ferlab.models import LoadedModel
from ferlab.models.backend import ModelBackend
from ferlab.models.onnx import load_classifier

__all__ = ["Evaluation", "choose_split", "evaluate", "evaluate_model", "write_evaluation"]

log = logging.getLogger(__name__)


def choose_split(table: SampleTable, split: str) -> SampleTable:
    """The samples to evaluate: ``auto`` takes test, else val, else an unsplit tree whole; ``all`` takes everything.

    Raises:
        FerlabError: the split is absent.
    """
    present = table.splits()
    if split == "all":
        return table
    if split == "auto":
        for name in ("test", "val", ""):
            if name in present:
                return table.split(name)
        raise FerlabError(f"{table.origin} has only a training split; pass --split train to evaluate on it")
    if split not in present:
        raise FerlabError(f"{table.origin} has no {split!r} split (found {[s or 'unsplit' for s in present]})")
    return table.split(split)


def shared_classes(table: SampleTable, classes: Iterable[str]) -> tuple[SampleTable, dict[str, int]]:
    """The samples of the model's `classes`, and a count of those left out by label.

    Cross-dataset evaluation: a class the model cannot predict is reported, never mapped
    onto another one behind the user's back (`merge_classes` maps on request).
    """
    known = set(classes)
    left_out: dict[str, int] = {}
    for sample in table.samples:
        if sample.label not in known:
            left_out[sample.label] = left_out.get(sample.label, 0) + 1
    if left_out:
        log.warning("%s: left out %d images of classes the model does not predict: %s",
                    table.origin, sum(left_out.values()), left_out)
    return table.with_samples(s for s in table.samples if s.label in known), dict(sorted(left_out.items()))


@dataclass(frozen=True)
class Evaluation:
    """A model's outputs on a dataset, kept in memory for writing, reports and paired comparisons."""

    model: ModelBackend
    dataset: ImageDataset
    logits: np.ndarray  # (N, classes), averaged over the TTA views, before temperature scaling
    probs: np.ndarray  # (N, classes), calibrated
    metrics: dict[str, Any]

    @property
    def correct(self) -> np.ndarray:
        return self.probs.argmax(axis=1) == self.dataset.targets.numpy()


#: Images whose median shorter side exceeds this many model input sides are taken for whole photos.
PHOTO_SIDE_RATIO = 4
_SIZE_SAMPLE = 16


def looks_like_whole_photos(sides: Sequence[int], input_size: int) -> bool:
    """Whether images whose shorter sides are `sides` are far bigger than a model's `input_size`-px face crops."""
    return bool(sides) and float(np.median(sides)) > PHOTO_SIDE_RATIO * input_size


def warn_if_whole_photos(table: SampleTable, input_size: int) -> bool:
    """Warn (and say True) when `table`'s images look like whole photos rather than the face crops a model takes.

    A model classifies a whole photo resized to its input without complaint, and far worse than
    the face in it; a few images' sizes tell the two apart before the user trusts the figures.
    """
    sides = []
    for sample in table.samples[:: max(1, len(table) // _SIZE_SAMPLE)][:_SIZE_SAMPLE]:
        try:
            sides.append(min(table.read_image(sample).size))
        except FerlabError:
            continue
    if not looks_like_whole_photos(sides, input_size):
        return False
    log.warning("%s: its images (median shorter side %d px) look like whole photos, not %d-px face crops; each is "
                "classified whole. To find and cut the faces as `ferlab predict` does, pass --detector yunet or haar",
                table.origin, int(np.median(sides)), input_size)
    return True


def _photo_metrics(decoder: FaceDecoder, table: SampleTable, correct: np.ndarray) -> dict[str, Any]:
    """What the detector found; accuracy over every readable photo, one without a face counting as an error."""
    photos = len(table) - len(decoder.unreadable)
    return {
        "detector": decoder.detector.name,
        "framing": decoder.framing.to_dict(),
        "photos": photos,
        "no_face": len(decoder.no_face),
        "detection_rate": (photos - len(decoder.no_face)) / photos,
        "accuracy": float(correct.sum()) / photos,
        "accuracy_of_detected": float(correct.mean()),
        "no_face_sources": decoder.no_face,
    }


def _face_decoder(loaded: ModelBackend, table: SampleTable, detector: str | Detector,
                  detector_path: str | Path | None, margin: float | None) -> FaceDecoder | None:
    """What cuts the faces out of photos with the model's framing; None where the images are crops (warned if they
    look like whole photos).

    Raises:
        FerlabError: a margin without a detector, or a detector that cannot be made.
    """
    found = create_detector(detector, model_path=detector_path) if isinstance(detector, str) else detector
    if found.name != "none":
        framing = loaded.meta.framing_for(found.name)
        return FaceDecoder(found, framing if margin is None else replace(framing, margin=margin))
    if margin is not None:
        raise FerlabError("a margin applies to faces found by a detector; choose detector yunet or haar")
    warn_if_whole_photos(table, loaded.meta.preprocessing.input_size)
    return None


def evaluate_model(
    model: str | Path | ModelBackend,
    data: str | Path,
    split: str = "auto",
    tta: str | None = None,
    merge: Mapping[str, Iterable[str]] | None = None,
    *,
    detector: str | Detector = "none",
    detector_path: str | Path | None = None,
    margin: float | None = None,
) -> Evaluation:
    """Predict `data`'s `split` with `model` and compute every metric; writes nothing.

    Args:
        model: a bundled name, run folder, model file or ``.onnx`` export (`load_classifier`), or a loaded model.
        tta: test-time augmentation, ``none``, ``flip`` or ``tencrop``; None: the model's own (`ModelMeta.tta`).
        merge: relabel the data's classes first, e.g. ``{"neutral": ["contempt"]}``.
        detector: ``none``: the images are face crops. ``yunet`` or ``haar`` (or a detector):
            they are photos, and the largest face found in each is cut with the model's framing
            and classified, as ``ferlab predict`` does; ``accuracy`` then counts a photo
            without a face as an error, and the other metrics cover the faces found.
        detector_path: the YuNet model file (default: the user cache's copy, see `yunet_model`).
        margin: an expert override of the margin in the model's framing for `detector`.

    Raises:
        FerlabError: bad paths, a missing split, no image of a class the model predicts, or no face in any photo.
    """
    table = choose_split(open_dataset(data), split)  # before the model: a mistyped path fails at once
    loaded = load_classifier(model)
    tta = loaded.resolve_tta(tta)
    if merge:
        table = merge_classes(table, merge)
    table, left_out = shared_classes(table, loaded.classes)
    if not len(table):
        raise FerlabError(f"{data} has no images of the model's classes {list(loaded.classes)} (only {list(left_out)})")
    decoder = _face_decoder(loaded, table, detector, detector_path, margin)
    dataset = ImageDataset(table, loaded.classes, loaded.meta.preprocessing, decode=decoder)
    logits = loaded.predict_logits(dataset.pixels, tta=tta)
    probs = softmax(logits / loaded.meta.temperature, axis=1)
    metrics = {
        "model": str(model) if not isinstance(model, ModelBackend) else loaded.meta.architecture,
        "architecture": loaded.meta.architecture,
        "data": str(data),
        "split": "+".join(name or "unsplit" for name in table.splits()),
        "tta": tta,
        "temperature": loaded.meta.temperature,
        "skipped": decoder.unreadable if decoder else dataset.skipped,
        "left_out": left_out,
        **classification_metrics(dataset.targets.numpy(), probs, loaded.classes),
    }
    if decoder is not None:
        metrics.update(_photo_metrics(decoder, table, probs.argmax(axis=1) == dataset.targets.numpy()))
    return Evaluation(loaded, dataset, logits, probs, metrics)


def write_evaluation(evaluation: Evaluation, out: str | Path, gallery: int = 32) -> dict[str, Path]:
    """Write metrics.json, predictions.csv and the plots into `out`; returns the files by name.

    The reliability diagram shows the test split before and after the model's temperature,
    which was fitted on other images (its validation split), so it is a fair check.
    """
    out = Path(out)
    metrics, classes = evaluation.metrics, evaluation.model.classes
    targets = evaluation.dataset.targets.numpy()
    probs = evaluation.probs
    write_json(out / "metrics.json", metrics)
    write_csv(out / "predictions.csv", [
        {"source": s.source, "true": s.label, "predicted": classes[p.argmax()],
         **{c: round(float(v), 6) for c, v in zip(classes, p)}}
        for s, p in zip(evaluation.dataset.samples, probs)
    ], ["source", "true", "predicted", *classes])
    temperature = evaluation.model.meta.temperature
    curves = {f"calibrated (T={temperature:.2f})": probs}
    if temperature != 1.0:
        curves = {"uncalibrated (T=1)": softmax(evaluation.logits, axis=1), **curves}
    files = {
        "confusion_matrix": plot_confusion_matrix(metrics["confusion_matrix"], classes, out / "confusion_matrix.png"),
        "roc": plot_roc(targets, probs, classes, out / "roc.png"),
        "precision_recall": plot_precision_recall(targets, probs, classes, out / "precision_recall.png"),
        "reliability": plot_reliability(curves, targets, out / "reliability.png"),
        "mistakes": mistake_gallery(evaluation.dataset.pixels, targets, probs, classes, out / "mistakes.png", n=gallery),
        "class_examples": class_gallery(evaluation.dataset.pixels, targets, probs, classes, out / "class_examples.png"),
    }
    if not isinstance(evaluation.model, LoadedModel):
        log.info("no Grad-CAM gallery: an ONNX model has no gradients to explain; evaluate its run folder for one")
        return files
    try:
        files["mistakes_gradcam"] = mistake_gallery(evaluation.dataset.pixels, targets, probs, classes,
                                                    out / "mistakes_gradcam.png", n=min(gallery, 16), gradcam=evaluation.model)
    except FerlabError as err:  # an ensemble: its members can be explained one by one
        log.info("no Grad-CAM gallery: %s", err)
    return files


@dataclass(frozen=True)
class EvaluateResult(DictAccess):
    """What `evaluate` measured and wrote: the headline figures, every metric, and the files by name."""

    out: Path
    metrics: dict[str, Any]
    files: dict[str, Path]

    @property
    def accuracy(self) -> float:
        return float(self.metrics["accuracy"])

    @property
    def macro_f1(self) -> float:
        return float(self.metrics["macro_f1"])

    @property
    def samples(self) -> int:
        return int(self.metrics["samples"])

    def to_dict(self) -> dict[str, Any]:
        """The metrics, as written to ``metrics.json``."""
        return dict(self.metrics)


def evaluate(
    model: str | Path | ModelBackend,
    data: str | Path,
    out: str | Path,
    split: str = "auto",
    tta: str | None = None,
    merge: Mapping[str, Iterable[str]] | None = None,
    **photos: Any,
) -> EvaluateResult:
    """Evaluate `model` on `data` and write metrics.json, predictions.csv and the plots to `out`.

    Args:
        photos: `evaluate_model`'s ``detector``, ``detector_path`` and ``margin``, for whole photos.
    """
    evaluation = evaluate_model(model, data, split=split, tta=tta, merge=merge, **photos)
    files = write_evaluation(evaluation, out)
    return EvaluateResult(Path(out), evaluation.metrics, files)
