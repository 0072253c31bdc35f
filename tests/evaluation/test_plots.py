import numpy as np
import pytest
import torch
from PIL import Image

from ferlab.evaluation.galleries import (
    class_examples,
    class_gallery,
    mistake_gallery,
    most_confident_mistakes,
)
from ferlab.evaluation.plots import (
    plot_confusion_matrix,
    plot_gallery,
    plot_gallery_rows,
    plot_precision_recall,
    plot_reliability,
    plot_roc,
)

CLASSES = ["angry", "happy", "neutral", "fear"]  # "fear" never occurs in the targets below


@pytest.fixture(scope="module")
def predictions():
    """120 samples of classes 0-2 scored by a 4-class model that is right most of the time."""
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, 120)
    logits = rng.normal(size=(120, 4))
    logits[np.arange(120), targets] += 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return targets, probs.astype(np.float32)


def _png_size(path):
    with Image.open(path) as png:
        assert png.format == "PNG"
        return png.size


def _pixels(path):
    with Image.open(path) as png:
        return np.asarray(png.convert("RGB"))


@pytest.mark.parametrize("plot", [plot_roc, plot_precision_recall])
def test_curves_skip_a_class_without_positives(plot, predictions, tmp_path):
    targets, probs = predictions
    assert _png_size(plot(targets, probs, CLASSES, tmp_path / "curve.png")) == (780, 720)  # 6.5 x 6 in at 120 dpi


@pytest.mark.parametrize("plot", [plot_roc, plot_precision_recall])
def test_curves_with_a_single_class_present(plot, tmp_path):
    # No class has negatives, so the ROC has no curve at all; PR still draws class 0.
    probs = np.array([[0.9, 0.1], [0.6, 0.4]])
    assert _png_size(plot(np.array([0, 0]), probs, ["a", "b"], tmp_path / "curve.png")) == (780, 720)


def test_curves_refuse_mismatched_shapes(predictions, tmp_path):
    targets, probs = predictions
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        plot_roc(targets, probs, CLASSES[:3], tmp_path / "roc.png")


def test_reliability_diagram_before_and_after(predictions, tmp_path):
    targets, probs = predictions
    softened = np.exp(np.log(probs) / 2)
    softened /= softened.sum(axis=1, keepdims=True)
    path = plot_reliability({"before": probs, "after": softened}, targets, tmp_path / "reliability.png", bins=10)
    assert _png_size(path) == (720, 840)


def test_reliability_of_all_right_and_all_wrong(tmp_path):
    targets = np.array([0, 1, 1])
    right, wrong = np.eye(2)[targets], np.eye(2)[1 - targets]
    assert _png_size(plot_reliability({"right": right, "wrong": wrong}, targets, tmp_path / "r.png")) == (720, 840)
    with pytest.raises(ValueError, match="no probabilities"):
        plot_reliability({}, targets, tmp_path / "r.png")
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        plot_reliability({"right": right, "three": np.full((3, 3), 1 / 3)}, targets, tmp_path / "r.png")


def test_confusion_matrix_still_draws_an_empty_row(tmp_path):
    assert _png_size(plot_confusion_matrix([[2, 0], [0, 0]], ["a", "b"], tmp_path / "cm.png"))[0] > 200


def test_gallery_draws_each_image_with_its_own_colours(tmp_path):
    grey = np.full((48, 48), 128, np.uint8)
    red = np.zeros((40, 40, 3), np.uint8)
    red[..., 0] = 255
    path = plot_gallery([grey, red, grey], ["grey", "a caption long enough to wrap onto a second line", "3"],
                        tmp_path / "g.png", title="three", columns=2)
    pixels = _pixels(path)
    assert pixels.shape[1] == int(1.4 * 2 * 120)  # two columns
    # A constant image keeps its value (not stretched to the colour map's ends); RGB stays RGB.
    assert np.all(pixels == 128, axis=2).sum() > 2 * 100 * 100
    assert np.all(pixels == (255, 0, 0), axis=2).sum() > 100 * 100


def test_gallery_wraps_into_rows_of_columns(tmp_path):
    images = [np.zeros((8, 8), np.uint8)] * 9
    width, height = _png_size(plot_gallery(images, ["x"] * 9, tmp_path / "g.png", columns=4))
    assert width == int(1.4 * 4 * 120) and height == pytest.approx(3 * 1.53 * 120, abs=1)  # 3 rows, 1 caption line


