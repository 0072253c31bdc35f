"""ONNX export (and int8 quantisation) of PyTorch models: the same uint8 pixels in, the same probabilities out.

The exported graph takes uint8 views (B, C, S, S) at the model's input size (`to_pixels`
makes them, cut by `tta_views` for a crop model), and normalises them inside the graph with the
model's own mean and std, so an ONNX file needs no ferlab preprocessing code
beyond the resize. It outputs logits before temperature; the whole ``model.json``
(`ModelMeta.to_dict`, temperature included) rides along as ONNX metadata, so
`OnnxModel.load` needs no other file and applies the test-time views and the temperature
as `LoadedModel` does (both are `ModelBackend`s).

Running an export needs only `ferlab.models.onnx_runtime` (no torch); its names are
re-exported here. ``onnx`` is imported inside the functions that use it.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ferlab._io import atomic_path
from ferlab.data.tensors import normalize
from ferlab.data.transforms import Preprocessing, check_pixels, tta_views
from ferlab.errors import FerlabError
from ferlab.models.backend import ModelBackend
from ferlab.models.bundled import is_bundled
from ferlab.models.io import LoadedModel, load_model
from ferlab.models.meta import ModelMeta
from ferlab.models.onnx_runtime import INPUT_NAME, META_KEY, ONNX_NAME, OUTPUT_NAME, OnnxModel, stored_onnx

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

__all__ = [
    "META_KEY",
    "ONNX_NAME",
    "OnnxModel",
    "Parity",
    "check_parity",
    "dataset_pixels",
    "export_onnx",
    "generated_pixels",
    "load_classifier",
    "quantize_export",
    "stored_onnx",
    "update_onnx_meta",
    "write_model_onnx",
]

#: Calibration images for static int8 quantisation when none are given.
CALIBRATION_SAMPLES = 64


class _PixelInput(nn.Module):
    """uint8 pixels (B, C, S, S) -> the module's logits (B, K), with `normalize` inside the graph."""

    def __init__(self, module: nn.Module, prep: Preprocessing) -> None:
        super().__init__()
        self.module = module
        self.prep = prep

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.module(normalize(pixels, self.prep))


def _to_proto(loaded: LoadedModel, opset: int) -> onnx.ModelProto:
    """Trace with the torch.export-based exporter (the legacy TorchScript one is deprecated), batch dimension dynamic.

    Raises:
        FerlabError: the model cannot be exported.
    """
    prep = loaded.meta.preprocessing
    # Batch 2: torch.export specialises dimensions of size 1, which would fix the batch.
    example = torch.zeros((2, prep.channels, prep.input_size, prep.input_size), dtype=torch.uint8)
    try:
        program = torch.onnx.export(
            _PixelInput(loaded.module, prep).eval(), (example,), dynamo=True, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},), optimize=True, verbose=False,
        )
    except torch.onnx.OnnxExporterError as err:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()  # the exporter colours its messages for terminals
        first = text.splitlines()[0] if text else type(err).__name__
        raise FerlabError(f"cannot export {loaded.meta.architecture} to ONNX: {first}") from None
    return program.model_proto


