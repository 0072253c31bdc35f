"""Training: typed configs and the Lightning loop that turns a dataset into a run folder."""

from ferlab.training.config import (
    DataConfig,
    ModelConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
    config_to_yaml,
    load_config,
)
from ferlab.training.module import Classifier
from ferlab.training.train import TrainingInterrupted, TrainResult, resume, train

__all__ = [
    "Classifier",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "config_to_yaml",
    "load_config",
    "resume",
    "train",
]
