"""Grad-CAM of image files: which face regions drove each prediction, as PNGs and a gallery.

The heat-map maths is the model's (`ferlab.models.explain.grad_cam`); reading
files, folders and globs and drawing the pictures is evaluation's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from ferlab._io import check_new_folder, save_figure
from ferlab.data.images import decode_image
from ferlab.data.inputs import expand_inputs
from ferlab.data.transforms import to_pixels
from ferlab.errors import FerlabError
from ferlab.evaluation.evaluate import looks_like_whole_photos
from ferlab.evaluation.plots import plot_gallery
from ferlab.models.explain import grad_cam, overlay_heatmap, target_classes
from ferlab.models.io import LoadedModel, load_model

__all__ = ["explain_files"]

log = logging.getLogger(__name__)


def _output_names(paths: Sequence[Path]) -> list[str]:
    """``<stem>_gradcam.png`` per input, numbered where inputs share a stem (faces/a/1.png, faces/b/1.png)."""
    names: list[str] = []
    for path in paths:
        name, k = f"{path.stem}_gradcam.png", 1
        while name in names:
            k += 1
            name = f"{path.stem}_{k}_gradcam.png"
        names.append(name)
    return names


def _save_explanation(path: Path, image: np.ndarray, overlay: np.ndarray, title: str) -> Path:
    """The input and its overlay side by side, as PNG."""
    fig = Figure(figsize=(4.6, 2.6), layout="constrained")
    for ax, shown, caption in zip(fig.subplots(1, 2), (image, overlay), ("input", "Grad-CAM")):
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=255)
        ax.set_title(caption, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def explain_files(
    model: str | Path | LoadedModel,
    inputs: Sequence[str | Path],
    out: str | Path,
    target: str = "predicted",
    layer: str | None = None,
) -> list[Path]:
    """Grad-CAM of face-crop image files, folders or globs, written to the new folder `out`.

    Each image gets ``<stem>_gradcam.png`` (input and overlay side by side, titled with
    the class explained and its probability); ``gradcam.png`` is a gallery of all overlays.

    Args:
        target: "predicted" (each image's top class) or a class label to explain instead.

    Returns:
        The per-image PNGs in input order, then the gallery.

    Raises:
        FerlabError: missing or unreadable inputs, an existing non-empty `out`, an unknown class or layer.
    """
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    paths = expand_inputs(inputs)
    if not paths:
        raise FerlabError("no images to explain")
    out = check_new_folder(out, hint="choose a new one, so that earlier explanations do not mix with these")
    prep = loaded.meta.preprocessing
    sides, crops = [], []
    for path in paths:  # one image decoded at a time: whole photos are large
        image = decode_image(path, str(path))
        sides.append(min(image.size))
        crops.append(to_pixels(image, prep))
    if looks_like_whole_photos(sides, prep.input_size):
        log.warning("%s: these images look like whole photos, not %d-px face crops; each is explained whole. "
                    "Explain the faces: cut them first (the boxes are in `ferlab predict --json`)", paths[0], prep.input_size)
    pixels = torch.from_numpy(np.stack(crops))  # (N, C, S, S) uint8
    probs = loaded.predict_proba(pixels)
    explained = target_classes(loaded, pixels, target)
    heat = grad_cam(loaded, pixels, explained, layer)
    classes = loaded.classes
    written, overlays, captions = [], [], []
    for path, name, image, p, k, h in zip(paths, _output_names(paths), pixels, probs, explained, heat):
        image = image.permute(1, 2, 0).squeeze(2).numpy()  # (S, S) gray or (S, S, 3) RGB
        overlay = overlay_heatmap(image, h)
        top = int(p.argmax())
        title = f"{path.name}: {classes[k]} {p[k]:.2f}"
        if k != top:
            title += f" (predicted {classes[top]} {p[top]:.2f})"
        written.append(_save_explanation(out / name, image, overlay, title))
        overlays.append(overlay)
        captions.append(f"{path.stem}\n{classes[k]} {p[k]:.2f}")
    what = "the predicted class" if target == "predicted" else classes[explained[0]]
    gallery = plot_gallery(overlays, captions, out / "gradcam.png", title=f"Grad-CAM of {what} ({loaded.meta.architecture})")
    return [*written, gallery]