class _PixelReader:
    """`onnxruntime.quantization.CalibrationDataReader` over the centre views of uint8 pixels, 16 at a time."""

    def __init__(self, pixels: torch.Tensor, input_size: int) -> None:
        centre = tta_views(pixels, "none", input_size)[0]
        self._batches = iter(np.split(centre, range(16, len(centre), 16)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def generated_pixels(prep: Preprocessing, count: int = CALIBRATION_SAMPLES, seed: int = 0) -> torch.Tensor:
    """Images for when no real ones are at hand: uint8 (count, C, R, R) at the pixel size, smooth random blobs over the whole 0-255 range.

    Upscaled low-resolution noise rather than white noise: its activation ranges are closer to a face's.
    """
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand((count, prep.channels, 6, 6), generator=generator)  # (N, C, 6, 6)
    smooth = nn.functional.interpolate(coarse, size=(prep.pixel_size, prep.pixel_size), mode="bicubic")
    return (smooth.clamp(0, 1) * 255).round().to(torch.uint8)


def dataset_pixels(data: str | Path, prep: Preprocessing, limit: int = 256, seed: int = 0) -> torch.Tensor:
    """Up to `limit` images of a dataset (any split, class shares kept) as uint8 (N, C, R, R), for calibration.

    Raises:
        FerlabError: no dataset at `data`, or none of its sampled images can be read.
    """
    from ferlab.data.dataset import decode_table
    from ferlab.data.sources import open_dataset
    from ferlab.data.splits import subsample

    table = open_dataset(data)
    if not table.samples:
        raise FerlabError(f"{data}: no images")
    if len(table) > limit:
        table = subsample(table, limit, seed=seed)
    pixels, ok = decode_table(table, prep)
    if not ok.any():
        raise FerlabError(f"{data}: none of the {len(table)} sampled images could be read")
    return pixels[torch.from_numpy(ok)]


def _quantize(proto: onnx.ModelProto, out: Path, pixels: torch.Tensor, input_size: int) -> None:
    """Static int8 quantisation (QDQ, per-channel weights) calibrated on `pixels`, written to `out`.

    Static rather than dynamic: dynamic quantisation turns convolutions into ConvInteger, which
    ONNX Runtime 1.32 runs 6x slower than fp32 here (cnn3_bn); static QDQ gives fused int8
    convolutions, 3.5-4.7x faster than fp32 on cnn5_leaky and deep_cnn (on cnn3_bn, whose
    BatchNorm follows the ReLU and stays float, it is 2x slower).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    with tempfile.TemporaryDirectory() as folder:
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(proto, prepared)  # shape inference and graph optimisation, as ONNX Runtime advises
        quantize_static(
            prepared, out, _PixelReader(pixels, input_size), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
            # BatchNorm scales are 1-D, so their channels lie on axis 0, not the default 1 (which fails with a warning).
            extra_options={"QDQOpTypePerChannelSupportToAxis": {"BatchNormalization": 0}},
        )


def _is_export(path: Path) -> bool:
    """Whether `path` is an ONNX file that `export_onnx` wrote (it carries ferlab's metadata)."""
    import onnx

    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception:  # any file at all may be there: protobuf and onnx raise assorted errors on foreign bytes
        return False
    return any(prop.key == META_KEY for prop in proto.metadata_props)


def _check_out(path: Path, force: bool) -> None:
    """Refuse to replace a folder, or a file that is not an earlier export unless `force`."""
    if path.is_dir():
        raise FerlabError(f"{path} is a folder; --out names the .onnx file to write")
    if path.exists() and not force and not _is_export(path):
        raise FerlabError(f"{path} exists and is not a ferlab ONNX export; choose another --out, "
                          "or pass --force to replace it")


def export_onnx(
    model: str | Path | LoadedModel,
    path: str | Path,
    int8: bool = False,
    opset: int = 18,
    *,
    calibration: torch.Tensor | None = None,
    force: bool = False,
) -> Path:
    """Write `model` as an ONNX file that `OnnxModel.load` reads alone; returns `path`.

    Args:
        model: a LoadedModel, or a run folder or model file for `load_model`.
        path: the file to write; an earlier export there is replaced, any other file only with `force`.
        int8: quantise to int8 (static, see `_quantize`).
        opset: ONNX opset. 18 is the lowest the torch.export-based exporter writes without a conversion
            step, and the first with antialiased Resize (ensembles whose members take another size).
        calibration: uint8 pixels (N, C, R, R) to calibrate int8 activations on, ideally real face crops;
            default: `CALIBRATION_SAMPLES` generated images.

    Raises:
        FerlabError: no model at `model`, a model the exporter cannot trace, calibration pixels of the wrong
            shape, or a `path` that is a folder or (without `force`) a file that is no ferlab export.
    """
    path = Path(path).expanduser()
    _check_out(path, force)
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    pixels = _calibration_pixels(calibration, loaded.meta.preprocessing) if int8 else None
    _write_export(_to_proto(loaded, opset), path, loaded.meta, int8_pixels=pixels)
    return path


def quantize_export(
    source: str | Path, path: str | Path, *, calibration: torch.Tensor | None = None, force: bool = False
) -> Path:
    """Write an int8 copy of the fp32 export `source` (quantised as `export_onnx` with ``int8=True`` does); returns `path`.

    For an export whose PyTorch model is not at hand: the graph is quantised as it is, its metadata kept.

    Raises:
        FerlabError: `source` is no ferlab export or is quantised already, `path` is `source`, or `path`
            is refused as in `export_onnx`.
    """
    import onnx

    source, path = Path(source).expanduser(), Path(path).expanduser()
    meta = OnnxModel.load(source).meta
    if path.resolve() == source.resolve():
        raise FerlabError(f"--out {path} is the export being quantised; write the int8 copy to another file")
    _check_out(path, force)
    proto = onnx.load(source)
    quantised = sorted({node.op_type for node in proto.graph.node} & QUANTISED_OPS)
    if quantised:
        raise FerlabError(f"{source} is quantised already ({', '.join(quantised)} nodes); quantise its fp32 export "
                          "or its run folder")
    _write_export(proto, path, meta, int8_pixels=_calibration_pixels(calibration, meta.preprocessing))
    return path


#: Operators that only a quantised graph holds.
QUANTISED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                           "MatMulInteger"})


def _calibration_pixels(calibration: torch.Tensor | None, prep: Preprocessing) -> torch.Tensor:
    """The pixels that calibrate int8 activations: `calibration` checked, or generated ones."""
    if calibration is None:
        return generated_pixels(prep)
    check_pixels(calibration, prep, "calibration pixels")
    return calibration


def _write_export(proto: onnx.ModelProto, path: Path, meta: ModelMeta, int8_pixels: torch.Tensor | None) -> None:
    """`proto`, quantised on `int8_pixels` when given, with `meta` inside, checked and written atomically to `path`."""
    import onnx

    with atomic_path(path) as tmp:
        if int8_pixels is not None:
            _quantize(proto, tmp, int8_pixels, meta.preprocessing.input_size)
            proto = onnx.load(tmp)
        onnx.helper.set_model_props(proto, {META_KEY: json.dumps(meta.to_dict())})
        onnx.checker.check_model(proto, full_check=True)
        onnx.save_model(proto, tmp)


def write_model_onnx(model: LoadedModel, directory: str | Path) -> Path | None:
    """Export `model` to ``directory/model.onnx``, so that inference on the folder starts without exporting.

    Returns:
        The file, or None where the model cannot be exported (logged: the folder still works on PyTorch).
    """
    try:
        return export_onnx(model, Path(directory) / ONNX_NAME, force=True)
    except FerlabError as err:
        log.warning("no %s in %s: %s", ONNX_NAME, directory, err)
        return None


def update_onnx_meta(path: Path, meta: ModelMeta) -> None:
    """Rewrite the ferlab metadata embedded in an export (after a new temperature), atomically."""
    import onnx

    proto = onnx.load(path)
    onnx.helper.set_model_props(proto, {META_KEY: json.dumps(meta.to_dict())})
    with atomic_path(path) as tmp:
        onnx.save_model(proto, tmp)


@dataclass(frozen=True)
class Parity:
    """How far an export's probabilities are from its source's (the PyTorch model, or the fp32 export) on the same images."""

    samples: int
    max_abs_diff: float  # largest probability difference
    top1_changed: float  # share of images whose predicted class differs

    def __str__(self) -> str:
        return (f"max |p_source - p_export| {self.max_abs_diff:.2e}, top-1 changed on "
                f"{self.top1_changed:.2%} of {self.samples} images")


def check_parity(source: ModelBackend, onnx_model: OnnxModel, pixels: torch.Tensor) -> Parity:
    """Compare both models' calibrated probabilities on uint8 `pixels` (N, C, R, R), each with its own test-time views."""
    expected = source.predict_proba(pixels)
    got = onnx_model.predict_proba(pixels)
    changed = float(np.mean(expected.argmax(1) != got.argmax(1))) if len(pixels) else 0.0
    return Parity(len(pixels), float(np.abs(expected - got).max(initial=0.0)), changed)


def load_classifier(model: str | Path | ModelBackend) -> ModelBackend:
    """A saved model on the runtime its file needs: an ``.onnx`` export on ONNX Runtime, anything else
    (a bundled name, run folder, ``.safetensors`` or ``.json``) on PyTorch; a loaded model as it is.

    Raises:
        FerlabError: no model at `model`, or a file that is not one.
    """
    if isinstance(model, ModelBackend):
        return model
    if not is_bundled(model) and Path(model).suffix.lower() == ".onnx":
        return OnnxModel.load(model)
    return load_model(model)
