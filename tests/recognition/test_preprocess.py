"""MNIST-style preprocessing on pictures the tests draw themselves with Pillow."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from cnnlab.engine.errors import CnnlabError
from cnnlab.recognition.preprocess import (
    MAX_IMAGE_PIXELS,
    ImageError,
    ImageTooLargeError,
    NoDigitError,
    load_image,
    otsu_threshold,
    histogram256,
    prepare_digit,
    to_ink,
)


def draw_seven(size=(200, 200), box=(40, 30, 160, 170), width=14, ink=0, paper=255, mode="L") -> Image.Image:
    """A "7" drawn with two strokes inside ``box`` (x0, y0, x1, y1)."""
    image = Image.new(mode, size, paper)
    x0, y0, x1, y1 = box
    ImageDraw.Draw(image).line([(x0, y0), (x1, y0), ((x0 + x1) // 2, y1)], fill=ink, width=width, joint="curve")
    return image


def png_bytes(image: Image.Image, fmt="PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def assert_mnist_like(digit: np.ndarray) -> None:
    """The properties every MNIST digit has."""
    assert digit.shape == (28, 28) and digit.dtype == np.float32
    assert digit.min() >= 0.0 and digit.max() <= 1.0 and digit.max() > 0.9
    # light on dark: most of the field is background and almost no ink sits on the outer ring (centring
    # by mass may push a top-heavy "7" to touch the bottom edge, as in about 1% of MNIST)
    ring = np.concatenate([digit[0], digit[-1], digit[:, 0], digit[:, -1]])
    assert ring.sum() < 0.05 * digit.sum()
    assert (digit > 0.1).mean() < 0.5
    rows = np.flatnonzero((digit > 0.05).any(axis=1))
    cols = np.flatnonzero((digit > 0.05).any(axis=0))
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    assert max(height, width) in (19, 20, 21), (height, width)  # the longer side fills the 20x20 box
    assert height <= 21 and width <= 21
    cy, cx = ndimage.center_of_mass(digit)
    assert abs(cy - 14) <= 1.0 and abs(cx - 14) <= 1.0, (cy, cx)


def reference_seven() -> np.ndarray:
    return prepare_digit(draw_seven())


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Best correlation over shifts of at most one pixel (rounding the centre of mass may differ by 1)."""
    return max(
        float(np.corrcoef(np.roll(a, (dy, dx), (0, 1)).ravel(), b.ravel())[0, 1])
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )


def test_black_on_white_becomes_light_on_dark_centred_in_20x20():
    digit = reference_seven()
    assert_mnist_like(digit)
    # the 7's top bar is at the top and bright: light ink on a dark field
    rows = np.flatnonzero((digit > 0.05).any(axis=1))
    assert digit[rows[0] : rows[0] + 3].max() > 0.9


def test_white_on_black_gives_the_same_digit():
    normal = reference_seven()
    inverted = prepare_digit(draw_seven(ink=255, paper=0))
    assert_mnist_like(inverted)
    assert similarity(normal, inverted) > 0.97


def test_off_centre_digit_is_centred():
    corner = prepare_digit(draw_seven(size=(600, 400), box=(480, 250, 580, 380), width=10))
    assert_mnist_like(corner)
    assert similarity(reference_seven(), corner) > 0.85


@pytest.mark.parametrize(
    "size, box, width",
    [((12, 12), (2, 1, 9, 10), 1), ((3000, 2000), (800, 300, 2000, 1800), 6)],
    ids=["tiny-12px", "huge-3000px-thin-pen"],
)
def test_tiny_and_huge_pictures(size, box, width):
    digit = prepare_digit(draw_seven(size=size, box=box, width=width))
    assert_mnist_like(digit)
    assert similarity(reference_seven(), digit) > 0.7
    # a thin pen on a big page is thickened to a marker-like stroke, as in MNIST (2-3 px)
    assert (digit > 0.5).sum() > 30


def test_rgba_with_transparent_background_composited_on_white():
    image = Image.new("RGBA", (200, 200), (0, 0, 0, 0))  # transparent *black*: must not read as black paper
    ImageDraw.Draw(image).line([(40, 30), (160, 30), (100, 170)], fill=(20, 20, 200, 255), width=14)
    digit = prepare_digit(png_bytes(image))
    assert_mnist_like(digit)
    assert similarity(reference_seven(), digit) > 0.9


