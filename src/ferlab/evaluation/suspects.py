"""`find_suspects(data, out)`: the images most likely mislabelled, ranked, for a person to check.

A model never scores an image it trained on: the data is cut into k stratified
folds and fold i is predicted by a model trained on the others, so a wrong label
cannot have been memorised into agreeing with itself. cleanlab's confident
learning then flags the samples whose given label disagrees with what the
models confidently predict, ranked by label quality (lowest first).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import yaml
from omegaconf import OmegaConf

from ferlab._io import check_new_folder, write_csv, write_json
from ferlab.data import (
    ImageDataset,
    Preprocessing,
    Sample,
    SampleTable,
    kfold_splits,
    merge_classes,
    open_dataset,
    select_classes,
)
from ferlab.errors import FerlabError
from ferlab.evaluation.evaluate import choose_split
from ferlab.evaluation.galleries import gallery_images
from ferlab.evaluation.plots import plot_gallery
from ferlab.models import LoadedModel, load_model

if TYPE_CHECKING:
    from ferlab.training import TrainConfig

__all__ = ["Suspect", "SuspectsResult", "find_suspects"]

log = logging.getLogger(__name__)

#: Epochs per fold when no YAML config sets them: k models are trained, so each is kept short.
DEFAULT_EPOCHS = 10
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
class _Scores:
    """Probabilities (N, classes) for the readable samples, with their uint8 pixels (N, C, S, S) for the gallery."""

    samples: list[Sample]
    pixels: torch.Tensor
    probs: np.ndarray
    skipped: list[str]


def _examined(data: str | Path, split: str) -> SampleTable:
    """The samples to check: `split` (see `choose_split`), or an unsplit dataset whole."""
    table = open_dataset(data)
    if table.splits() == [""]:
        log.info("%s has no splits; examining all %d samples", data, len(table))
        return table
    return choose_split(table, split)


def _training_config(
    config: str | Path | None, data: Path, model: str | None, epochs: int | None, seed: int | None, overrides: Sequence[str]
) -> TrainConfig:
    """The config every fold trains with; `out` is set per fold."""
    from ferlab.training import load_config

    values: dict[str, Any] = {"data.path": str(data), "out": "folds"}  # a placeholder, so that validate() checks the rest
    for key, value in (("model.name", model), ("epochs", epochs), ("seed", seed)):
        if value is not None:
            values[key] = value
    if config is None and epochs is None:
        values["epochs"] = DEFAULT_EPOCHS
    cfg = load_config(config, overrides, values)
    cfg.validate()
    return cfg


def _check_out(out: Path, settings: dict[str, Any]) -> None:
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


def _predict(models: Sequence[LoadedModel], table: SampleTable, classes: Sequence[str]) -> _Scores:
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
    return _Scores(first.samples, first.pixels, np.mean(probs, axis=0), first.skipped)


def _train_fold(cfg: TrainConfig, table: SampleTable, name: str) -> bool:
    """Train one fold's model into `cfg.out` unless it is there already; True when an earlier run's model is reused."""
    from ferlab.training import train
    from ferlab.training.train import LAST_CHECKPOINT

    fold_dir = Path(cfg.out)
    if (fold_dir / "summary.json").is_file():  # train() writes it last
        log.info("%s: reusing the finished model in %s", name, fold_dir)
        return True
    resume = (fold_dir / LAST_CHECKPOINT).is_file()
    if resume:
        log.info("%s: continuing its interrupted training from %s", name, LAST_CHECKPOINT)
    elif fold_dir.exists():
        # Stopped before its first epoch ended: nothing worth keeping, and the folder is ours (out/folds).
        log.info("%s: restarting its training, interrupted before the first checkpoint", name)
        shutil.rmtree(fold_dir)
    else:
        log.info("%s: training on %d samples", name, len(table.split("train")))
    train(cfg, resume=resume, table=table)
    return False


def _out_of_fold(table: SampleTable, cfg: TrainConfig, folds: int, out: Path) -> tuple[_Scores, list[str], list[int]]:
    """Out-of-fold probabilities of every sample, the classes, and the folds reused from an earlier run."""
    if cfg.data.merge:
        table = merge_classes(table, cfg.data.merge)
    table, classes = select_classes(table, cfg.data.classes)
    too_few = {label: n for label, n in table.label_counts().items() if n < folds}
    if len(classes) < 2 or too_few:
        raise FerlabError(f"{table.origin}: {folds} folds need at least two classes of at least {folds} images each; "
                          f"found {table.label_counts()}")
    # Labels are final here; every fold trains on exactly these classes, so the probability columns line up.
    fold_data = dataclasses.replace(cfg.data, merge={}, classes=classes)
    parts, reused = [], []
    for i, copy in enumerate(kfold_splits(table, folds, seed=cfg.seed, groups=cfg.data.groups)):
        fold_cfg = dataclasses.replace(cfg, data=fold_data, out=str(out / "folds" / f"fold{i}"))
        # The held-out fold goes in as `test` (never trained on); train() carves its validation part off `train`.
        fold_table = copy.with_samples(dataclasses.replace(s, split="test" if s.split == "val" else "train")
                                       for s in copy.samples)
        if _train_fold(fold_cfg, fold_table, f"fold {i + 1} of {folds}"):
            reused.append(i)
        parts.append(_predict([load_model(fold_cfg.out)], copy.split("val"), classes))
    # Back into the dataset's order, so oof_probabilities.csv reads like the dataset.
    samples = [s for part in parts for s in part.samples]
    position = {s.source: i for i, s in enumerate(table.samples)}
    order = np.argsort([position[s.source] for s in samples], kind="stable")
    scores = _Scores(
        samples=[samples[i] for i in order],
        pixels=torch.cat([part.pixels for part in parts])[torch.from_numpy(order)],
        probs=np.concatenate([part.probs for part in parts])[order],
        skipped=[source for part in parts for source in part.skipped],
    )
    return scores, classes, reused


def _trained_on(model: str | Path, loaded: LoadedModel, data: Path, table: SampleTable, scores: _Scores) -> bool:
    """Whether `model` trained on these images: by the sketch of its training images where it has one
    (bundled models, runs of this version), else by the data its run's config.yaml names."""
    sketch = loaded.meta.training_data
    share = sketch.share_of(scores.pixels.numpy()) if sketch is not None else None
    if share is not None:
        log.info("%s: about %.0f%% of these images were among its %d training images", model, 100 * share, sketch.samples)
        return share >= IN_SAMPLE_SHARE
    path = Path(model).expanduser()
    config = (path if path.is_dir() else path.parent) / "config.yaml"
    if not config.is_file():
        log.info("%s has no config.yaml beside it; cannot tell whether it trained on these images", model)
        return False
    try:
        trained = yaml.safe_load(config.read_text(encoding="utf-8"))["data"]["path"]
    except (yaml.YAMLError, KeyError, TypeError):
        log.info("%s does not name its data; cannot tell whether %s trained on these images", config, model)
        return False
    same_data = Path(str(trained)).expanduser().resolve() == data
    # Its training split is the dataset's train split, or a share of an unsplit dataset.
    return same_data and bool({"train", ""} & set(table.splits()))


