"""Typed training configs: dataclasses, loaded from YAML, overridden by ``key=value``.

One mechanism serves the CLI, YAML files and Python: OmegaConf merges the
dataclass defaults, a YAML file and dotted overrides, and checks the types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ferlab.data.augment import AugmentConfig
from ferlab.data.imbalance import BALANCING
from ferlab.data.transforms import TTA_MODES
from ferlab.errors import FerlabError
from ferlab.models.freezing import parse_freeze
from ferlab.rundir import read_yaml
from ferlab.training.optim import OPTIMIZERS, SCHEDULES

__all__ = [
    "DataConfig",
    "DistillConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "changed_fields",
    "config_to_yaml",
    "load_config",
    "read_config_file",
]

PRECISIONS = ("auto", "32", "bf16-mixed", "16-mixed")
LOGGERS = ("tensorboard", "mlflow")


@dataclass
class DataConfig:
    """Which data, which classes, and how it is fed.

    Attributes:
        classes: a subset of the classes (default: all present).
        merge: classes relabelled into others, e.g. ``{angry: [disgust]}``.
        image_size, channels: default to the model's own (48, grayscale for the CNNs).
        crop: train on random `crop`-pixel crops of the `image_size` images and predict on the
            centre crop (or the ten crops of `tta`): the crop recipe. None: whole images.
        tta: the test-time views stored with the model (`ferlab.data.transforms.tta_views`), which
            evaluate, predict, serve and ONNX apply by default: none, flip or tencrop.
        val_fraction, test_fraction: shares split off data that lacks those splits.
        groups: subject pattern (ckplus, jaffe, kdef or a regex) so that splits
            made here never put one person in two splits.
        soft_labels: train on vote shares where the data has them (FER+, a
            manifest's votes column) instead of the majority label.
        balance: none, inverse or effective (loss weights), sampler or oversample.
        augment: a preset plus knobs (see `ferlab.data.augment`).
        cache_dir: folder for decoded pixels reused across runs (none: memory only).
        framing: how the data's crops frame faces, measured by ``ferlab data framing`` (a JSON
            file; `configs/framing/fer2013.json` for FER2013); stored in the model so that
            faces detected in photos are cut like its training crops. None: the default framing.
    """

    path: str = ""
    classes: list[str] | None = None
    merge: dict[str, list[str]] = field(default_factory=dict)
    image_size: int | None = None
    crop: int | None = None
    tta: str = "none"
    channels: int | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    groups: str | None = None
    soft_labels: bool = False
    batch_size: int = 64
    num_workers: int = 0
    balance: str = "none"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    cache_dir: str | None = None
    framing: str | None = None


@dataclass
class DistillConfig:
    """Knowledge distillation (Hinton et al. 2015): the student also learns a trained teacher's soft outputs.

    Attributes:
        teacher: a saved model (run folder, bundled name or model file) with the student's classes and
            preprocessing; None: no distillation.
        weight: share of the loss taken by the teacher term (the rest is cross-entropy on the labels).
        temperature: softens both outputs before they are compared; the term is scaled by its square.
    """

    teacher: str | None = None
    weight: float = 0.5
    temperature: float = 4.0


@dataclass
class ModelConfig:
    """A registered model (``ferlab models``) and how it starts.

    Attributes:
        kwargs: builder options, e.g. ``dropout`` or a backbone's ``head_hidden``.
        pretrained: for timm backbones: ``hub`` (download once into the
            Hugging Face cache) or a local weights file.
        freeze: none, backbone, last:N, first:N or gradual:K (see `ferlab.models.freezing`).
        init: a saved ferlab model (bundled name, run folder or ``.safetensors``) of this architecture, classes
            and preprocessing whose weights the run starts from: fine-tuning it on other data or another
            augmentation instead of training afresh.
    """

    name: str = "cnn3_bn"
    kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None
    freeze: str = "none"
    init: str | None = None


@dataclass
class OptimConfig:
    """The optimizer and the loss's regularisers.

    Attributes:
        name: sgd, adam, adamw or rmsprop.
        momentum: SGD's and RMSprop's; `nesterov` applies to SGD.
        weight_decay: L2 (decoupled for AdamW); with `l1` it makes an elastic net.
        l1: weight of the L1 penalty on weights (not biases or norms) added to the loss.
        label_smoothing: cross-entropy label smoothing (e.g. 0.1).
        grad_clip: clip the gradient norm to this value (0: no clipping).
        backbone_lr_scale: every block but the head learns at `lr` times this.
    """

    name: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    l1: float = 0.0
    label_smoothing: float = 0.0
    grad_clip: float = 0.0
    backbone_lr_scale: float = 1.0


@dataclass
class ScheduleConfig:
    """The learning-rate schedule: none, plateau, cosine (with warm-up), onecycle or step.

    Attributes:
        warmup_epochs: cosine's linear warm-up.
        min_lr: the floor of cosine and plateau.
        factor, patience: ReduceLROnPlateau on validation accuracy.
        step_size, gamma: step decay.
    """

    name: str = "none"
    warmup_epochs: int = 0
    min_lr: float = 0.0
    factor: float = 0.5
    patience: int = 3
    step_size: int = 10
    gamma: float = 0.1


@dataclass
class TrainConfig:
    """A whole training run.

    Attributes:
        patience: early stopping after this many epochs without a better validation accuracy.
        precision: auto (bf16-mixed for model families that train faster so on hardware with bf16,
            else 32; see `ferlab.training.speed`), 32, bf16-mixed (CPUs with bf16, recent GPUs) or
            16-mixed (GPU). The resolved value is written into the run's config.yaml.
        channels_last: train in the channels-last memory format (None: where precision auto picks bf16).
        accelerator, devices, num_nodes, strategy: Lightning's; several devices or
            nodes train with DDP (e.g. ``devices=2 strategy=ddp``), gloo on CPUs.
        loggers: extra loggers besides metrics.csv: tensorboard, mlflow.
        calibrate: fit a temperature on the validation split after training and store it with
            the model, so its probabilities match its accuracy (see `ferlab.models.calibration`).
        export_onnx: write ``model.onnx`` beside the weights, so that predict, video and serve
            start on ONNX Runtime without exporting first.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    epochs: int = 30
    patience: int = 5
    seed: int = 0
    precision: str = "auto"
    channels_last: bool | None = None
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    loggers: list[str] = field(default_factory=list)
    calibrate: bool = True
    export_onnx: bool = True
    out: str = ""

    def validate(self) -> None:
        """Raises: FerlabError naming the first field with an impossible value."""
        checks = [
            (bool(self.data.path), "data.path", "is required"),
            (bool(self.out), "out", "is required"),
            (self.optim.name in OPTIMIZERS, "optim.name", f"must be one of {OPTIMIZERS}"),
            (self.optim.lr > 0, "optim.lr", "must be positive"),
            (self.schedule.name in SCHEDULES, "schedule.name", f"must be one of {SCHEDULES}"),
            (0 <= self.optim.label_smoothing < 1, "optim.label_smoothing", "must lie in [0, 1)"),
            (min(self.optim.l1, self.optim.weight_decay, self.optim.grad_clip) >= 0,
             "optim.l1/weight_decay/grad_clip", "must not be negative"),
            (self.precision in PRECISIONS, "precision", f"must be one of {PRECISIONS}"),
            (set(self.loggers) <= set(LOGGERS), "loggers", f"may hold {LOGGERS}"),
            (self.devices >= 1 and self.num_nodes >= 1, "devices/num_nodes", "must be at least 1"),
            (self.optim.backbone_lr_scale >= 0, "optim.backbone_lr_scale", "must not be negative"),
            (self.epochs >= 1, "epochs", "must be at least 1"),
            (self.data.batch_size >= 1, "data.batch_size", "must be at least 1"),
            (self.data.channels in (None, 1, 3), "data.channels", "must be 1 or 3"),
            (self.data.crop is None or self.data.crop >= 1, "data.crop", "must be a positive size in pixels"),
            (self.data.tta in TTA_MODES, "data.tta", f"must be one of {TTA_MODES}"),
            (0 <= self.distill.weight <= 1, "distill.weight", "must lie in [0, 1]"),
            (self.distill.temperature > 0, "distill.temperature", "must be positive"),
            (self.data.balance in BALANCING, "data.balance", f"must be one of {BALANCING}"),
            (0 < self.data.val_fraction < 1, "data.val_fraction", "must lie between 0 and 1"),
            (0 <= self.data.test_fraction < 1 - self.data.val_fraction, "data.test_fraction", "must lie in [0, 1 - val_fraction)"),
        ]
        for ok, name, rule in checks:
            if not ok:
                raise FerlabError(f"config field {name} {rule}")
        for name, check in (("data.augment", self.data.augment.resolved), ("model.freeze", lambda: parse_freeze(self.model.freeze))):
            try:
                check()
            except FerlabError as err:
                raise FerlabError(f"config field {name}: {err}") from None


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    values: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Defaults, then the YAML file at `path` (over the config its ``base:`` names), then `values`, then overrides.

    Args:
        path: a YAML file shaped like `TrainConfig`, optionally with ``base: other.yaml`` (relative to
            the file): see `read_config_file`.
        overrides: dotted ``key=value`` strings, e.g. ``optim.lr=3e-4``.
        values: dotted keys with Python values, taken verbatim (CLI flags; a path
            stays a string even when it looks like a number).

    Raises:
        FerlabError: unreadable YAML, an unknown key or a value of the wrong type.
    """
    try:
        layers = [OmegaConf.structured(TrainConfig)]
        if path is not None:
            layers.append(OmegaConf.create(read_config_file(path)))
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise FerlabError(f"overrides must look like key=value, got {bad}")
        merged = OmegaConf.merge(*layers)
        for key, value in (values or {}).items():
            OmegaConf.update(merged, key, value, merge=False)
        cfg = OmegaConf.to_object(OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides))))
    except OmegaConfBaseException as err:
        where = f" in {path}" if path else ""
        raise FerlabError(f"bad config{where}: {str(err).splitlines()[0]} (field {getattr(err, 'full_key', '?')})") from None
    assert isinstance(cfg, TrainConfig)
    return cfg


def read_config_file(path: str | Path, _named_by: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The YAML config at `path`, laid over the config file its ``base:`` key names (relative to `path`).

    A recipe that changes a few keys of another states only those, so a change to the base reaches it.
    Blocks merge key by key, except that a block naming a different ``name`` or ``preset`` than the
    base's replaces it whole: its knobs belong to that name (a cosine schedule takes no plateau
    ``factor``, the photo preset no ``rotation`` of preset none). OmegaConf merges every key, so this
    one rule is written here.

    Raises:
        FerlabError: a missing or unreadable file, a ``base:`` that is not a path, or a cycle of bases.
    """
    path = Path(path).expanduser()
    chain = (*_named_by, path.resolve())
    if path.resolve() in _named_by:
        raise FerlabError("config bases form a cycle: " + " -> ".join(str(p) for p in chain))
    what = f"base config (named by {_named_by[-1]})" if _named_by else "config file"
    tree = read_yaml(path, what)
    if tree is None:  # an empty file: the defaults
        tree = {}
    if not isinstance(tree, dict):
        raise FerlabError(f"{path}: a config file must hold a mapping of fields, found {type(tree).__name__}")
    base = tree.pop("base", None)
    if base is None:
        return tree
    if not isinstance(base, str) or not base:
        raise FerlabError(f"{path}: base must be the path of another config file, got {base!r}")
    return _lay_over(read_config_file(path.parent / base, chain), tree)