def test_noisy_background_and_specks_are_suppressed():
    rng = np.random.default_rng(0)
    clean = np.asarray(draw_seven(), dtype=np.float64)
    noisy = clean * 0.8 + 40 + rng.normal(0, 12, clean.shape)  # grey paper, sensor noise
    for y, x in rng.integers(0, 200, size=(25, 2)):  # dust specks
        noisy[y : y + 2, x : x + 2] = 0
    picture = np.clip(noisy, 0, 255).astype(np.uint8)
    digit = prepare_digit(Image.fromarray(picture).convert("RGB"))
    assert_mnist_like(digit)
    assert similarity(reference_seven(), digit) > 0.9


@pytest.mark.parametrize("fmt", ["JPEG", "BMP", "GIF", "WEBP"])
def test_other_formats(fmt):
    image = draw_seven().convert("RGB")
    if fmt == "WEBP" and not Image.registered_extensions().get(".webp"):
        pytest.skip("this Pillow build has no WebP support")
    digit = prepare_digit(png_bytes(image, fmt))
    assert similarity(reference_seven(), digit) > 0.9


def test_first_frame_of_an_animated_gif():
    frames = [draw_seven().convert("P"), Image.new("P", (200, 200), 255)]
    data = png_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert similarity(reference_seven(), prepare_digit(data)) > 0.95


def test_paths_arrays_and_16_bit_images(tmp_path):
    path = tmp_path / "seven.png"
    draw_seven().save(path)
    reference = reference_seven()
    assert similarity(reference, prepare_digit(path)) > 0.99
    assert similarity(reference, prepare_digit(str(path))) > 0.99
    assert similarity(reference, prepare_digit(np.asarray(draw_seven()))) > 0.99
    sixteen = Image.fromarray(np.asarray(draw_seven(), dtype=np.uint16) * 257)
    assert similarity(reference, prepare_digit(png_bytes(sixteen))) > 0.99


@pytest.mark.parametrize("picture", ["white", "black", "grey-noise", "two-dots"])
def test_blank_picture_is_no_digit(picture):
    rng = np.random.default_rng(1)
    dots = np.full((100, 80), 255, np.uint8)
    dots[[10, 60], [20, 50]] = 0
    arrays = {
        "two-dots": dots,
        "white": np.full((100, 80), 255, np.uint8),
        "black": np.zeros((100, 80), np.uint8),
        "grey-noise": np.clip(rng.normal(128, 8, (100, 80)), 0, 255).astype(np.uint8),
    }
    with pytest.raises(NoDigitError, match="no digit found"):
        prepare_digit(png_bytes(Image.fromarray(arrays[picture])))


