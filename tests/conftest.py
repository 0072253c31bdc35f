"""Shared fixtures: the synthetic dataset in each format, and one trained run reused by later stages."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from tests.synthetic import make_samples, write_fer_csv, write_tree, write_zip


@pytest.fixture(autouse=True)
def _no_onnx_export_in_training(request, monkeypatch):
    """Skip the ~2 s ONNX export at the end of each training run, except in tests marked ``onnx_export``.

    Session fixtures (`trained_run`) are made before this applies, so they keep their model.onnx.
    """
    if request.node.get_closest_marker("onnx_export") is None:
        for module in ("ferlab.training.train", "ferlab.models.ensemble"):  # the modules, not their functions
            monkeypatch.setattr(importlib.import_module(module), "write_model_onnx", lambda model, directory: None)


@pytest.fixture(scope="session")
def samples():
    return make_samples()


@pytest.fixture(scope="session")
def tree(samples, tmp_path_factory) -> Path:
    return write_tree(samples, tmp_path_factory.mktemp("tree"))


@pytest.fixture(scope="session")
def zip_tree(tree, tmp_path_factory) -> Path:
    return write_zip(tree, tmp_path_factory.mktemp("zip") / "faces.zip")


@pytest.fixture(scope="session")
def fer_csv(samples, tmp_path_factory) -> Path:
    return write_fer_csv(samples, tmp_path_factory.mktemp("csv") / "fer2013.csv")


@pytest.fixture(scope="session")
def trained_run(tree, tmp_path_factory) -> Path:
    """cnn3_bn trained briefly on the synthetic tree; read-only for the tests that use it."""
    from ferlab.training import load_config, train

    out = tmp_path_factory.mktemp("runs") / "cnn3"
    cfg = load_config(values={"data.path": str(tree), "model.name": "cnn3_bn", "epochs": 6, "out": str(out),
                              "data.batch_size": 32})
    train(cfg)
    return out
