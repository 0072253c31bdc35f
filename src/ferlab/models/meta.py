"""What a trained model carries beside its weights: architecture, classes, preprocessing and temperature."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ferlab.data.fingerprint import DataSketch
from ferlab.data.framing import Framing
from ferlab.data.labels import canonical_label
from ferlab.data.transforms import Preprocessing, check_tta
from ferlab.errors import FerlabError

__all__ = ["ModelMeta"]

FORMAT_VERSION = 1
#: Temperatures outside this range overflow softmax into NaN (calibration fits within 0.05..20).
TEMPERATURE_LIMITS = (1e-3, 1e3)


@dataclass(frozen=True)
class ModelMeta:
    """Everything needed to rebuild a model and feed it, stored as JSON next to its weights.

    Attributes:
        architecture: registered model name.
        classes: output classes, in output order.
        preprocessing: how an image becomes its input.
        model_kwargs: extra builder arguments (e.g. dropout).
        temperature: divides the logits before softmax (temperature scaling, see
            `ferlab.models.calibration`); stored here so that every consumer of the
            model gets calibrated probabilities. 1.0: uncalibrated.
        framing: how a face found by each detector (``yunet``, ``haar``) is cut to look
            like the training crops, measured on them (`ferlab.inference.framing`); a
            detector without an entry gets the default `Framing` (models saved before
            framing was stored have none).
        tta: the test-time augmentation the model is evaluated and used with (`tta_views`):
            evaluate, predict, serve and ONNX export apply it unless told otherwise.
        training_data: a sketch of the decoded training images (`ferlab.data.fingerprint`), so
            that scoring them later can be recognised as in-sample; None for models saved before.

    Raises:
        FerlabError: a temperature outside `TEMPERATURE_LIMITS`.
    """

    architecture: str
    classes: tuple[str, ...]
    preprocessing: Preprocessing
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0
    framing: Mapping[str, Framing] = field(default_factory=dict)
    tta: str = "none"
    training_data: DataSketch | None = None

    def framing_for(self, detector: str) -> Framing:
        """The framing of faces found by `detector` (a detector's name)."""
        return self.framing.get(detector, Framing())

    def __post_init__(self) -> None:
        value = self.temperature
        low, high = TEMPERATURE_LIMITS
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value <= high:
            raise FerlabError(f"field temperature must be a positive finite number in {low}..{high}, got {value!r}")
        object.__setattr__(self, "temperature", float(value))  # frozen; a plain float (not numpy's) for JSON
        try:
            check_tta(self.tta)
        except FerlabError as err:
            raise FerlabError(f"field tta: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["classes"] = list(self.classes)
        data["preprocessing"] = {k: list(v) if isinstance(v, tuple) else v for k, v in data["preprocessing"].items()}
        data["framing"] = {name: framing.to_dict() for name, framing in self.framing.items()}
        data["training_data"] = None if self.training_data is None else self.training_data.to_dict()
        return {"format_version": FORMAT_VERSION, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> ModelMeta:
        """Raises: FerlabError naming `source` and the field that is missing or wrong."""
        try:
            if data.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"format_version {data.get('format_version')!r} is not {FORMAT_VERSION}")
            prep = data["preprocessing"]
            return cls(
                architecture=str(data["architecture"]),
                classes=tuple(canonical_label(c) for c in data["classes"]),
                preprocessing=Preprocessing(
                    input_size=int(prep["input_size"]),
                    channels=int(prep["channels"]),
                    mean=tuple(float(v) for v in prep["mean"]),
                    std=tuple(float(v) for v in prep["std"]),
                    resize=None if prep.get("resize") is None else int(prep["resize"]),  # absent: not a crop model
                ),
                model_kwargs=dict(data.get("model_kwargs", {})),
                temperature=data.get("temperature", 1.0),  # absent in models saved before calibration existed
                framing=_read_framing(data.get("framing", {})),  # absent before framing was stored
                tta=str(data.get("tta", "none")),  # absent before models carried their test-time views
                training_data=_read_sketch(data.get("training_data")),
            )
        except KeyError as err:
            raise FerlabError(f"{source}: missing field {err}") from None
        except (TypeError, ValueError, FerlabError) as err:
            raise FerlabError(f"{source}: {err}") from None


def _read_framing(data: Any) -> dict[str, Framing]:
    """Raises: FerlabError: not an object of detector names to framing records (the record named)."""
    if not isinstance(data, Mapping):
        raise FerlabError(f"field framing must map detector names to framing records, got {type(data).__name__}")
    return {str(name): Framing.from_dict(record, f"framing[{name!r}]") for name, record in data.items()}


def _read_sketch(data: Any) -> DataSketch | None:
    """None where a model predates training-data sketches; raises FerlabError for a damaged one."""
    return None if data is None else DataSketch.from_dict(data, "field training_data")
