"""`find_suspects(data, out)`: the images most likely mislabelled, ranked, for a person to check.

A model never scores an image it trained on: the data is cut into k stratified
folds and fold i is predicted by a model trained on the others, so a wrong label
cannot have been memorised into agreeing with itself. The ranking and the files
are evaluation's (`ferlab.evaluation.suspects`); training the folds is why this
workflow sits above both.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from ferlab.data import SampleTable, kfold_splits, merge_classes, select_classes
from ferlab.errors import FerlabError
from ferlab.evaluation.suspects import (
    Scores,
    SuspectsResult,
    check_out,
    examined_samples,
    given_model_scores,
    predict_scores,
    write_suspects,
)
from ferlab.models import load_model
from ferlab.rundir import LAST_CHECKPOINT, RunDir
from ferlab.training import TrainConfig, load_config, train

__all__ = ["DEFAULT_EPOCHS", "find_suspects"]

log = logging.getLogger(__name__)

#: Epochs per fold when no YAML config sets them: k models are trained, so each is kept short.
DEFAULT_EPOCHS = 10


def _training_config(
    config: str | Path | None, data: Path, model: str | None, epochs: int | None, seed: int | None, overrides: Sequence[str]
) -> TrainConfig:
    """The config every fold trains with; `out` is set per fold."""
    values: dict[str, Any] = {"data.path": str(data), "out": "folds"}  # a placeholder, so that validate() checks the rest
    for key, value in (("model.name", model), ("epochs", epochs), ("seed", seed)):
        if value is not None:
            values[key] = value
    if config is None and epochs is None:
        values["epochs"] = DEFAULT_EPOCHS
    cfg = load_config(config, overrides, values)
    cfg.validate()
    return cfg


def _train_fold(cfg: TrainConfig, table: SampleTable, name: str) -> bool:
    """Train one fold's model into `cfg.out` unless it is there already; True when an earlier run's model is reused."""
    fold_dir = Path(cfg.out)
    if RunDir(fold_dir).is_finished():
        log.info("%s: reusing the finished model in %s", name, fold_dir)
        return True
    resume = RunDir(fold_dir).can_resume()
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


def _out_of_fold(table: SampleTable, cfg: TrainConfig, folds: int, out: Path) -> tuple[Scores, list[str], list[int]]:
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
        parts.append(predict_scores([load_model(fold_cfg.out)], copy.split("val"), classes))
    # Back into the dataset's order, so oof_probabilities.csv reads like the dataset.
    samples = [s for part in parts for s in part.samples]
    position = {s.source: i for i, s in enumerate(table.samples)}
    order = np.argsort([position[s.source] for s in samples], kind="stable")
    scores = Scores(
        samples=[samples[i] for i in order],
        pixels=torch.cat([part.pixels for part in parts])[torch.from_numpy(order)],
        probs=np.concatenate([part.probs for part in parts])[order],
        skipped=[source for part in parts for source in part.skipped],
    )
    return scores, classes, reused


def _check_options(gallery: int, folds: int, given_models: bool, training_options: bool) -> None:
    """Raises: FerlabError: a negative gallery, training options beside given models, or fewer than two folds."""
    if gallery < 0:
        raise FerlabError(f"gallery must be 0 or more, got {gallery}")
    if given_models and training_options:
        raise FerlabError("models= scores with trained models; config, model, epochs and overrides only apply when training")
    if not given_models and folds < 2:
        raise FerlabError(f"folds must be at least 2, got {folds}")


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
    _check_options(gallery, folds, bool(models), config is not None or model is not None or epochs is not None
                   or bool(overrides))
    data_path = Path(data).expanduser().resolve()
    out = Path(out).expanduser()
    cfg = None if models else _training_config(config, data_path, model, epochs, seed, overrides)
    settings: dict[str, Any] = {"data": str(data_path), "split": split}
    if cfg is None:
        settings["models"] = [str(Path(m).expanduser().resolve()) for m in models or ()]
    else:
        settings["folds"] = folds
        settings["training"] = {k: v for k, v in OmegaConf.to_container(OmegaConf.structured(cfg)).items() if k != "out"}
    table = examined_samples(data, split)
    check_out(out, settings)

    reused: list[int] = []
    in_sample: list[str] = []
    if cfg is None:
        scores, classes, in_sample = given_model_scores(table, models or (), data_path)
    else:
        scores, classes, reused = _out_of_fold(table, cfg, folds, out)
    return write_suspects(scores, classes, table, out, settings=settings, folds=None if models else folds,
                          reused=reused, in_sample=in_sample, gallery=gallery)
