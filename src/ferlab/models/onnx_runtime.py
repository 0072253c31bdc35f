"""Exported models on ONNX Runtime: the inference install's one model runtime, with no torch.

An export (`ferlab.models.onnx.export_onnx`) takes uint8 views (B, C, S, S) at the
model's input size and normalises them inside the graph, and carries the whole
``model.json`` (`ModelMeta.to_dict`, temperature included) as ONNX metadata, so
`OnnxModel.load` needs no other file and predicts as `LoadedModel` does (both are
`ModelBackend`s: test-time views, averaging and temperature in one place).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from ferlab.errors import FerlabError
from ferlab.models.backend import ModelBackend
from ferlab.models.meta import ModelMeta

__all__ = ["INPUT_NAME", "META_KEY", "ONNX_NAME", "OUTPUT_NAME", "OnnxModel", "stored_onnx"]

log = logging.getLogger(__name__)

#: The metadata_props key holding the model's ``model.json``.
META_KEY = "ferlab.model"
#: The export that training and `save_ensemble` write beside ``model.safetensors``, which inference loads as it is.
ONNX_NAME = "model.onnx"
INPUT_NAME = "pixels"
OUTPUT_NAME = "logits"


class OnnxModel(ModelBackend):
    """An exported model on ONNX Runtime (CPU), predicting as `LoadedModel` does (see `ModelBackend`).

    Attributes:
        meta: the model's metadata, read from the file.
    """

    def __init__(self, session: Any, meta: ModelMeta) -> None:
        self.session = session
        self.meta = meta

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> OnnxModel:
        """Open an ONNX file written by `export_onnx`.

        Args:
            threads: intra-op threads (default: ONNX Runtime's choice, one per physical core).

        Raises:
            FerlabError: a missing or unreadable file, or one without ferlab metadata.
        """
        path = Path(path).expanduser()
        if not path.is_file():
            raise FerlabError(f"no ONNX model at {path}")
        options = ort.SessionOptions()
        # ONNX Runtime's threads spin-wait by default, also after a run, taking the cores from what runs next: YuNet
        # took 13.7 ms a 640x360 frame beside such a session, 7.9 ms beside one that never spins; but without spinning
        # the threads sleep between the graph's nodes too (`fast`: 1,091 against 1,287 crops/s at batch 1). Spinning
        # during a run and stopping when it returns keeps both: 1,227 crops/s, YuNet 8.2 ms (benchmarks/onnx_threads.py).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        options.add_session_config_entry("session.force_spinning_stop", "1")
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
        except (ort_errors.Fail, ort_errors.InvalidGraph, ort_errors.InvalidProtobuf, ort_errors.NotImplemented) as err:
            raise FerlabError(f"{path}: not a readable ONNX model ({str(err).strip().splitlines()[0]})") from None
        props = session.get_modelmeta().custom_metadata_map
        if META_KEY not in props:
            raise FerlabError(f"{path}: no ferlab metadata ({META_KEY!r}); export it with `ferlab export`")
        try:
            data = json.loads(props[META_KEY])
        except json.JSONDecodeError as err:
            raise FerlabError(f"{path}: metadata {META_KEY!r} is not valid JSON ({err})") from None
        if not isinstance(data, dict):
            raise FerlabError(f"{path}: metadata {META_KEY!r} is not a JSON object")
        return cls(session, ModelMeta.from_dict(data, f"{path} metadata"))

    def view_logits(self, views: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(views)})[0]


def stored_onnx(folder: Path, meta: ModelMeta, threads: int | None = None) -> OnnxModel | None:
    """``folder/model.onnx`` on ONNX Runtime when it is the export of the model described by `meta`, else None.

    A file whose embedded metadata differs (the model was retrained or recalibrated after the
    export, or the file is foreign or damaged) is passed over with one log line, never used.
    """
    path = folder / ONNX_NAME
    if not path.is_file():
        return None
    try:
        model = OnnxModel.load(path, threads)
    except FerlabError as err:
        log.info("passing over %s: %s", path, err)
        return None
    if model.meta.to_dict() != meta.to_dict():
        log.info("passing over %s: it was exported from another version of the model in %s", path, folder)
        return None
    return model
