"""Splitting a written number into digits: real MNIST test digits laid out in a strip, and drawn shapes."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cnnlab.recognition.preprocess import NoDigitError, prepare_digit
from cnnlab.recognition.segment import (
    Piece,
    attach_fragments,
    merge_broken_strokes,
    read_number,
    segment_number,
    thinnest_column,
)


def mnist_test_files() -> tuple:
    """Paths of the real MNIST test images/labels under $CNNLAB_DATA; skips (or fails, under
    CNNLAB_REQUIRE_DATA=1 as in CI) when they are missing."""
    value = os.environ.get("CNNLAB_DATA", "")
    root = Path(value).expanduser() if value else None
    if root is not None and not root.is_absolute() and not root.exists():
        root = Path(__file__).resolve().parents[2] / root
    names = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    paths = tuple(root / "mnist" / n for n in names) if root else ()
    if not paths or not all(p.is_file() for p in paths):
        reason = f"real MNIST test files not found in CNNLAB_DATA={value or '(unset)'}/mnist/"
        if os.environ.get("CNNLAB_REQUIRE_DATA", "") not in ("", "0"):
            pytest.fail(reason + "; CNNLAB_REQUIRE_DATA=1 makes this a failure")
        pytest.skip(reason)
    return paths


def read_idx_gz(path: Path) -> np.ndarray:
    """An IDX file (gzip) as an array, read directly: magic, dims, then the uint8 payload."""
    with gzip.open(path) as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


@pytest.fixture(scope="module")
def mnist_test():
    images, labels = mnist_test_files()
    return read_idx_gz(images), read_idx_gz(labels)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Best correlation over shifts of at most one pixel (centre-of-mass rounding may differ by one)."""
    return max(
        float(np.corrcoef(np.roll(a, (dy, dx), (0, 1)).ravel(), b.ravel())[0, 1])
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )


def strip_of(digits: np.ndarray, step: int = 34, scale: int = 3) -> Image.Image:
    """MNIST digits side by side (light on dark), then made dark-on-light and enlarged like a photo."""
    strip = np.zeros((36, step * len(digits) + 16), np.uint8)
    for k, digit in enumerate(digits):
        x = 8 + step * k
        strip[4:32, x : x + 28] = np.maximum(strip[4:32, x : x + 28], digit)
    image = Image.fromarray(255 - strip)
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.BILINEAR)


@pytest.mark.data
def test_mnist_strip_is_split_into_the_right_digits_in_order(mnist_test):
    images, labels = mnist_test
    rng = np.random.default_rng(5)
    for _ in range(5):
        index = rng.choice(len(images), size=6, replace=False)
        crops = segment_number(strip_of(images[index]))
        assert len(crops) == 6, f"labels {labels[index]}: found {len(crops)} digits"
        centres = [(c.box[0] + c.box[2]) / 2 for c in crops]
        assert centres == sorted(centres)
        for crop, i in zip(crops, index):
            assert crop.image.shape == (28, 28)
            # each crop is the source digit, prepared alone (not a neighbour, not half a digit)
            own = similarity(crop.image, prepare_digit(images[i]))
            others = [similarity(crop.image, prepare_digit(images[j])) for j in index if j != i]
            assert own > 0.9 and own > max(others), (labels[index], own, others)


@pytest.mark.data
def test_read_number_uses_one_batch_and_joins_labels(mnist_test):
    images, labels = mnist_test
    index = np.array([np.flatnonzero(labels == d)[0] for d in (5, 0, 4, 1, 9, 2)])

    class PerfectOracle:
        """A stand-in model that recognizes the six exact MNIST digits it was shown (nearest template)."""

        def __init__(self):
            self.templates = np.stack([prepare_digit(images[i]) for i in index])
            self.calls = 0

        def predict_proba(self, x):
            self.calls += 1
            assert x.shape[1:] == (1, 28, 28) and x.dtype == np.float32
            scores = np.array([[similarity(d[0], t) for t in self.templates] for d in x])
            probs = np.full((len(x), 10), 0.01, np.float32)
            probs[np.arange(len(x)), labels[index][scores.argmax(axis=1)]] = 0.91
            return probs

    model = PerfectOracle()
    reading = read_number(model, strip_of(images[index]))
    assert reading.text == "504192"
    assert model.calls == 1
    assert [d.label for d in reading.digits] == [5, 0, 4, 1, 9, 2]
    assert all(d.confidence == pytest.approx(0.91) for d in reading.digits)
    assert reading.confidence == pytest.approx(0.91**6, rel=1e-5)


def draw(shapes, size=(400, 120)) -> Image.Image:
    image = Image.new("L", size, 255)
    pen = ImageDraw.Draw(image)
    for kind, xy in shapes:
        if kind == "ring":
            pen.ellipse(xy, outline=0, width=8)
        else:
            pen.line(xy, fill=0, width=8)
    return image


def test_touching_digits_are_cut_where_the_ink_is_thinnest():
    # "00" written in one go: the pen joined the rings with a stroke, so they are one component
    image = draw([("ring", (20, 20, 80, 100)), ("line", [(76, 60), (104, 60)]), ("ring", (100, 20, 160, 100))])
    crops = segment_number(image)
    assert len(crops) == 2
    cut = crops[0].box[2]
    assert 80 <= cut <= 100 and crops[1].box[0] == cut  # cut through the joining stroke, not a ring
    assert similarity(crops[0].image, crops[1].image) > 0.8  # two similar rings


def test_three_touching_digits():
    image = draw(
        [
            ("ring", (20, 20, 80, 100)),
            ("line", [(76, 60), (104, 60)]),
            ("ring", (100, 20, 160, 100)),
            ("line", [(156, 60), (184, 60)]),
            ("ring", (180, 20, 240, 100)),
        ]
    )
    crops = segment_number(image)
    assert len(crops) == 3
    assert [c.box[0] for c in crops] == sorted(c.box[0] for c in crops)


def test_broken_strokes_of_one_digit_are_merged_and_specks_dropped():
    # a "5" whose top bar does not touch its body, then a "1", and a speck of dust
    image = draw(
        [
            ("line", [(42, 22), (90, 22)]),  # the detached bar
            ("line", [(40, 32), (38, 60), (70, 58), (80, 80), (62, 100), (36, 96)]),  # the body
            ("line", [(160, 20), (160, 100)]),  # a "1"
        ]
    )
    ImageDraw.Draw(image).point([(300, 60), (301, 60)], fill=0)
    crops = segment_number(image)
    assert len(crops) == 2
    assert crops[0].box[0] <= 36 and crops[0].box[1] <= 20 and crops[0].box[2] >= 88  # bar and body together
    assert crops[1].box[0] >= 150


def test_piece_rules_directly():
    tall = Piece([1], 0, 30, 0, 60)
    overlapping = Piece([2], 5, 28, 40, 60)  # shares most columns with `tall`
    apart = Piece([3], 50, 80, 0, 60)
    assert [p.labels for p in merge_broken_strokes([apart, overlapping, tall])] == [[1, 2], [3]]
    bar = Piece([4], 78, 100, 0, 8)  # short, touching `apart` on the right
    far = Piece([5], 200, 230, 0, 60)
    assert sorted(sorted(p.labels) for p in attach_fragments([tall, apart, bar, far])) == [[1], [3, 4], [5]]
    mask = np.ones((10, 40), bool)
    mask[3:7, 23] = False  # the thinnest column is 23
    assert thinnest_column(mask) == 23


def test_blank_strip_has_no_digits():
    with pytest.raises(NoDigitError):
        segment_number(Image.new("L", (300, 80), 255))