def _given_models(table: SampleTable, models: Sequence[str | Path], data: Path) -> tuple[_Scores, list[str], list[str]]:
    """The given models' probabilities, the classes scored, and the models that trained on these images."""
    loaded = [load_model(m) for m in models]
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
    scores = _predict(loaded, table, classes)
    in_sample = [str(m) for m, model in zip(models, loaded) if _trained_on(m, model, data, table, scores)]
    if in_sample:
        log.warning("%s trained on these images: their probabilities are in-sample and agree with wrong labels they "
                    "memorised, so suspects are missed; prefer out-of-fold models (leave out models=)", ", ".join(in_sample))
    return scores, classes, in_sample


def _rank(scores: _Scores, classes: Sequence[str]) -> tuple[list[Suspect], np.ndarray]:
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


def _gallery(scores: _Scores, suspects: Sequence[Suspect], positions: np.ndarray, path: Path, n: int) -> None:
    images = gallery_images(scores.pixels, positions[:n])
    captions = [f"{s.given} -> {s.suggested} {s.p_suggested:.2f}" for s in suspects[:n]]
    plot_gallery(images, captions, path, title="Likely mislabelled (given -> suggested, its probability)")


def find_suspects(
    data: str | Path,
    out: str | Path,
    *,
    config: str | Path | None = None,
    model: str | None = None,
    folds: int = 5,
    epochs: int | None = None,
    seed: int | None = None,
    split: str = "train",
    overrides: Sequence[str] = (),
    models: Sequence[str | Path] | None = None,
    gallery: int = 64,
) -> SuspectsResult:
    """Rank `data`'s images by how likely their label is wrong, and write the list to `out`.

    Without `models`, `folds` models are trained (into ``out/folds/fold{i}``), each
    on all folds but one, and each predicts the fold it never saw. `out` then gets
    ``suspects.csv`` (lowest label quality first), ``oof_probabilities.csv`` (every
    sample), ``suspects.png`` (the first `gallery` suspects) and ``summary.json``.
    Re-running into the same `out` with the same settings continues an interrupted
    run: finished folds are reused, an interrupted one resumes from its checkpoint.

    Args:
        data: any dataset `open_dataset` reads; unreadable images are counted and left out.
        config: a training YAML; `model`, `epochs`, `seed` and `overrides` apply on top.
        model, epochs, seed: None keeps the config's (defaults: cnn3_bn, `DEFAULT_EPOCHS`, 0).
        folds: models trained, each predicting the fold it left out (unused with `models`).
        split: the split to check (an unsplit dataset is checked whole).
        overrides: ``key=value`` training config overrides, e.g. ``data.batch_size=32``.
        models: run folders or model files whose (mean) probabilities are used instead
            of training; where they trained on these images the result says so.
        gallery: suspects shown in ``suspects.png`` (0: no picture).

    Raises:
        FerlabError: bad data, options or config, or an `out` holding other files or settings.
    """
    if gallery < 0:
        raise FerlabError(f"gallery must be 0 or more, got {gallery}")
    if models and (config is not None or model is not None or epochs is not None or overrides):
        raise FerlabError("models= scores with trained models; config, model, epochs and overrides only apply when training")
    if not models and folds < 2:
        raise FerlabError(f"folds must be at least 2, got {folds}")
    data_path = Path(data).expanduser().resolve()
    out = Path(out).expanduser()
    cfg = None if models else _training_config(config, data_path, model, epochs, seed, overrides)
    settings: dict[str, Any] = {"data": str(data_path), "split": split}
    if cfg is None:
        settings["models"] = [str(Path(m).expanduser().resolve()) for m in models or ()]
    else:
        settings["folds"] = folds
        settings["training"] = {k: v for k, v in OmegaConf.to_container(OmegaConf.structured(cfg)).items() if k != "out"}
    table = _examined(data, split)
    _check_out(out, settings)

    reused: list[int] = []
    in_sample: list[str] = []
    if cfg is None:
        scores, classes, in_sample = _given_models(table, models or (), data_path)
    else:
        scores, classes, reused = _out_of_fold(table, cfg, folds, out)
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
        "probabilities": "given models" if models else "out-of-fold",
        "folds": None if models else folds,
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
