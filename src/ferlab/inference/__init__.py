"""Inference: faces in photos, folders, videos and cameras, classified with a trained model.

`Recognizer` is the one way to predict. Names load on first use (PEP 562), so a
command imports only what it runs.
"""

from ferlab._lazy import lazy_names

#: Each public name and the module that defines it.
_LAZY = {
    "BACKENDS": "ferlab.inference.recognizer",
    "DEFAULT_DETECTOR": "ferlab.inference.detect",
    "DETECTORS": "ferlab.inference.detect",
    "Detector": "ferlab.inference.detect",
    "Face": "ferlab.inference.detect",
    "FaceResult": "ferlab.inference.results",
    "FilePredictions": "ferlab.inference.files",
    "ImageInput": "ferlab.inference.predictor",
    "Prediction": "ferlab.inference.results",
    "Predictor": "ferlab.inference.predictor",
    "Recognizer": "ferlab.inference.recognizer",
    "VideoResult": "ferlab.inference.video",
    "annotate": "ferlab.inference.drawing",
    "create_detector": "ferlab.inference.detect",
    "expand_inputs": "ferlab.data.inputs",
    "face_pixels": "ferlab.inference.faces",
    "load_image": "ferlab.inference.faces",
    "predict_files": "ferlab.inference.predictor",
    "process_video": "ferlab.inference.video",
    "save_image": "ferlab.inference.drawing",
    "to_frame": "ferlab.inference.results",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_names(__name__, _LAZY)
