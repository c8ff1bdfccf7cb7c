"""Recognition in the wild: synthetic phone photos, the photo preprocessing steps, "not a digit", the stage strip.

The photos come from :mod:`cnnlab.synthetic.photos` (MNIST *test* digits rendered as ink on paper); the
accuracy tests use a few dozen of them and the bundled model, and need the real MNIST test files.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw
from test_segment import mnist_test_files, read_idx_gz

from cnnlab.recognition.paper import flatten_illumination, remove_rulings
from cnnlab.recognition.preprocess import prepare_digit
from cnnlab.recognition.calibration import Calibration, calibration_for, judge, weights_fingerprint
from cnnlab.recognition.reject import NotADigitError
from cnnlab.recognition.stages import STAGE_ORDER, stage_strip
from cnnlab.synthetic import drawings, photos


def drawn_seven_28() -> np.ndarray:
    """A "7" as an MNIST-style 28x28 uint8 (light on dark), for tests that need no dataset."""
    image = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(image).line([(6, 5), (21, 5), (12, 23)], fill=255, width=3)
    return np.asarray(image)


def canvas(shapes, size=(400, 300), width=10) -> Image.Image:
    """Dark pen strokes on white: ``shapes`` are ("line", points) or ("ring", box)."""
    image = Image.new("L", size, 255)
    pen = ImageDraw.Draw(image)
    for kind, xy in shapes:
        if kind == "ring":
            pen.ellipse(xy, outline=0, width=width)
        else:
            pen.line(xy, fill=0, width=width, joint="curve")
    return image


@pytest.fixture(scope="module")
def mnist_test():
    images, labels = mnist_test_files()
    return read_idx_gz(images), read_idx_gz(labels)


@pytest.fixture(scope="module")
def recognizer():
    from cnnlab.io import load_bundled_model
    from cnnlab.recognition.serve.recognize import Recognizer

    return Recognizer(load_bundled_model())


# -- the generator ---------------------------------------------------------------------------------------------
def test_photos_are_deterministic_900x1200_jpegs():
    digit = drawn_seven_28()
    first = photos.digit_photo(digit, seed=3, paper="squared")
    assert first == photos.digit_photo(digit, seed=3, paper="squared")
    assert first != photos.digit_photo(digit, seed=4, paper="squared")
    image = Image.open(io.BytesIO(first))
    assert image.format == "JPEG" and image.size == photos.PHOTO_SIZE == (900, 1200)
    # the digit it shows is the one it was given (prepared, it correlates with the source digit)
    seen, source = prepare_digit(first), prepare_digit(digit)
    assert float(np.corrcoef(seen.ravel(), source.ravel())[0, 1]) > 0.6


@pytest.mark.parametrize("kind", photos.NON_DIGIT_KINDS)
def test_every_non_digit_kind_renders(kind):
    digits = np.stack([drawn_seven_28()] * 3)
    data = photos.non_digit_photo(kind, seed=1, digits=digits)
    assert Image.open(io.BytesIO(data)).format == "JPEG"
    with pytest.raises(ValueError, match="kind must be one of"):
        photos.non_digit_photo("giraffe", seed=1)


# -- the steps -------------------------------------------------------------------------------------------------
def test_flattening_divides_out_a_lighting_gradient():
    # paper lit from 0.45 (left) to 1.0 (right) with the same dark stroke in the shade and in the light
    light = np.linspace(0.45, 1.0, 400, dtype=np.float32)[None, :].repeat(300, axis=0)
    paper = light.copy()
    for x in (60, 330):
        paper[100:200, x : x + 6] = 0.2 * light[100:200, x : x + 6]
    ink = flatten_illumination(paper)
    assert ink[:90].max() < 0.1  # the paper is near 0 everywhere (under the 0.1 ink step), shade or not
    shade, lit = ink[100:200, 60:66].mean(), ink[100:200, 330:336].mean()
    assert shade > 0.7 and abs(shade - lit) < 0.05


def test_chalk_on_a_dark_board_is_light_ink():
    from cnnlab.recognition.paper import dark_ink

    light = np.linspace(0.6, 1.0, 512, dtype=np.float32)[None, :].repeat(384, axis=0)
    board = 0.8 - light * 0.6  # a dark board, lit unevenly
    board[150:230, 100:108] = 0.9
    board[150:158, 100:180] = 0.9
    assert not dark_ink(board)
    assert dark_ink(1.0 - board)  # and dark strokes on light paper are dark ink


@pytest.mark.data
def test_the_paper_around_a_written_number_is_not_taken_for_light_ink(mnist_test):
    """These 9 photos of numbers (of 100) were read inverted when polarity came from the closing and
    the opening: the opening of a row of dark digits is dark all along it."""
    from cnnlab.recognition.paper import dark_ink, paper_brightness, working_copy
    from cnnlab.recognition.preprocess import as_picture

    images, _ = mnist_test
    for k in (5, 11, 50, 51, 54, 58, 75, 96, 98):
        rng = np.random.default_rng(5000 + k)
        digits = images[rng.choice(len(images), size=int(rng.integers(2, 5)), replace=False)]
        jpeg = photos.non_digit_photo("several-digits", 5000 + k, digits)
        assert dark_ink(paper_brightness(working_copy(as_picture(jpeg)))), k


def test_rulings_are_removed_but_a_crossing_stroke_is_kept():
    mask = np.zeros((384, 512), bool)
    mask[::32, :] = True  # a grid of thin lines across the whole frame
    mask[:, ::32] = True
    mask[100:260, 203:208] = True  # a stroke crossing five horizontal lines
    cleaned = remove_rulings(mask)
    assert cleaned[:, 300:].sum() < 0.02 * mask[:, 300:].sum()  # the grid away from the stroke is gone
    assert cleaned[100:260, 203:208].all()  # the stroke is whole, also where it crossed the lines


def test_a_digit_bar_longer_than_a_grid_square_is_not_a_ruling():
    image = canvas([("line", [(80, 60), (330, 60), (200, 270)])], width=8)  # a 7 spanning 62% of the width
    digit = prepare_digit(image)
    rows = np.flatnonzero((digit > 0.3).any(axis=1))
    assert digit[rows[0] : rows[0] + 3].sum() > 20  # the bar is there, at the top


# -- "not a digit" from the shape ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shapes, reason",
    [
        ([("line", [(60, 200), (340, 120)])], "straight line"),
        ([("line", [(40, 60), (90, 60), (60, 240)]), ("ring", (250, 60, 340, 240))], "side by side"),
        ([("ring", (100 + 12 * k, 80 + 9 * k, 180 + 12 * k, 160 + 9 * k)) for k in range(6)], "scribble"),
    ],
    ids=["slanted-line", "two-digits", "scribble"],
)
def test_shapes_that_are_not_one_digit(shapes, reason):
    with pytest.raises(NotADigitError, match=reason):
        prepare_digit(canvas(shapes, width=4))


def test_several_digits_are_fine_in_number_mode():
    image = canvas([("line", [(40, 60), (90, 60), (60, 240)]), ("ring", (250, 60, 340, 240))])
    assert prepare_digit(image, single=False).shape == (28, 28)


def test_noise_is_not_a_digit():
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    with pytest.raises(NotADigitError, match="noise"):
        prepare_digit(noise)


# -- "not a digit" from the model ------------------------------------------------------------------------------
def test_judge_scales_by_temperature_and_rejects_below_the_threshold():
    p = np.array([0.6, 0.3, 0.1])
    scaled, message, not_a_digit = judge(p, Calibration(temperature=2.0, min_confidence=0.5))
    assert scaled.argmax() == 0 and scaled.max() < 0.6  # T > 1 softens, never changes the answer
    assert message is not None and "not a digit" in message and not_a_digit == 0.0
    assert judge(p, Calibration(temperature=1.0, min_confidence=0.5))[1] is None


def test_judge_with_a_not_a_digit_class():
    calibration = Calibration(max_not_a_digit=0.3)
    # the last class is "not a digit": the digits come back renormalized, the class beside them
    scaled, message, not_a_digit = judge(np.array([0.6, 0.2, 0.2]), calibration, reject=2)
    np.testing.assert_allclose(scaled, [0.75, 0.25])
    assert message is None and not_a_digit == pytest.approx(0.2)
    scaled, message, not_a_digit = judge(np.array([0.5, 0.1, 0.4]), calibration, reject=2)
    assert "sees no digit" in message and "40%" in message and scaled.argmax() == 0


def test_the_bundled_calibration_applies_only_to_its_own_weights():
    from cnnlab.io import load_bundled_model

    model = load_bundled_model()
    calibration = calibration_for(model)
    assert calibration.weights_sha256 == weights_fingerprint(model)
    assert 0.2 < calibration.temperature < 5.0
    assert 0.0 < calibration.max_not_a_digit < 1.0  # the bundled model refuses by its "not a digit" class
    teaching = load_bundled_model("lenet5")  # its own calibration, found by its own fingerprint
    assert calibration_for(teaching).weights_sha256 == weights_fingerprint(teaching)
    assert 0.0 < calibration_for(teaching).min_confidence < 1.0
    _name, layer, key = next(iter(model.parameters()))
    layer.params[key] += 0.01  # "retrained": another model, so another (missing) calibration
    assert calibration_for(model) == Calibration()


@pytest.mark.data
def test_few_mnist_test_digits_are_rejected(mnist_test, recognizer):
    images, labels = mnist_test
    answers = [recognizer.recognize(Image.fromarray(image)) for image in images[:1000]]
    rejected = sum(a["prediction"] is None for a in answers)
    right = sum(a["prediction"] == label for a, label in zip(answers, labels[:1000]))
    assert rejected <= 10, rejected  # 0.5% is the target on the whole test set; 1% on this small sample
    assert right >= 980, right


# -- the photos, end to end ------------------------------------------------------------------------------------
@pytest.mark.data
@pytest.mark.parametrize("paper, least", [("plain", 11), ("squared", 11)])
def test_photos_of_digits_are_read(mnist_test, recognizer, paper, least):
    images, labels = mnist_test
    rendered = photos.digit_photos(images[:12], labels[:12], paper, 12, seed=7)
    answers = [recognizer.recognize(p.jpeg)["prediction"] for p in rendered]
    right = sum(a == p.label for a, p in zip(answers, rendered))
    assert right >= least, (answers, [p.label for p in rendered])


@pytest.mark.data
def test_photos_of_written_numbers_are_read_in_number_mode(mnist_test, recognizer):
    """A number on squared, ruled or plain paper goes through the photo steps too (before, the
    threshold saw the grid: "no digit found"); the digits along the line of writing are all kept."""
    images, labels = mnist_test
    rendered = photos.number_photos(images[:1000], labels[:1000], 20, seed=3)
    answers = [recognizer.recognize(p.jpeg, number=True) for p in rendered]
    right = sum(a["number"] == p.number for a, p in zip(answers, rendered))
    assert right >= 17, ([a["number"] for a in answers], [p.number for p in rendered])  # 19 of 20 when written
    # the boxes are in the photo's own pixels, not the working copy's
    width, height = Image.open(io.BytesIO(rendered[0].jpeg)).size
    boxes = [d["box"] for a in answers if a["number"] for d in a["digits"]]
    assert all(0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height for x0, y0, x1, y1 in boxes)
    assert max(x1 for _, _, x1, _ in boxes) > 512  # beyond the working copy's 384 x 512


@pytest.mark.data
def test_non_digit_photos_get_no_answer(mnist_test, recognizer):
    images, _ = mnist_test
    rendered = [p for p in photos.non_digit_photos(2, images, seed=7) if p.category != "letter"]
    answers = [recognizer.recognize(p.jpeg) for p in rendered]
    refused = [p.category for p, a in zip(rendered, answers) if a["prediction"] is None and a["message"]]
    assert len(refused) >= len(rendered) - 1, (refused, [p.category for p in rendered])


# -- the stage strip -------------------------------------------------------------------------------------------
def test_prepare_digit_reports_every_stage_and_the_strip_draws_them():
    stages: dict = {}
    digit = prepare_digit(photos.digit_photo(drawn_seven_28(), seed=2, paper="squared"), stages=stages)
    assert set(STAGE_ORDER) <= set(stages)
    assert np.array_equal(stages["28x28"], digit) and stages["20x20"].shape[0] <= 20
    strip = stage_strip(stages, "answer: 7")
    assert strip.width > len(STAGE_ORDER) * 100 and strip.height > 200


def test_predict_show_and_json_on_photos(tmp_path, capsys):
    from cnnlab.cli import main

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(photos.digit_photo(drawn_seven_28(), seed=2, paper="plain"))
    blank = tmp_path / "blank.jpg"
    blank.write_bytes(photos.non_digit_photo("blank", seed=2))
    out = tmp_path / "stages.png"
    assert main(["predict", str(photo), "--show", str(out)]) == 0
    assert Image.open(out).width > 6 * 100
    capsys.readouterr()
    assert main(["predict", "--json", str(blank)]) == 0
    answer = json.loads(capsys.readouterr().out)[0]
    assert answer["prediction"] is None and answer["message"].startswith("no digit found")


def test_uci_8x8_scans(recognizer):
    """Other writers' scans: scikit-learn's 1,797 UCI digits (8x8, 0..16), enlarged 4x; the issue asks
    for 97%. The bundled cnn-bn reads 97.22% of them (its fat strokes left fat, as it was trained on
    them: 96.38% when they are narrowed), refusing 0.33%."""
    from sklearn.datasets import load_digits

    assert not recognizer.thin_fat_strokes  # the bundled model says so in its preprocessing
    digits = load_digits()
    right = 0
    for image, label in zip(digits.images, digits.target):
        picture = Image.fromarray((image * (255 / 16)).astype(np.uint8)).resize((32, 32), Image.Resampling.BICUBIC)
        right += recognizer.recognize(picture)["prediction"] == label
    assert right / len(digits.target) >= 0.97, right


# -- canvas drawings ------------------------------------------------------------------------------------------
@pytest.mark.data
def test_drawings_are_canvases_of_both_polarities_and_the_same_for_a_seed(mnist_test):
    images, labels = mnist_test
    rendered = drawings.digit_drawings(images[:20], labels[:20], 20, seed=3)
    again = drawings.digit_drawings(images[:20], labels[:20], 20, seed=3)
    assert [d.png for d in rendered] == [d.png for d in again]
    pictures = [np.asarray(Image.open(io.BytesIO(d.png))) for d in rendered]
    assert all(p.shape == (drawings.CANVAS, drawings.CANVAS) and p.dtype == np.uint8 for p in pictures)
    light_background = [np.median(p) > 128 for p in pictures]
    assert 3 <= sum(light_background) <= 17  # both polarities, about half each
    for picture, light in zip(pictures, light_background):
        ink = (picture < 128) if light else (picture > 128)
        assert 0.005 < ink.mean() < 0.4  # a stroke, not an empty canvas nor a filled one


@pytest.mark.data
def test_drawn_digits_are_read(mnist_test, recognizer):
    images, labels = mnist_test
    rendered = drawings.digit_drawings(images[:40], labels[:40], 40, seed=5)
    answers = [recognizer.recognize(d.png)["prediction"] for d in rendered]
    right = sum(a == d.label for a, d in zip(answers, rendered))
    assert right >= 38, (answers, [d.label for d in rendered])  # 98.2% measured on 1,000 (docs/recognition.md)
