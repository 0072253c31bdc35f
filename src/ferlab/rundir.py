"""A training run's folder, named once: every module that reads or writes a run goes through `RunDir`.

The layout is a contract with users (they open these files, and old runs must keep loading):
``config.yaml`` (the resolved config), ``summary.json`` (written when training ends),
``metrics.csv`` (one row per epoch), ``calibration.json`` (training's temperature fit; a later
``ferlab calibrate`` writes ``calibration/calibration.json``), ``checkpoints/{best,last}.ckpt``,
and the saved model (``model.safetensors``, ``model.json``, ``model.onnx``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferlab.errors import FerlabError

__all__ = ["LAST_CHECKPOINT", "RunDir", "read_yaml"]

#: Where training keeps the checkpoint it resumes from, relative to the run folder (named in messages).
LAST_CHECKPOINT = "checkpoints/last.ckpt"


def read_yaml(path: str | Path, what: str = "YAML file") -> Any:
    """The contents of a config, grid or search-space file, through OmegaConf's loader with interpolations resolved.

    OmegaConf's loader, for every config file: it reads ``1e-4`` as a number, where plain YAML reads a string.

    Raises:
        FerlabError: a missing or unreadable file; names it.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException
    from yaml import YAMLError

    path = Path(path).expanduser()
    if not path.is_file():
        raise FerlabError(f"no such {what}: {path}")
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except (OmegaConfBaseException, YAMLError, UnicodeDecodeError) as err:
        raise FerlabError(f"{path}: not readable as YAML: {str(err).splitlines()[0]}") from None


@dataclass(frozen=True)
class RunDir:
    """The files of one run folder; paths only, so building one never touches the disk."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path).expanduser())  # str or ~ accepted, as everywhere

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.path / LAST_CHECKPOINT

    @property
    def calibration(self) -> Path:
        """The temperature fit that the run's model uses: training's, or the latest ``ferlab calibrate``."""
        return self.path / "calibration.json"

    @property
    def refit_calibration(self) -> Path:
        return self.path / "calibration" / "calibration.json"

    def is_finished(self) -> bool:
        """Whether training ended (it writes summary.json last)."""
        return self.summary.is_file()

    def can_resume(self) -> bool:
        return self.last_checkpoint.is_file()

    def raw_config(self) -> dict[str, Any] | None:
        """config.yaml as plain data, for layers below training; None where the run has none."""
        if not self.config.is_file():
            return None
        raw = read_yaml(self.config, "run config")
        return raw if isinstance(raw, dict) else None

    def data_path(self) -> str | None:
        """The dataset its config names, or None."""
        data = (self.raw_config() or {}).get("data")
        path = data.get("path") if isinstance(data, dict) else None
        return str(path) if path else None

    def read_summary(self) -> dict[str, Any] | None:
        return _read_json(self.summary)

    def read_calibration(self) -> dict[str, Any] | None:
        """The latest temperature fit: a later ``ferlab calibrate`` over training's own."""
        return _read_json(self.refit_calibration) or _read_json(self.calibration)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FerlabError(f"{path}: not readable as JSON: {err}") from None
    return data if isinstance(data, dict) else None
