"""Grad-CAM heat maps: which face regions drove a model's prediction.

Explanations serve evaluation, inference and the web demo alike, so they live with
the models. Captum computes the maps (`LayerGradCam`); this module picks the layer,
leaves the model's state as it found it, and draws the maps over the faces.
Captum and matplotlib are imported inside the functions that use them, so that
``import ferlab.models`` stays light for commands that never explain anything.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from ferlab.data.labels import canonical_label
from ferlab.data.tensors import normalize
from ferlab.data.transforms import tta_views
from ferlab.errors import FerlabError
from ferlab.models.ensemble import Ensemble
from ferlab.models.io import LoadedModel

__all__ = ["grad_cam", "overlay_heatmap", "target_classes"]

_LISTED_CONVS = 12  # an unknown layer's message lists this many of the last convolutions (timm nets have ~50)


def _class_index(classes: Sequence[str], label: str) -> int:
    """Raises: FerlabError: `label` is none of the model's classes (synonyms such as 'happiness' count)."""
    with contextlib.suppress(FerlabError):
        name = canonical_label(label)
        if name in classes:
            return list(classes).index(name)
    raise FerlabError(f"unknown class {label!r}; the model's classes are {', '.join(classes)}")


def target_classes(model: LoadedModel, pixels: torch.Tensor, target: str | Sequence[int]) -> list[int]:
    """One class index per image: its top class ("predicted"), one class label for all, or the indices given.

    Raises:
        FerlabError: an unknown label, or indices of the wrong count or out of range.
    """
    if isinstance(target, str):
        if target == "predicted":
            return model.predict_proba(pixels).argmax(axis=1).tolist()
        return [_class_index(model.classes, target)] * len(pixels)
    indices = [int(i) for i in target]
    if len(indices) != len(pixels) or not all(0 <= i < len(model.classes) for i in indices):
        raise FerlabError(
            f"grad_cam target: expected one class index in [0, {len(model.classes)}) per image "
            f"({len(pixels)}), got {indices}"
        )
    return indices


def _last_spatial_conv(module: nn.Module, probe: torch.Tensor) -> nn.Module:
    """The last convolution whose output on `probe` (1, C, H, W) is still a map larger than 1x1.

    Grad-CAM reads the layer closest to the decision that still says *where*; a 1x1 output
    (a classifier conv after global pooling, a tiny input) says nothing about place.

    Raises:
        FerlabError: the model has no such convolution.
    """
    from captum.attr import LayerActivation

    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    outputs = LayerActivation(module, convs).attribute(probe) if convs else []  # one (1, C, h, w) per conv
    spatial = [conv for conv, out in zip(convs, outputs) if out.shape[-2] * out.shape[-1] > 1]
    if not spatial:
        raise FerlabError("the model has no convolution with a spatial output to explain; name a layer with layer=")
    return spatial[-1]


def _named_layer(module: nn.Module, name: str) -> nn.Module:
    """Raises: FerlabError: no module of that name; lists close names and the last convolutions."""
    layers = {n: m for n, m in module.named_modules() if n}
    if name in layers:
        return layers[name]
    close = difflib.get_close_matches(name, list(layers), n=4, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    convs = [n for n, m in layers.items() if isinstance(m, nn.Conv2d)]
    shown = ("..., " if len(convs) > _LISTED_CONVS else "") + ", ".join(convs[-_LISTED_CONVS:])
    raise FerlabError(f"the model has no layer {name!r}; {hint}its convolutions: {shown or 'none'}")


@contextlib.contextmanager
def _explaining(module: nn.Module) -> Iterator[None]:
    """Eval mode and frozen parameters for the duration, then the module's own settings back.

    Frozen parameters make the autograd graph start at the explained layer: nothing
    before it keeps activations for weight gradients, and no ``.grad`` is ever written.
    """
    was_training = module.training
    flags = [(p, p.requires_grad) for p in module.parameters()]
    module.eval()
    module.requires_grad_(False)
    try:
        yield
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)
        module.train(was_training)


