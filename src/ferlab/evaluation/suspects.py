"""The scoring half of the label-noise finder: probabilities in, likely mislabelled images out, ranked.

cleanlab's confident learning flags the samples whose given label disagrees with
what the models confidently predict, ranked by label quality (lowest first).
The probabilities come from given models (`given_model_scores`, which notices a
model that trained on the images) or from k-fold training, which sits above
evaluation in `ferlab.experiments.suspects` (`find_suspects`, the entry point).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ferlab._io import check_new_folder, write_csv, write_json
from ferlab.data import (
    ImageDataset,
    Preprocessing,
    Sample,
    SampleTable,
    open_dataset,
    select_classes,
)
from ferlab.errors import FerlabError
from ferlab.evaluation.evaluate import choose_split
from ferlab.evaluation.galleries import gallery_images
from ferlab.evaluation.plots import plot_gallery
from ferlab.models.backend import ModelBackend
from ferlab.models.onnx import load_classifier
from ferlab.rundir import RunDir

__all__ = ["Scores", "Suspect", "SuspectsResult", "check_out", "examined_samples", "given_model_scores",
           "predict_scores", "write_suspects"]

log = logging.getLogger(__name__)

#: cleanlab's score for ranking; its docs find the margin best for a label swapped with another class of the set.
QUALITY_METHOD = "normalized_margin"
#: A model whose training images make up at least this share of the scored ones scores them in-sample.
IN_SAMPLE_SHARE = 0.5
SETTINGS_FILE = "settings.json"


@dataclass(frozen=True)
class Suspect:
    """A sample whose label looks wrong.

    Attributes:
        rank: 1 for the lowest label quality.
        suggested: the most probable class other than the given one.
        quality: cleanlab's label quality in [0, 1]; low means likely mislabelled.
    """

    rank: int
    source: str
    given: str
    suggested: str
    p_given: float
    p_suggested: float
    quality: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SuspectsResult:
    """What `find_suspects` found and wrote.

    Attributes:
        samples: samples scored (readable, of the classes scored).
        skipped: sources that could not be read.
        accuracy: of the probabilities used (out-of-fold, unless models were given).
        reused_folds: folds whose model an earlier, interrupted run had finished.
        in_sample: given models that trained on these images (their probabilities flatter the labels).
    """

    out: Path
    classes: tuple[str, ...]
    samples: int
    skipped: tuple[str, ...]
    accuracy: float
    suspects: tuple[Suspect, ...]
    reused_folds: tuple[int, ...] = ()
    in_sample: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scores:
    """Probabilities (N, classes) for the readable samples, with their uint8 pixels (N, C, S, S) for the gallery."""

    samples: list[Sample]
    pixels: torch.Tensor
    probs: np.ndarray
    skipped: list[str]


def examined_samples(data: str | Path, split: str) -> SampleTable:
    """The samples to check: `split` (see `choose_split`), or an unsplit dataset whole."""
    table = open_dataset(data)
    if table.splits() == [""]:
        log.info("%s has no splits; examining all %d samples", data, len(table))
        return table
    return choose_split(table, split)


def check_out(out: Path, settings: dict[str, Any]) -> None:
    """`out` is new (its settings get written) or holds an earlier run of the same settings, which continues."""
    settings_path = out / SETTINGS_FILE
    if not settings_path.is_file():
        check_new_folder(out, "output folder", "choose a new one, or the folder of an earlier run with the same settings")
        write_json(settings_path, settings)
        return
    try:
        earlier = json.loads(settings_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise FerlabError(f"{settings_path}: not valid JSON ({err})") from None
    settings = json.loads(json.dumps(settings))  # tuples become lists, as in the file
    changed = sorted(key for key in settings.keys() | earlier.keys() if settings.get(key) != earlier.get(key))
    if changed:
        raise FerlabError(f"{out} holds a run with other settings ({', '.join(changed)}; see {settings_path}); "
                          "choose a new output folder, or the same settings to continue it")
    log.info("continuing the earlier run in %s", out)


def predict_scores(models: Sequence[ModelBackend], table: SampleTable, classes: Sequence[str]) -> Scores:
    """The models' mean probabilities over `classes` (renormalised when a model has more) for `table`'s readable samples."""
    datasets: dict[Preprocessing, ImageDataset] = {}
    probs = []
    for model in models:
        prep = model.meta.preprocessing
        if prep not in datasets:  # an ensemble of one architecture decodes once
            datasets[prep] = ImageDataset(table, classes, prep)
        columns = [model.classes.index(name) for name in classes]
        p = model.predict_proba(datasets[prep].pixels)[:, columns]  # (N, classes)
        probs.append(p / p.sum(axis=1, keepdims=True))
    first = next(iter(datasets.values()))
    return Scores(first.samples, first.pixels, np.mean(probs, axis=0), first.skipped)


def _trained_on(model: str | Path, loaded: ModelBackend, data: Path, table: SampleTable, scores: Scores) -> bool:
    """Whether `model` trained on these images: by the sketch of its training images where it has one
    (bundled models, runs of this version), else by the data its run's config.yaml names."""
    sketch = loaded.meta.training_data
    share = sketch.share_of(scores.pixels.numpy()) if sketch is not None else None
    if share is not None:
        log.info("%s: about %.0f%% of these images were among its %d training images", model, 100 * share, sketch.samples)
        return share >= IN_SAMPLE_SHARE
    path = Path(model).expanduser()
    run = RunDir(path if path.is_dir() else path.parent)
    if not run.config.is_file():
        log.info("%s has no config.yaml beside it; cannot tell whether it trained on these images", model)
        return False
    try:
        trained = run.data_path()
    except FerlabError:
        trained = None
    if trained is None:
        log.info("%s does not name its data; cannot tell whether %s trained on these images", run.config, model)
        return False
    same_data = Path(str(trained)).expanduser().resolve() == data
    # Its training split is the dataset's train split, or a share of an unsplit dataset.
    return same_data and bool({"train", ""} & set(table.splits()))