def _lay_over(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in child.items():
        below = merged.get(key)
        if isinstance(value, dict) and isinstance(below, dict) and not _names_another(below, value):
            merged[key] = _lay_over(below, value)
        else:
            merged[key] = value
    return merged


def _names_another(base: Mapping[str, Any], child: Mapping[str, Any]) -> bool:
    return any(key in child and child[key] != base.get(key) for key in ("name", "preset"))


def config_to_yaml(cfg: TrainConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


#: Fields `train` resolves when they are left unset: a stored run's value matches an unset one.
RESOLVED_WHEN_UNSET = {"data.image_size": None, "data.channels": None, "data.classes": None,
                       "precision": "auto", "channels_last": None}
#: Keys that say where a run's files go, not how it trains: a run may go on with other values.
WHERE_NOT_HOW = ("out", "data.cache_dir")


def changed_fields(stored: TrainConfig, wanted: TrainConfig) -> list[str]:
    """The dotted keys (``optim.lr``) in which a run's stored config differs from the one now asked for, sorted.

    `WHERE_NOT_HOW` keys are not compared; a field `train` resolves (`RESOLVED_WHEN_UNSET`) differs only when
    `wanted` sets it; class lists compare as sets and data paths as resolved paths.
    """
    have_all, want_all = (_flat(OmegaConf.to_container(OmegaConf.structured(c))) for c in (stored, wanted))
    changed = []
    for key in sorted(have_all.keys() | want_all.keys()):
        have, want = have_all.get(key), want_all.get(key)
        if key in WHERE_NOT_HOW or (key in RESOLVED_WHEN_UNSET and want == RESOLVED_WHEN_UNSET[key]):
            continue
        if key == "data.classes":
            have, want = sorted(have or []), sorted(want)
        elif key == "data.path":
            have, want = Path(str(have)).expanduser().resolve(), Path(str(want)).expanduser().resolve()
        if have != want:
            changed.append(key)
    return changed


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