def grad_cam(
    model: LoadedModel,
    pixels: torch.Tensor,
    target: str | Sequence[int] = "predicted",
    layer: str | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """Grad-CAM heat maps of uint8 images (N, C, H, W) prepared with `to_pixels`.

    Args:
        target: "predicted" (each image's top class), a class label (for every image),
            or one class index per image.
        layer: a module name such as ``features.7`` (see ``ferlab models NAME``); default
            the last convolution whose output is still spatial.

    Returns:
        float32 (N, H, W) maps at the pixels' size, each scaled so that its maximum is 1 (all
        zero where nothing speaks for the class). A crop model explains its centre view, and
        the border outside that view is zero.

    Raises:
        FerlabError: an ensemble, pixels that do not fit the model, an unknown layer or target.
    """
    from captum.attr import LayerAttribution, LayerGradCam

    module, prep = model.module, model.meta.preprocessing
    if isinstance(module, Ensemble):
        raise FerlabError("grad_cam cannot explain an ensemble as a whole; explain each of its members")
    expected = (prep.channels, prep.pixel_size, prep.pixel_size)
    if pixels.dtype != torch.uint8 or pixels.dim() != 4 or tuple(pixels.shape[1:]) != expected:
        raise FerlabError(f"grad_cam needs uint8 pixels (N, {', '.join(map(str, expected))}) from to_pixels, "
                          f"got {pixels.dtype} {tuple(pixels.shape)}")
    if not len(pixels):
        return np.zeros((0, prep.pixel_size, prep.pixel_size), dtype=np.float32)
    view = tta_views(pixels, "none", prep.input_size)[0]  # (N, C, S, S): a crop model's centre view
    inputs = normalize(view, prep)  # (N, C, S, S) float32
    with _explaining(module):
        targets = target_classes(model, pixels, target)  # in eval mode too: "predicted" runs the model
        chosen = _named_layer(module, layer) if layer is not None else _last_spatial_conv(module, inputs[:1])
        cam = LayerGradCam(module, chosen)
        maps = []
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start:start + batch_size]
            attribution = cam.attribute(batch, target=targets[start:start + batch_size], relu_attributions=True)
            if not isinstance(attribution, torch.Tensor) or attribution.dim() != 4:
                raise FerlabError(f"layer {layer!r} has no spatial (N, C, h, w) output to explain; name a convolution")
            maps.append(LayerAttribution.interpolate(attribution.detach(), view.shape[-2:], "bilinear"))
    border = round((prep.pixel_size - prep.input_size) / 2)  # where tta_views starts the centre crop
    heat = nn.functional.pad(torch.cat(maps)[:, 0], [border, prep.pixel_size - prep.input_size - border] * 2)  # (N, H, W)
    peak = heat.amax(dim=(1, 2), keepdim=True)
    return torch.where(peak > 0, heat / peak.clamp_min(1e-12), 0.0).numpy().astype(np.float32)


def overlay_heatmap(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """uint8 RGB (H, W, 3): `image` (uint8 gray or RGB) blended with `heat` (values in [0, 1]) in a colormap.

    A heat map of another size is resized to the image (bilinear).

    Raises:
        FerlabError: an image that is not uint8 gray or RGB, or alpha outside [0, 1].
    """
    from matplotlib import colormaps

    rgb = np.asarray(image)
    if rgb.ndim == 3 and rgb.shape[2] == 1:
        rgb = rgb[:, :, 0]
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise FerlabError(f"overlay_heatmap needs a uint8 (H, W) or (H, W, 3) image, got {rgb.dtype} {rgb.shape}")
    if not 0 <= alpha <= 1:
        raise FerlabError(f"overlay_heatmap alpha must be in [0, 1], got {alpha}")
    heat = np.asarray(heat, dtype=np.float32)
    if heat.shape != rgb.shape[:2]:
        heat = np.asarray(Image.fromarray(heat).resize(rgb.shape[1::-1], Image.Resampling.BILINEAR))
    colored = colormaps[cmap](np.clip(heat, 0, 1))[:, :, :3] * 255  # (H, W, 3), RGBA -> RGB
    return np.round((1 - alpha) * rgb + alpha * colored).astype(np.uint8)