def given_model_scores(table: SampleTable, models: Sequence[str | Path], data: Path) -> tuple[Scores, list[str], list[str]]:
    """The given models' probabilities, the classes scored, and the models that trained on these images."""
    loaded = [load_classifier(m) for m in models]
    for path, model in zip(models, loaded):
        if set(model.classes) != set(loaded[0].classes):
            raise FerlabError(f"{path} predicts {list(model.classes)} but {models[0]} predicts {list(loaded[0].classes)}")
    present = table.label_counts()
    left_out = {label: n for label, n in present.items() if label not in loaded[0].classes}
    if left_out:
        log.warning("%s: left out images of classes the models do not predict: %s", table.origin, left_out)
    # Confident learning needs given examples of every class it may suggest: the data's classes only.
    table, classes = select_classes(table, [c for c in loaded[0].classes if c in present])
    if len(classes) < 2:
        raise FerlabError(f"{table.origin} has images of {len(classes)} of the models' classes {list(loaded[0].classes)}; "
                          "finding suspects needs at least two")
    scores = predict_scores(loaded, table, classes)
    in_sample = [str(m) for m, model in zip(models, loaded) if _trained_on(m, model, data, table, scores)]
    if in_sample:
        log.warning("%s trained on these images: their probabilities are in-sample and agree with wrong labels they "
                    "memorised, so suspects are missed; prefer out-of-fold models (leave out models=)", ", ".join(in_sample))
    return scores, classes, in_sample