def test_empty_gallery_says_none(tmp_path):
    assert _png_size(plot_gallery([], [], tmp_path / "g.png", title="nothing")) == (360, 150)
    # 0.1 inch per title character: 40 characters need 4 inches.
    assert _png_size(plot_gallery([], [], tmp_path / "g.png", title="x" * 40 + "\ntwo lines")) == (480, 180)
    assert _png_size(plot_gallery_rows([[], []], tmp_path / "rows.png")) == (360, 120)


@pytest.mark.parametrize(("images", "captions", "columns", "match"), [
    ([np.zeros((8, 8), np.uint8)], [], 8, "1 images but 0 captions"),
    ([np.zeros((8, 8), np.uint8)], ["a"], 0, "columns must be at least 1"),
    ([np.zeros((8, 8, 4), np.uint8)], ["a"], 8, r"image 0 of row 0 has shape \(8, 8, 4\)"),
])
def test_gallery_refuses_bad_input(images, captions, columns, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        plot_gallery(images, captions, tmp_path / "g.png", columns=columns)


def test_most_confident_mistakes_in_order():
    targets = np.array([0, 1, 2, 0, 1, 2])
    probs = np.array([
        [0.9, 0.05, 0.05],  # right
        [0.6, 0.3, 0.1],    # wrong, 0.6
        [0.05, 0.9, 0.05],  # wrong, 0.9
        [0.2, 0.7, 0.1],    # wrong, 0.7
        [0.1, 0.8, 0.1],    # right
        [0.7, 0.2, 0.1],    # wrong, 0.7, after row 3
    ])
    assert most_confident_mistakes(targets, probs, 3).tolist() == [2, 3, 5]
    assert most_confident_mistakes(targets, probs, 10).tolist() == [2, 3, 5, 1]
    assert most_confident_mistakes(targets, probs, 0).tolist() == []
    assert most_confident_mistakes(targets, np.eye(3)[targets], 5).tolist() == []


def test_class_examples_are_seeded_and_of_their_class():
    targets = np.array([0, 1, 0, 0, 2, 0, 1])
    picks = class_examples(targets, 4, per_class=3, seed=1)
    assert [len(p) for p in picks] == [3, 2, 1, 0]
    assert all(np.all(targets[p] == k) for k, p in enumerate(picks))
    assert [p.tolist() for p in picks] == [p.tolist() for p in class_examples(targets, 4, per_class=3, seed=1)]


@pytest.mark.parametrize("as_torch", [True, False])
def test_galleries_from_dataset_pixels(as_torch, predictions, tmp_path):
    targets, probs = predictions
    pixels = np.random.default_rng(0).integers(0, 256, (len(targets), 1, 48, 48), dtype=np.uint8)  # (N, C, H, W)
    pixels = torch.from_numpy(pixels) if as_torch else pixels
    width, _ = _png_size(mistake_gallery(pixels, targets, probs, CLASSES, tmp_path / "m.png", n=5))
    assert width == int(1.4 * 5 * 120)
    # Three classes present, seven examples each: 7 columns, 2 caption lines, 3 rows and a 2-line title.
    width, height = _png_size(class_gallery(pixels, targets, probs, CLASSES, tmp_path / "c.png", per_class=7))
    assert width == pytest.approx(1.4 * 7 * 120, abs=1) and height == pytest.approx((3 * 1.66 + 0.4) * 120, abs=1)


def test_galleries_of_rgb_pixels_and_of_no_mistakes(tmp_path):
    targets = np.array([0, 1, 1])
    pixels = np.zeros((3, 3, 16, 16), np.uint8)
    with Image.open(mistake_gallery(pixels, targets, np.eye(2)[targets], ["a", "b"], tmp_path / "m.png")) as png:
        assert png.height == 150  # "(none)" under a one-line title
    assert _png_size(class_gallery(pixels, targets, np.eye(2)[targets], ["a", "b"], tmp_path / "c.png"))[0] > 0
    with pytest.raises(ValueError, match=r"pixels must have shape \(3, 1 or 3, H, W\)"):
        mistake_gallery(pixels[:, :2], targets, np.eye(2)[targets], ["a", "b"], tmp_path / "m.png")
