"""Inference: classifying images with a trained model."""

from ferlab.inference.predictor import ImageInput, Prediction, Predictor, expand_inputs, predict_files

__all__ = ["ImageInput", "Prediction", "Predictor", "expand_inputs", "predict_files"]
