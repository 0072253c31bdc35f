"""The Gradio web app of `ferlab serve`: photos, the browser camera, videos, and models side by side.

The tabs call plain methods of `Demo`, so the tests drive the same code without a browser.
Gradio and pandas are imported inside functions: they are the optional ``serve`` extra.
An uploaded photo is checked as the REST API checks it (`Limits`: bytes, format, pixels
from the header) before it is decoded; launch the app with ``max_file_size=MAX_UPLOAD_BYTES``
(`ferlab serve` does), which Gradio enforces while the upload streams in.
"""

from __future__ import annotations

import functools
import tempfile
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ferlab.data.transforms import TTA_MODES
from ferlab.errors import FerlabError
from ferlab.inference.detect import DEFAULT_DETECTOR, DETECTORS
from ferlab.inference.drawing import annotate, label_colours
from ferlab.inference.recognizer import FaceResult, Recognizer
from ferlab.inference.video import process_video
from ferlab.serving import require_serving
from ferlab.serving._uploads import Limits, decode_upload

if TYPE_CHECKING:
    import gradio as gr
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["MAX_UPLOAD_BYTES", "Demo", "build_app", "face_chart"]

#: Seconds between webcam frames sent by the browser; the annotation keeps up with this on a CPU.
STREAM_EVERY = 0.2
#: Bytes of one uploaded file, photo or video: Gradio answers 413 to more, before the file is complete.
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
#: Faces' charts side by side before the next row: readable at the page's width up to 10 faces in two rows.
CHART_COLUMNS = 5