def _rank(scores: Scores, classes: Sequence[str]) -> tuple[list[Suspect], np.ndarray]:
    """Confident learning's label issues, lowest label quality first, and their positions in `scores`."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    index = {name: i for i, name in enumerate(classes)}
    labels = np.array([index[s.label] for s in scores.samples])
    probs = scores.probs
    # n_jobs=1: the same result, and a process pool costs more than it saves at FER2013's size.
    issues = find_label_issues(labels, probs, return_indices_ranked_by=QUALITY_METHOD, n_jobs=1)
    quality = get_label_quality_scores(labels, probs, method=QUALITY_METHOD)
    others = probs.copy()
    others[np.arange(len(labels)), labels] = -1.0
    suggested = others.argmax(axis=1)
    suspects = [
        Suspect(
            rank=rank,
            source=scores.samples[i].source,
            given=classes[labels[i]],
            suggested=classes[suggested[i]],
            p_given=round(float(probs[i, labels[i]]), 6),
            p_suggested=round(float(probs[i, suggested[i]]), 6),
            quality=round(float(quality[i]), 6),
        )
        for rank, i in enumerate(issues, 1)
    ]
    return suspects, np.asarray(issues, dtype=int)


def _gallery(scores: Scores, suspects: Sequence[Suspect], positions: np.ndarray, path: Path, n: int) -> None:
    images = gallery_images(scores.pixels, positions[:n])
    captions = [f"{s.given} -> {s.suggested} {s.p_suggested:.2f}" for s in suspects[:n]]
    plot_gallery(images, captions, path, title="Likely mislabelled (given -> suggested, its probability)")


def write_suspects(
    scores: Scores,
    classes: Sequence[str],
    table: SampleTable,
    out: Path,
    *,
    settings: dict[str, Any],
    folds: int | None = None,
    reused: Sequence[int] = (),
    in_sample: Sequence[str] = (),
    gallery: int = 64,
) -> SuspectsResult:
    """Rank the samples of `scores` and write ``suspects.csv``, ``oof_probabilities.csv``,
    ``suspects.png`` (the first `gallery` suspects) and ``summary.json`` into `out`.

    Args:
        folds: the k of k-fold probabilities; None: they come from given models.
        reused: folds whose models an earlier run trained; in_sample: given models that trained on these images.
    """
    data = settings["data"]
    suspects, positions = _rank(scores, classes)
    labels = [s.label for s in scores.samples]
    accuracy = float(np.mean(np.array(classes)[scores.probs.argmax(axis=1)] == np.array(labels)))

    write_csv(out / "suspects.csv", [s.to_dict() for s in suspects], [f.name for f in dataclasses.fields(Suspect)])
    write_csv(out / "oof_probabilities.csv", [
        {"source": s.source, "label": s.label, **{c: round(float(p), 6) for c, p in zip(classes, row)}}
        for s, row in zip(scores.samples, scores.probs)
    ], ["source", "label", *classes])
    if gallery:
        _gallery(scores, suspects, positions, out / "suspects.png", gallery)
    per_class = collections.Counter(s.given for s in suspects)
    pairs = collections.Counter((s.given, s.suggested) for s in suspects)
    write_json(out / "summary.json", {
        "data": str(data),
        "split": "+".join(name or "unsplit" for name in table.splits()),
        "classes": classes,
        "samples": len(scores.samples),
        "skipped": len(scores.skipped),
        "skipped_sources": scores.skipped,
        "probabilities": "out-of-fold" if folds else "given models",
        "folds": folds,
        "reused_folds": reused,
        "accuracy": round(accuracy, 6),
        "suspects": len(suspects),
        "suspects_per_class": {c: per_class[c] for c in classes},
        "top_pairs": [{"given": g, "suggested": s, "count": n} for (g, s), n in pairs.most_common(10)],
        "in_sample_models": in_sample,
        "warning": ("probabilities are in-sample for models that trained on these images; wrong labels they "
                    "memorised look right, so suspects are missed") if in_sample else None,
        "settings": settings,
    })
    log.info("%d suspects among %d samples (accuracy %.4f); written to %s", len(suspects), len(scores.samples), accuracy, out)
    return SuspectsResult(out, tuple(classes), len(scores.samples), tuple(scores.skipped), accuracy, tuple(suspects),
                          tuple(reused), tuple(in_sample))



def __getattr__(name: str) -> Any:
    # find_suspects moved up to ferlab.experiments.suspects (it trains); this alias goes in the next release.
    if name == "find_suspects":
        import importlib
        import warnings

        warnings.warn("ferlab.evaluation.suspects.find_suspects moved to ferlab.experiments.suspects",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module("ferlab.experiments.suspects").find_suspects
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
