"""`train(cfg)`: from a dataset path to a run folder holding the best model."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import nn
from torch.utils.data import DataLoader

from ferlab._io import check_new_folder, write_json, write_text
from ferlab.data import (
    EpochSampler,
    ImageDataset,
    Preprocessing,
    SampleTable,
    balanced_sampler,
    batch_mixing,
    build_augmentation,
    class_weights,
    merge_classes,
    open_dataset,
    oversample_indices,
    prepare_splits,
    select_classes,
)
from ferlab.data.fingerprint import DataSketch
from ferlab.data.framing import read_framing
from ferlab.errors import FerlabError
from ferlab.models import LoadedModel, ModelMeta, build_model, check_input, load_model, model_entry, save_model
from ferlab.models.calibration import fit_calibration
from ferlab.models.onnx import write_model_onnx
from ferlab.rundir import LAST_CHECKPOINT, RunDir
from ferlab.training.callbacks import EpochMetricsCSV, EpochProgressBar, EpochSeeding, RunClock
from ferlab.training.config import TrainConfig, changed_fields, config_to_yaml, load_config
from ferlab.training.module import Classifier
from ferlab.training.optim import make_optimizer, make_schedule
from ferlab.training.speed import resolve_speed

__all__ = ["TrainResult", "TrainingInterrupted", "resume", "train"]

#: The folder each optional logger writes into the run folder.
LOGGER_FOLDERS = {"tensorboard": "tensorboard", "mlflow": "mlruns"}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """Where a run went and how it ended."""

    run_dir: Path
    best_val_acc: float
    best_epoch: int
    epochs_run: int
    seconds: float


class TrainingInterrupted(SystemExit):
    """A run stopped by SIGTERM or Ctrl-C (SIGINT); ``ferlab train --resume run_dir`` continues it.

    A SystemExit, as Lightning's own, with the shell's exit status for the signal (128 + its number).
    """

    def __init__(self, run_dir: Path, signum: signal.Signals) -> None:
        super().__init__(128 + signum)
        self.run_dir = run_dir
        self.signal = signum


def _resolve_preprocessing(cfg: TrainConfig) -> Preprocessing:
    """The model's preprocessing with the config's channels, image size and crop (`Preprocessing.resize`)."""
    default = model_entry(cfg.model.name).preprocessing
    prep = default.with_channels(cfg.data.channels or default.channels)
    size = cfg.data.image_size or default.input_size
    crop = cfg.data.crop
    try:
        return dataclasses.replace(prep, input_size=crop or size, resize=size if crop else None)
    except ValueError as err:
        raise FerlabError(f"config field {'data.crop' if crop else 'data.image_size'}: {err}") from None


def _saved_model(field: str, source: str, classes: Sequence[str], prep: Preprocessing, why: str) -> LoadedModel:
    """The saved model a config field names, once it predicts the run's classes from the run's input.

    Raises:
        FerlabError: no model at `source`, or one with other classes or preprocessing (`field` named).
    """
    try:
        saved = load_model(source)
    except FerlabError as err:
        raise FerlabError(f"config field {field}: {err}") from None
    if tuple(saved.classes) != tuple(classes):
        raise FerlabError(f"config field {field}: {source} predicts {list(saved.classes)}, this run "
                          f"{list(classes)}; {why} needs the same classes, in that order")
    if saved.meta.preprocessing != prep:
        raise FerlabError(f"config field {field}: {source} takes {saved.meta.preprocessing}, this run {prep}; "
                          f"{why} needs the same preprocessing")
    return saved


def _teacher(cfg: TrainConfig, classes: Sequence[str], prep: Preprocessing) -> nn.Module | None:
    """The distillation teacher's module: it is fed the student's batches."""
    if cfg.distill.teacher is None:
        return None
    return _saved_model("distill.teacher", cfg.distill.teacher, classes, prep, "a teacher fed the student's batches").module


def _warm_start(cfg: TrainConfig, model: nn.Module, classes: Sequence[str], prep: Preprocessing) -> None:
    """Copy the weights of the saved model `cfg.model.init` into `model`: fine-tuning it rather than starting afresh.

    Raises:
        FerlabError: the saved model is another architecture, or its classes or preprocessing differ (named).
    """
    saved = _saved_model("model.init", cfg.model.init, classes, prep, "starting from its weights")
    if saved.meta.architecture != cfg.model.name:
        raise FerlabError(f"config field model.init: {cfg.model.init} is a {saved.meta.architecture}, this run trains "
                          f"a {cfg.model.name}; set model.name: {saved.meta.architecture} (and its kwargs) to start from it")
    try:
        model.load_state_dict(saved.module.state_dict())
    except RuntimeError as err:
        raise FerlabError(f"config field model.init: the weights of {cfg.model.init} do not fit this run's "
                          f"{cfg.model.name} (model.kwargs differ?): {err}") from None


def _unstarted(run_dir: Path) -> bool:
    """Whether `run_dir` holds only what a run writes before its first checkpoint, so training into it loses nothing.

    That is a config.yaml exactly as ferlab writes one (never a hand-written file), an empty
    checkpoints folder, and the folders of the loggers that config names.
    """
    run = RunDir(run_dir)
    try:
        cfg = load_config(run.config)
        if run.config.read_text(encoding="utf-8") != config_to_yaml(cfg):
            return False
    except Exception:  # any file may sit there; whatever does not load as ferlab's own config is not ours
        return False
    loggers = (LOGGER_FOLDERS[name] for name in cfg.loggers if name in LOGGER_FOLDERS)
    ours = {run.config.name, run.checkpoints.name, *loggers}
    checkpoints = run.checkpoints
    return (all(p.name in ours for p in run_dir.iterdir())
            and not (checkpoints.exists() and (not checkpoints.is_dir() or any(checkpoints.iterdir()))))


def _check_checkpoint(run_dir: Path) -> Path:
    """`run_dir`'s last checkpoint, once it loads as one: damaged or foreign files get one line, not a traceback.

    Loaded as Lightning loads it later, with ``weights_only`` (tensors and plain values, never other objects).
    """
    path = RunDir(run_dir).last_checkpoint
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated, foreign or hostile bytes: torch raises assorted errors (zip, pickle, EOF)
        state = None
    if not isinstance(state, dict) or not {"state_dict", "loops", "callbacks"} <= state.keys():
        raise FerlabError(f"cannot resume {run_dir}: {LAST_CHECKPOINT} is damaged, or not a checkpoint that "
                          "ferlab train wrote (it is left as it is); train into a new --out")
    return path


def _check_run_dir(out: str, resume: bool, main: bool) -> tuple[Path, Path | None]:
    """The run folder, and the checkpoint to continue from (None: start at epoch 1).

    A folder holding only what an unstarted run wrote (`_unstarted`) may be trained into again,
    or resumed from its first epoch: a run stopped before its first checkpoint is not stuck.
    """
    run = RunDir(out)
    run_dir = run.path
    if not main:  # DDP's other ranks: rank 0 has checked the folder
        return run_dir, run.last_checkpoint if resume and run.can_resume() else None
    if not resume:
        if not _unstarted(run_dir):
            check_new_folder(run_dir, "run folder", "choose a new --out (or resume it)")
        return run_dir, None
    if run.last_checkpoint.exists():
        return run_dir, _check_checkpoint(run_dir)
    if _unstarted(run_dir):
        log.info("%s stopped before its first checkpoint; training it from epoch 1", run_dir)
        return run_dir, None
    raise FerlabError(f"cannot resume {run_dir}: no {LAST_CHECKPOINT} (was it trained by this ferlab version?)")


def _check_val_split(table: SampleTable, cfg: TrainConfig) -> None:
    """Refuse data too small to leave a validation image: the best epoch, early stopping and calibration need one."""
    if len(table.split("val")):
        return
    counts = ", ".join(f"{label}: {n}" for label, n in table.label_counts().items())
    raise FerlabError(
        f"{cfg.data.path}: too few images to set any aside for validation ({counts} images); "
        f"data.val_fraction={cfg.data.val_fraction} of a class this small rounds to none, and training needs at least "
        f"one validation image: add images (about {round(1 / cfg.data.val_fraction)} per class), raise "
        "data.val_fraction, or add a val/ folder"
    )


def _best_state_dict(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The wrapped model's weights from Lightning's best checkpoint (loaded without unpickling code)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}


def _train_loader(dataset: ImageDataset, num_classes: int, cfg: TrainConfig, loader_args: dict) -> DataLoader:
    """Batches in a fresh order per epoch, re-weighted or oversampled when `data.balance` asks for it."""
    if cfg.data.balance == "sampler":
        sampler = balanced_sampler(dataset.targets, num_classes, cfg.seed)
    elif cfg.data.balance == "oversample":
        sampler = EpochSampler(oversample_indices(dataset.targets, num_classes, cfg.seed).tolist(), cfg.seed)
    else:
        sampler = EpochSampler(range(len(dataset)), cfg.seed)
    # A last batch of one image would break BatchNorm in dense layers; drop the ragged end. The
    # loader's own generator keeps its per-iterator seed draw off the global generator, whose
    # state at the first step must not depend on when Lightning creates the iterator (resumes).
    return DataLoader(dataset, sampler=sampler, drop_last=len(sampler) > cfg.data.batch_size,
                      generator=torch.Generator().manual_seed(cfg.seed), **loader_args)


def _calibrate(model: nn.Module, meta: ModelMeta, val_set: ImageDataset, run_dir: Path) -> ModelMeta:
    """`meta` with a temperature fitted on the validation split's logits; writes ``calibration.json``."""
    logits = LoadedModel(model.eval(), meta).predict_logits(val_set.pixels)  # (N, classes)
    calibration = fit_calibration(torch.from_numpy(logits), val_set.targets)
    write_json(RunDir(run_dir).calibration, {"split": "val", **calibration.to_dict()})
    log.info("temperature %.3f: validation ECE %.4f -> %.4f", calibration.temperature, calibration.ece_before,
             calibration.ece_after)
    return dataclasses.replace(meta, temperature=calibration.temperature)


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Hide, for this run only, Lightning's notices that say nothing about it.

    Its litlogger advert (logged by every Trainer), the torch deprecation that Lightning 2.6's own
    pytree code triggers, and the warning that a resumed run's checkpoint folder is not empty.
    """
    notices = logging.getLogger("lightning.pytorch.utilities.rank_zero")

    def no_advert(record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                category=FutureWarning)
        notices.addFilter(no_advert)
        try:
            yield
        finally:
            notices.removeFilter(no_advert)


def _fit(trainer: L.Trainer, module: Classifier, loaders: tuple[DataLoader, DataLoader], checkpoint: Path | None,
         run_dir: Path) -> None:
    """`trainer.fit`, where a stop by SIGTERM or Ctrl-C raises `TrainingInterrupted`.

    Lightning turns both into a SystemExit once its state is safe: SIGTERMException, and
    ``sys.exit(1)`` while it handles the KeyboardInterrupt.
    """
    try:
        trainer.fit(module, *loaders, ckpt_path=checkpoint, weights_only=True)
    except SIGTERMException:
        raise TrainingInterrupted(run_dir, signal.SIGTERM) from None
    except SystemExit as stop:
        if isinstance(stop.__context__, KeyboardInterrupt):
            raise TrainingInterrupted(run_dir, signal.SIGINT) from None
        raise


def _loggers(names: Sequence[str], run_dir: Path) -> list:
    """Optional experiment trackers besides metrics.csv; each needs its own package."""
    loggers = []
    try:
        for name in names:
            if name == "tensorboard":
                from lightning.pytorch.loggers import TensorBoardLogger

                loggers.append(TensorBoardLogger(save_dir=run_dir, name=LOGGER_FOLDERS[name], version=""))
            elif name == "mlflow":
                from lightning.pytorch.loggers import MLFlowLogger

                loggers.append(MLFlowLogger(experiment_name="ferlab", run_name=run_dir.name,
                                            tracking_uri=f"file:{(run_dir / LOGGER_FOLDERS[name]).absolute()}"))
    except ModuleNotFoundError as err:
        raise FerlabError(f"logger {name} needs a package that is not installed ({err}); pip install {name}") from None
    return loggers


def resume(run_dir: str | Path, callbacks: Sequence[Callback] = (), *, wanted: TrainConfig | None = None) -> TrainResult:
    """Continue an interrupted run from its last checkpoint, with its own config.

    Args:
        wanted: the config the caller asks for (e.g. the CLI's --config and overrides); a run is
            only continued under the config it started with, so any difference is refused.

    Epoch k of the resumed run sees the same batches and random numbers as in an
    uninterrupted run (`EpochSampler`, `EpochSeeding`), so it ends with the same
    weights (with ``data.num_workers: 0``, the default).
    """
    run = RunDir(run_dir)
    run_dir = run.path
    if not run.config.is_file():
        raise FerlabError(f"cannot resume {run_dir}: it has no config.yaml (is it a ferlab run folder?)")
    cfg = load_config(run.config, values={"out": str(run_dir)})
    changed = changed_fields(cfg, wanted) if wanted is not None else []
    if changed:
        raise FerlabError(f"cannot resume {run_dir} under a changed config: {', '.join(changed)} differ from its "
                          "config.yaml; resume it as it is (ferlab train --resume DIR alone), or train a new --out")
    # The checkpoint holds the weights; a pretrained file or hub download is not needed again.
    return train(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pretrained=None)), callbacks, resume=True)


def train(
    cfg: TrainConfig, callbacks: Sequence[Callback] = (), *, resume: bool = False, table: SampleTable | None = None
) -> TrainResult:
    """Train `cfg.model.name` on `cfg.data.path` and write the run folder `cfg.out`.

    The run folder holds ``config.yaml`` (resolved), ``metrics.csv`` (one row per
    epoch), ``model.safetensors`` + ``model.json`` (the best epoch by validation
    accuracy, with its temperature when `cfg.calibrate`), ``calibration.json`` (then),
    ``model.onnx`` (the same model for ONNX Runtime, when `cfg.export_onnx`) and ``summary.json``.

    Args:
        callbacks: extra Lightning callbacks (e.g. a hyperparameter search's pruning).
        resume: continue `cfg.out` from its last checkpoint (see `resume`).
        table: samples to train on instead of reading `cfg.data.path` (e.g. one fold of a
            k-fold split); ``config.yaml`` still names `cfg.data.path` as their origin.

    Raises:
        FerlabError: bad config, data or output folder.
    """
    cfg.validate()
    # With DDP, Lightning starts the other ranks by re-running this command: only rank 0 writes.
    main = rank_zero_only.rank == 0
    run_dir, resume_from = _check_run_dir(cfg.out, resume, main)
    started = time.perf_counter()
    table, classes = _training_table(cfg, table)
    prep = _resolve_preprocessing(cfg)
    teacher = _teacher(cfg, classes, prep)
    model, meta = _new_model(cfg, classes, prep)
    # Decoding every image first means bad data fails the run before its folder exists.
    train_set, val_set, mixing = _datasets(cfg, table, classes, prep)
    meta = dataclasses.replace(meta, training_data=DataSketch.from_pixels(train_set.pixels))
    run_dir.mkdir(parents=True, exist_ok=True)
    precision, channels_last = resolve_speed(cfg.model.name, cfg.precision, cfg.channels_last, cfg.accelerator)
    resolved = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, image_size=prep.pixel_size, channels=prep.channels, classes=classes),
        precision=precision, channels_last=channels_last,
    )
    if main and not resume:
        write_text(RunDir(run_dir).config, config_to_yaml(resolved))
    loader_args = {"batch_size": cfg.data.batch_size, "num_workers": cfg.data.num_workers}
    train_loader = _train_loader(train_set, len(classes), cfg, loader_args)
    val_loader = DataLoader(val_set, **loader_args)
    module = _classifier(cfg, model, train_set, len(classes), mixing, teacher, channels_last, len(train_loader))
    fit = _Fit(resolved, run_dir, started, len(train_loader), callbacks)
    with _quiet_lightning():
        _fit(fit.trainer, module, (train_loader, val_loader), resume_from, run_dir)
    result = fit.result()
    if main:
        model.load_state_dict(_best_state_dict(Path(fit.best.best_model_path)))
        _save_run(cfg, model, meta, val_set, result, {
            "classes": classes,
            "samples": {name: table.split(name).label_counts() for name in table.splits()},
            "skipped": train_set.skipped + val_set.skipped,
        })
    return result


def _training_table(cfg: TrainConfig, table: SampleTable | None) -> tuple[SampleTable, list[str]]:
    """The samples (`table`, else `cfg.data.path`) with the config's merges, classes and splits applied."""
    if table is None:
        table = open_dataset(cfg.data.path, soft_labels=cfg.data.soft_labels)
    if cfg.data.merge:
        table = merge_classes(table, cfg.data.merge)
    table, classes = select_classes(table, cfg.data.classes)
    if len(classes) < 2:
        raise FerlabError(f"{cfg.data.path}: training needs at least two classes, found {classes}")
    table = prepare_splits(table, cfg.data.val_fraction, cfg.data.test_fraction, cfg.seed, groups=cfg.data.groups)
    _check_val_split(table, cfg)
    return table, classes


def _new_model(cfg: TrainConfig, classes: list[str], prep: Preprocessing) -> tuple[nn.Module, ModelMeta]:
    """The model to train, seeded, and the metadata it will be saved with (framing and test-time views included)."""
    kwargs = {**cfg.model.kwargs, **({"pretrained": cfg.model.pretrained} if cfg.model.pretrained else {})}
    framing = read_framing(cfg.data.framing) if cfg.data.framing else {}
    meta = ModelMeta(cfg.model.name, tuple(classes), prep, kwargs, framing=framing, tta=cfg.data.tta)
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # before the weights are initialised
    model = build_model(meta)
    check_input(model, cfg.model.name, prep.channels, prep.input_size)
    if cfg.model.init:
        _warm_start(cfg, model, classes, prep)
    own_classes = getattr(model, "classes", None)  # an ensemble's members fix its classes
    if own_classes is not None and tuple(own_classes) != tuple(classes):
        raise FerlabError(f"{cfg.model.name} predicts {list(own_classes)} but {cfg.data.path} has {classes}")
    return model, meta


def _datasets(
    cfg: TrainConfig, table: SampleTable, classes: list[str], prep: Preprocessing
) -> tuple[ImageDataset, ImageDataset, Any]:
    """The decoded train and val splits, and the batch mixing (mixup, cutmix) the augmentation asks for."""
    train_set = ImageDataset(table.split("train"), classes, prep, build_augmentation(cfg.data.augment),
                             cache_dir=cfg.data.cache_dir)
    val_set = ImageDataset(table.split("val"), classes, prep, cache_dir=cfg.data.cache_dir)
    mixing = batch_mixing(cfg.data.augment, len(classes))
    if mixing is not None and train_set.soft_targets is not None:
        raise FerlabError(f"{cfg.data.path} has soft labels (votes); mixup and cutmix need hard labels, set data.augment.mixup=0 data.augment.cutmix=0")
    return train_set, val_set, mixing


def _classifier(cfg: TrainConfig, model: nn.Module, train_set: ImageDataset, classes: int, mixing: Any,
                teacher: nn.Module | None, channels_last: bool, steps_per_epoch: int) -> Classifier:
    """The Lightning module: the model with the config's optimiser, schedule, loss and distillation."""
    optim = cfg.optim
    weights = (class_weights(train_set.targets, classes, cfg.data.balance)
               if cfg.data.balance in ("inverse", "effective") else None)
    return Classifier(
        model=model,
        num_classes=classes,
        optimizer=make_optimizer(optim.name, lr=optim.lr, momentum=optim.momentum, nesterov=optim.nesterov,
                                 weight_decay=optim.weight_decay),
        schedule=make_schedule(cfg.schedule, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch),
        lr=optim.lr,
        backbone_lr_scale=optim.backbone_lr_scale,
        label_smoothing=optim.label_smoothing,
        l1=optim.l1,
        class_weights=weights,
        batch_mixing=mixing,
        freeze=cfg.model.freeze,
        channels_last=channels_last,
        teacher=teacher,
        distill_weight=cfg.distill.weight,
        distill_temperature=cfg.distill.temperature,
    )


class _Fit:
    """The Lightning trainer of a run and the callbacks whose records make its result."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, started: float, steps_per_epoch: int,
                 callbacks: Sequence[Callback]) -> None:
        run = RunDir(run_dir)
        self.run_dir = run_dir
        self.best = ModelCheckpoint(dirpath=run.checkpoints, filename="best", monitor="val_acc", mode="max")
        # Every epoch, improved or not (save_last only follows saved best ones), once the epoch has fully ended.
        last = ModelCheckpoint(dirpath=run.checkpoints, filename=run.last_checkpoint.stem,
                               save_on_train_epoch_end=True, enable_version_counter=False)
        self.epochs, self.clock = EpochMetricsCSV(run.metrics), RunClock(started)
        with _quiet_lightning():
            self.trainer = L.Trainer(
                max_epochs=cfg.epochs,
                accelerator=cfg.accelerator,
                devices=cfg.devices,
                num_nodes=cfg.num_nodes,
                strategy=cfg.strategy,
                precision=cfg.precision,
                gradient_clip_val=cfg.optim.grad_clip or None,
                deterministic=True,
                logger=_loggers(cfg.loggers, run_dir) or False,
                default_root_dir=run_dir,
                enable_model_summary=False,
                log_every_n_steps=max(1, min(50, steps_per_epoch)),
                callbacks=[
                    self.best, last, EarlyStopping("val_acc", mode="max", patience=cfg.patience), self.epochs,
                    EpochSeeding(cfg.seed), self.clock, EpochProgressBar(), *callbacks,
                ],
            )

    def result(self) -> TrainResult:
        best = max(self.epochs.rows, key=lambda row: row["val_acc"])
        return TrainResult(run_dir=self.run_dir, best_val_acc=float(best["val_acc"]), best_epoch=int(best["epoch"]),
                           epochs_run=len(self.epochs.rows), seconds=round(self.clock.seconds(), 2))


def _save_run(cfg: TrainConfig, model: nn.Module, meta: ModelMeta, val_set: ImageDataset, result: TrainResult,
              facts: dict[str, Any]) -> None:
    """The best epoch's model (calibrated, and as ONNX, where the config asks), then ``summary.json`` last."""
    run_dir = result.run_dir
    if cfg.calibrate:
        meta = _calibrate(model, meta, val_set, run_dir)
    save_model(model, meta, run_dir)
    if cfg.export_onnx:
        write_model_onnx(LoadedModel(model.eval(), meta), run_dir)
    write_json(RunDir(run_dir).summary, {
        **{k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(result).items()},
        **facts,
    })
    log.info("best val_acc %.4f at epoch %d; model saved in %s", result.best_val_acc, result.best_epoch, run_dir)