def face_chart(results: Sequence[FaceResult], classes: Sequence[str]) -> Figure:
    """Each face's probabilities as its own small bar chart, titled with the number drawn beside its box.

    Horizontal bars in a grid of at most `CHART_COLUMNS` panels a row, the class names once per row
    of panels: the labels keep their place however many faces there are (one bar chart of every
    face and class put 70 labels under each other for 10 faces). A photo without faces gets a note.
    """
    from matplotlib.figure import Figure

    columns = max(1, min(len(results), CHART_COLUMNS))
    rows = max(1, -(-len(results) // CHART_COLUMNS))
    fig = Figure(figsize=(1.2 + 2.2 * columns, 0.6 + (0.22 * len(classes) + 0.5) * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
    for ax in axes.flat[len(results):]:
        ax.set_axis_off()
    if not results:
        axes[0, 0].text(0.5, 0.5, "no face found", ha="center", va="center")
    palette = label_colours()
    colours = [palette[k % len(palette)] for k in range(len(classes))]  # the colours of the boxes annotate draws
    for i, (ax, result) in enumerate(zip(axes.flat, results)):
        ax.barh(range(len(classes)), [result.probs[c] for c in classes], color=colours)
        ax.set_title(f"#{i} {result.label} {result.probs[result.label]:.2f}", fontsize="medium")
        ax.set(xlim=(0, 1), yticks=range(len(classes)), yticklabels=classes)
        ax.tick_params(labelsize="small")
    axes[0, 0].invert_yaxis()  # the first class on top; the y axis is shared, so every panel flips
    return fig


class Demo:
    """The loaded models and what each tab does with them.

    A Recognizer per (model, detector, TTA) is built on first use and kept: each model is loaded
    (and exported to ONNX) once, and the detector and TTA choices reuse that classifier.

    Args:
        models: run folders, model files or ``.onnx`` files; the first is the default.
        backend, detector_path: as for `Recognizer`.
        limits: what a photo may be (bytes, format, pixels), as in the REST API; the API's defaults by default.

    Raises:
        FerlabError: no model, or a model that cannot be loaded.
    """

    def __init__(self, models: Sequence[str | Path], *, backend: str = "auto",
                 detector_path: str | Path | None = None, limits: Limits | None = None) -> None:
        if not models:
            raise FerlabError("no model given: pass at least one run folder, model .safetensors or .onnx file")
        self.names = [Path(m).name for m in models]
        self.detector_path = detector_path
        self.limits = limits or Limits()
        self._base = [Recognizer(m, "none", backend=backend) for m in models]
        self._recognizers: dict[tuple[int, str, str], Recognizer] = {}
        self._lock = threading.Lock()
        self._workdir = tempfile.TemporaryDirectory(prefix="ferlab-serve-")

    def recognizer(self, model: int = 0, detector: str = DEFAULT_DETECTOR, tta: str | None = None) -> Recognizer:
        """The Recognizer for model number `model` with this detector and TTA, sharing that model's classifier."""
        key = (model, detector, tta)
        with self._lock:
            if key not in self._recognizers:
                base = self._base[model]
                self._recognizers[key] = Recognizer(base.model, detector, backend=base.backend, tta=tta,
                                                    detector_path=self._detector_path(detector))
            return self._recognizers[key]

    def _detector_path(self, detector: str) -> str | Path | None:
        """The YuNet file given to the app, for the detectors that read one."""
        return self.detector_path if detector in ("auto", "yunet") else None

    def image(self, image: str | Path | np.ndarray | None, detector: str = DEFAULT_DETECTOR, tta: str | None = None,
              model: int = 0) -> tuple[np.ndarray, Figure, dict[str, Any]]:
        """A photo annotated (box, number and label per face), each face's chart, and the JSON answer.

        Raises:
            FerlabError: no image, or one `limits` refuses or that cannot be read, named by its file name.
        """
        pixels = self._pixels(image)  # (H, W, 3), upright
        recognizer = self.recognizer(model, detector, tta)
        results = recognizer.recognize(pixels)
        answer = {"model": self.names[model], "backend": recognizer.backend, "detector": detector, "tta": recognizer.tta,
                  "faces": [r.to_dict() for r in results]}
        return annotate(pixels, results, recognizer.classes), face_chart(results, recognizer.classes), answer

    def _pixels(self, image: str | Path | np.ndarray | None) -> np.ndarray:
        """A photo as RGB uint8 (H, W, 3); a file is refused from its size and header before it is decoded."""
        from ferlab.inference.faces import load_image

        if image is None:
            raise FerlabError("no image: upload or paste a photo first")
        if isinstance(image, np.ndarray):
            return load_image(image, self.limits.max_pixels)
        path = Path(image)
        if not path.is_file():
            raise FerlabError(f"no such image file: {path}")
        return decode_upload(path.read_bytes(), path.name, self.limits)

    def frame(self, frame: np.ndarray | None, detector: str = DEFAULT_DETECTOR,
              tta: str | None = None) -> np.ndarray | None:
        """One webcam frame annotated by the first model; None (nothing to show) before the camera starts."""
        if frame is None:
            return None
        recognizer = self.recognizer(0, detector, tta)
        return annotate(frame, recognizer.recognize(frame), recognizer.classes)

    def video(self, path: str | Path | None, detector: str = DEFAULT_DETECTOR, tta: str | None = None,
              stride: int = 1) -> tuple[str, str, pd.DataFrame]:
        """An uploaded clip through `process_video` with the first model: the annotated video (H.264 MP4,
        which browsers play as it is), the timeline plot, and each track's expression segments.

        Raises:
            FerlabError: no video, or one `process_video` refuses.
        """
        if path is None:
            raise FerlabError("no video: upload a clip first")
        base = self._base[0]
        result = process_video(base.model, path, Path(self._workdir.name) / uuid.uuid4().hex, detector=detector,
                               detector_path=self._detector_path(detector),
                               backend=base.backend, tta=tta, stride=stride)
        return str(result.video), str(result.plot), result.segments_frame()

    def compare(self, image: str | Path | np.ndarray | None, detector: str = DEFAULT_DETECTOR,
                tta: str | None = None) -> list[Any]:
        """`image` for every model in turn: annotated image, chart data and JSON per model, flattened."""
        return [part for model in range(len(self.names)) for part in self.image(image, detector, tta, model)]


def _shown(fn):
    """`fn` with a FerlabError turned into a gr.Error, which the page shows as a message instead of "Error"."""
    import gradio as gr

    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        try:
            return fn(*args)
        except FerlabError as err:
            raise gr.Error(str(err)) from None

    return wrapper


def _from_upload(fn):
    """`fn` called with the path of the file an Image input holds, for events run with ``preprocess=False``.

    Gradio's own preprocessing converts an upload to RGB, decoding all of it before ferlab could refuse it
    from its header (169 M pixels in a 164 kB PNG: 3.3 s and 480 MB), and answers a file it cannot open
    with its generic "raised an exception" instead of ferlab's message.
    """

    @functools.wraps(fn)
    def wrapper(upload: dict[str, Any] | None, *args: Any) -> Any:
        return fn((upload or {}).get("path"), *args)  # the component's JSON: path, orig_name, size, ...

    return wrapper


def _results(model: str = "") -> tuple[gr.Image, gr.Plot, gr.JSON]:
    """The annotated image, per-face charts and JSON outputs, labelled with the model's name in Compare."""
    import gradio as gr

    prefix = f"{model}: " if model else ""
    return (gr.Image(label=f"{prefix}annotated", type="numpy", format="png"),
            gr.Plot(label=f"{prefix}probabilities per face", format="png"),
            gr.JSON(label=f"{prefix}JSON"))


def build_app(models: Sequence[str | Path], detector: str = DEFAULT_DETECTOR, *, tta: str | None = None,
              backend: str = "auto", detector_path: str | Path | None = None,
              limits: Limits | None = None) -> gr.Blocks:
    """The web app over `models` (the Compare tab appears with two or more).

    Launch it with ``.launch(max_file_size=MAX_UPLOAD_BYTES)``: without it Gradio takes uploads of any size.

    Args:
        models: run folders, model files or ``.onnx`` files.
        detector, tta: the choices the page starts with (tta None: the first model's own).
        backend, detector_path, limits: as for `Demo`.

    Raises:
        FerlabError: no model, a model that cannot be loaded, or an unknown detector or TTA.
    """
    require_serving("gradio", "pandas")
    import gradio as gr

    if detector not in DETECTORS:
        raise FerlabError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}")
    if tta is not None and tta not in TTA_MODES:
        raise FerlabError(f"unknown tta {tta!r}; choose one of {', '.join(TTA_MODES)}")
    demo = Demo(models, backend=backend, detector_path=detector_path, limits=limits)
    tta = demo._base[0].model.resolve_tta(tta)
    with gr.Blocks(title="ferlab", analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown(f"# ferlab: facial expressions\nModel: **{demo.names[0]}** ({demo._base[0].backend})")
        with gr.Row():
            detector_box = gr.Dropdown(list(DETECTORS), value=detector, label="face detector",
                                       info="none: the image already is a face crop")
            tta_box = gr.Dropdown(list(TTA_MODES), value=tta, label="test-time augmentation")
        for tab in (_image_tab, _webcam_tab, _video_tab, *([_compare_tab] if len(demo.names) > 1 else [])):
            tab(demo, detector_box, tta_box)
    return app


def _image_tab(demo: Demo, detector_box: gr.Dropdown, tta_box: gr.Dropdown) -> None:
    """A photo in; the annotated photo, a chart per face and the JSON out."""
    import gradio as gr

    with gr.Tab("Image"):
        photo = gr.Image(label="photo", type="filepath", sources=["upload", "clipboard"])
        run = gr.Button("Recognise", variant="primary")
        with gr.Row():
            shown, chart, answer = _results()
        run.click(_shown(_from_upload(demo.image)), [photo, detector_box, tta_box], [shown, chart, answer],
                  api_name="image", preprocess=False)


def _webcam_tab(demo: Demo, detector_box: gr.Dropdown, tta_box: gr.Dropdown) -> None:
    """The browser camera's frames, annotated as they stream."""
    import gradio as gr

    with gr.Tab("Webcam"):
        with gr.Row():
            camera = gr.Image(label="camera", sources=["webcam"], streaming=True, type="numpy")
            live = gr.Image(label="annotated", type="numpy", elem_id="annotated-frame")
        camera.stream(_shown(demo.frame), [camera, detector_box, tta_box], live, stream_every=STREAM_EVERY,
                      api_name="frame")


def _video_tab(demo: Demo, detector_box: gr.Dropdown, tta_box: gr.Dropdown) -> None:
    """A clip in; the annotated H.264 video, the emotion timeline and each track's segments out."""
    import gradio as gr

    with gr.Tab("Video"):
        clip = gr.Video(label="clip", sources=["upload"])
        stride = gr.Slider(1, 10, value=1, step=1, label="detect faces every N frames")
        go = gr.Button("Process", variant="primary")
        with gr.Row():
            annotated = gr.Video(label="annotated video", elem_id="annotated-video")
            timeline = gr.Image(label="emotion timeline", type="filepath")
        segments = gr.Dataframe(label="expression segments per tracked face (s)", interactive=False,
                                elem_id="segments")
        go.click(_shown(demo.video), [clip, detector_box, tta_box, stride], [annotated, timeline, segments],
                 api_name="video")


def _compare_tab(demo: Demo, detector_box: gr.Dropdown, tta_box: gr.Dropdown) -> None:
    """One photo through every model, side by side."""
    import gradio as gr

    with gr.Tab("Compare"):
        same = gr.Image(label="photo", type="filepath", sources=["upload", "clipboard"])
        both = gr.Button("Compare", variant="primary")
        outputs = []
        with gr.Row():
            for name in demo.names:
                with gr.Column():
                    outputs.extend(_results(name))
        both.click(_shown(_from_upload(demo.compare)), [same, detector_box, tta_box], outputs,
                   api_name="compare", preprocess=False)
