"""Inference: faces in photos, folders, videos and cameras, classified with a trained model."""

from ferlab.inference.annotate import annotate, save_image
from ferlab.inference.detect import DETECTORS, Detector, Face, create_detector
from ferlab.inference.faces import face_pixels, load_image
from ferlab.inference.predictor import (
    FilePredictions,
    ImageInput,
    Prediction,
    Predictor,
    expand_inputs,
    predict_files,
)
from ferlab.inference.recognizer import BACKENDS, FaceResult, Recognizer
from ferlab.inference.tracking import FaceTracker, SceneCuts
from ferlab.inference.video import VideoResult, process_video

__all__ = [
    "BACKENDS",
    "DETECTORS",
    "Detector",
    "Face",
    "FaceResult",
    "FaceTracker",
    "FilePredictions",
    "ImageInput",
    "Prediction",
    "Predictor",
    "Recognizer",
    "SceneCuts",
    "VideoResult",
    "annotate",
    "create_detector",
    "expand_inputs",
    "face_pixels",
    "load_image",
    "predict_files",
    "process_video",
    "save_image",
]