def test_not_an_image_and_missing_file(tmp_path):
    with pytest.raises(ImageError, match="could not be read"):
        load_image(b"this is not a picture")
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(png_bytes(draw_seven())[:300])
    assert issubclass(ImageError, CnnlabError) and issubclass(NoDigitError, CnnlabError)


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG file whose header claims ``width x height`` pixels (the compressed rows are few bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit gray
    rows = zlib.compress(b"\x00" * 64)  # nowhere near enough data: it must never be decoded
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@pytest.mark.parametrize("width, height", [(60_000, 60_000), (8_000, 8_000), (30_000, 10)])
def test_decompression_bombs_are_refused_before_decoding(width, height):
    data = bomb_png(width, height)
    assert len(data) < 200
    with pytest.raises(ImageTooLargeError, match="refused"):
        load_image(data)
    assert width * height > MAX_IMAGE_PIXELS or max(width, height) > 20_000


def test_otsu_separates_two_levels_and_to_ink_detects_polarity():
    values = np.concatenate([np.full(900, 0.1), np.full(100, 0.8)])
    threshold, gap = otsu_threshold(histogram256(values))
    assert 0.1 <= threshold < 0.8 and gap == pytest.approx(0.7, abs=0.01)
    dark_on_light = np.ones((10, 10), np.float32)
    dark_on_light[3:7, 4:6] = 0.0
    assert to_ink(dark_on_light)[5, 5] == 1.0 and to_ink(dark_on_light)[0, 0] == 0.0
    assert to_ink(1.0 - dark_on_light)[5, 5] == 1.0


@pytest.mark.data
def test_real_mnist_digits_are_left_almost_unchanged():
    from test_segment import mnist_test_files, read_idx_gz

    images = read_idx_gz(mnist_test_files()[0])
    # MNIST is already what the pipeline produces: it must be (nearly) a fixed point.
    errors = [np.abs(prepare_digit(img) - img / 255.0).mean() for img in images[:100]]
    assert float(np.mean(errors)) < 0.01, np.mean(errors)


def test_a_600_dpi_a4_jpeg_scan_is_read_not_refused(tmp_path, capsys):
    """34.8 megapixels: the JPEG decoder shrinks it while decoding, no warning reaches the user; the same
    page as a PNG is refused in one line that says a JPEG would do."""
    import warnings

    from PIL import ImageDraw

    from cnnlab.cli import main

    page = Image.new("L", (4960, 7016), 255)
    ImageDraw.Draw(page).line([(2000, 2000), (3000, 2000), (2400, 4500)], fill=0, width=60)  # a 7
    page.save(tmp_path / "scan.jpg", quality=85)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning would fail here
        assert main(["predict", str(tmp_path / "scan.jpg")]) == 0
    assert "answer: 7" in capsys.readouterr().out
    page.save(tmp_path / "scan.png")
    assert main(["predict", str(tmp_path / "scan.png")]) == 2
    err = capsys.readouterr().err
    assert "4960x7016 pixels refused" in err and "for a JPEG" in err and "Traceback" not in err


# -- clean drawings are cut to their ink first ---------------------------------------------------------------
def test_a_clean_drawing_is_cut_to_its_ink_and_shrunk():
    from PIL import ImageDraw

    from cnnlab.recognition.paper import CLEAN_SIDE, cut_to_drawing

    canvas = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(canvas).line([(100, 40), (100, 250)], fill=255, width=12)  # a "1", 211 px tall
    cut, scale = cut_to_drawing(canvas)
    assert max(cut.size) == CLEAN_SIDE and scale == pytest.approx(CLEAN_SIDE / (211 + 8), rel=0.02)  # 2+2 px of frame each side
    pixels = np.asarray(cut)
    assert pixels[0].max() == 0 and pixels[:, 0].max() == 0  # a frame of background for the polarity test
    blank = Image.new("L", (280, 280), 0)
    assert cut_to_drawing(blank) == (blank, 1.0)


def test_a_fat_digit_on_a_canvas_is_not_taken_for_noise():
    """The noise test asks how much of the *picture* the ink covers, not how much of the cut."""
    from PIL import ImageDraw

    canvas = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(canvas).ellipse((90, 60, 190, 220), outline=255, width=30)  # a "0" drawn with a finger
    digit = prepare_digit(canvas)
    assert digit.shape == (28, 28) and digit.max() > 0.9
    noise = Image.fromarray((np.random.default_rng(0).random((280, 280)) > 0.5).astype(np.uint8) * 255)
    with pytest.raises(NoDigitError):
        prepare_digit(noise)


def test_fat_strokes_are_narrowed_unless_the_model_was_trained_on_them():
    from cnnlab.recognition.preprocess import thins_strokes
    from cnnlab.training.recipes import preprocessing_for

    fat = draw_seven(size=(60, 60), box=(8, 6, 52, 54), width=14)  # a felt pen written small
    narrowed, kept = prepare_digit(fat), prepare_digit(fat, thin_fat_strokes=False)
    assert_mnist_like(narrowed)
    assert_mnist_like(kept)
    assert (kept > 0.5).sum() > 1.1 * (narrowed > 0.5).sum()  # 157 against 133 pixels
    # a hairline is widened either way (no network has seen those)
    thin = draw_seven(size=(3000, 2000), box=(800, 300, 2000, 1800), width=6)
    np.testing.assert_array_equal(prepare_digit(thin), prepare_digit(thin, thin_fat_strokes=False))
    # who decides: the model's stored preprocessing, written by training
    assert thins_strokes(None) and thins_strokes(preprocessing_for("mnist", (1, 28, 28)))
    assert not thins_strokes(preprocessing_for("mnist", (1, 28, 28), fat_strokes_seen=True))
    assert "thin_strokes" not in preprocessing_for("cifar10", (3, 32, 32), fat_strokes_seen=True)  # no digit pipeline
