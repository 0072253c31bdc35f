"""`calibrate(...)`: fit a saved model's temperature on a dataset and store it in the model.

Training calibrates on its validation split already; this serves models trained
before that, and recalibration on other data (e.g. the target domain's own
validation images).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ferlab._compat import DictAccess
from ferlab._io import write_json
from ferlab.data import ImageDataset, open_dataset
from ferlab.errors import FerlabError
from ferlab.evaluation.evaluate import choose_split, shared_classes
from ferlab.evaluation.plots import plot_reliability
from ferlab.models.backend import ModelBackend
from ferlab.models.calibration import Calibration, fit_calibration
from ferlab.models.io import save_temperature
from ferlab.models.onnx import ONNX_NAME, OnnxModel, load_classifier, update_onnx_meta
from ferlab.rundir import RunDir

__all__ = ["calibrate"]


@dataclass(frozen=True)
class CalibrateResult(DictAccess):
    """A temperature fit stored in a model: the fit, where it was stored, and what it was fitted on."""

    model: Path
    data: str
    split: str
    calibration: Calibration
    skipped: list[str]
    left_out: dict[str, int]
    out: Path

    @property
    def temperature(self) -> float:
        return self.calibration.temperature

    def to_dict(self) -> dict[str, Any]:
        """The report, as written to ``calibration.json``."""
        return {"model": str(self.model), "data": self.data, "split": self.split, **self.calibration.to_dict(),
                "skipped": self.skipped, "left_out": self.left_out}


def calibrate(model: str | Path, data: str | Path, split: str = "val", out: str | Path | None = None) -> CalibrateResult:
    """Fit the temperature of the saved `model` on `data`'s `split`; store it in the model if it lowers the NLL.

    A fit that does not lower the NLL there keeps the model's temperature (see `Calibration`).
    Images of classes the model does not predict are left out and counted. Writes
    ``calibration.json`` and ``reliability.png`` (before and fitted) into `out`, and for a run the same
    ``calibration.json`` beside ``model.json``, so that the run's record matches its temperature.

    Args:
        model: a run folder, the model's ``.safetensors`` or ``.json`` file (the temperature goes into
            ``model.json`` and the ``model.onnx`` beside it), or an exported ``.onnx`` file (into its metadata).
        split: as in `choose_split`; fit on held-out images, never on the test split you report.
        out: default ``<model folder>/calibration``, or ``<export name>-calibration`` beside an ``.onnx`` file.

    Raises:
        FerlabError: bad paths, a missing split, or no image of a class the model predicts.
    """
    loaded = load_classifier(model)
    table, left_out = shared_classes(choose_split(open_dataset(data), split), loaded.classes)
    if not len(table):
        raise FerlabError(f"{data} has no images of the model's classes {list(loaded.classes)} (only {list(left_out)})")
    dataset = ImageDataset(table, loaded.classes, loaded.meta.preprocessing)
    logits = torch.from_numpy(loaded.predict_logits(dataset.pixels))  # (N, classes)
    calibration = fit_calibration(logits, dataset.targets, before=loaded.meta.temperature)
    stored = _store_temperature(model, loaded, calibration.temperature)
    is_export = isinstance(loaded, OnnxModel)
    default_out = stored.with_name(f"{stored.stem}-calibration") if is_export else stored.parent / "calibration"
    out = Path(out) if out is not None else default_out
    split_name = "+".join(name or "unsplit" for name in table.splits())
    result = CalibrateResult(stored, str(data), split_name, calibration, dataset.skipped, left_out, out)
    report = result.to_dict()
    write_json(out / "calibration.json", report)
    if not is_export:
        write_json(RunDir(stored.parent).calibration, report)
    curves = {
        f"{when} (T={t:.2f})": torch.softmax(logits / t, dim=1).numpy()
        for when, t in (("before", calibration.temperature_before), ("fitted", calibration.temperature_fitted))
    }
    plot_reliability(curves, dataset.targets.numpy(), out / "reliability.png",
                     title=f"Reliability on the {split_name} split of {Path(data).name}")
    return result


def _store_temperature(model: str | Path, loaded: ModelBackend, temperature: float) -> Path:
    """Write `temperature` where `model` keeps it; the file written (an export, or ``model.json``)."""
    if isinstance(loaded, OnnxModel):
        path = Path(model).expanduser()
        update_onnx_meta(path, replace(loaded.meta, temperature=temperature))
        return path
    meta_path = save_temperature(model, temperature)
    if (meta_path.parent / ONNX_NAME).is_file():  # the export beside it carries the temperature too
        update_onnx_meta(meta_path.parent / ONNX_NAME, replace(loaded.meta, temperature=temperature))
    return meta_path
