"""Marks that are not digits, to train a model's "not a digit" class.

An MNIST network has ten answers and gives one of them for anything: a letter "A" comes out as an 8 with
90% confidence. A model with an eleventh class, *not a digit*, learns what digits are **not** from
examples of it. This module draws those examples as a person would make them on the drawing page or on
paper, light on dark, and sends them through the recognizer's own pipeline
(:func:`cnnlab.recognition.preprocess.prepare_digit`), so they look exactly like what the network will be
shown at run time (cropped, stroke width normalised, 20x20, centred by mass):

* **letters**, capital and small, that no one would read as a digit, in the fonts matplotlib ships
  (DejaVu, STIX, Computer Modern: upright, italic, bold), slanted, squeezed and turned a little. Letters
  that *are* digit-like (O D Q for 0, I l T J for 1, Z for 2, S for 5, G b for 6, B for 8, g q for 9) are
  left out: a model must stay free to read a sloppy "5" that looks like an S.
* **scribbles**: a smooth closed curve through random points, crossing itself; kept when it encloses at
  least :data:`MIN_SCRIBBLE_LOOPS` loops (with fewer, a curl can be a fair "6", "8" or "2").

The test photos (:mod:`cnnlab.synthetic.photos`) draw their letters in Pillow's bundled font (Aileron)
and their scribbles as Lissajous-like loops, neither of which is used here, so a score on them is not a
score on the training marks.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..engine.backend import make_rng
from ..recognition.reject import NOT_A_DIGIT  # the eleventh class name  # noqa: F401 (re-exported)

# Not digit-like (see the module docstring for the ones left out and why).
TRAIN_LETTERS = "ACEFHKLMNPRUVWXYfkmnrvwx"
FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSansMono.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-Bold.ttf", "STIXGeneral.ttf",
    "STIXGeneralItalic.ttf", "STIXGeneralBol.ttf", "cmr10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf",
)
CANVAS = 200  # side of the square each mark is drawn on, in pixels
MIN_SCRIBBLE_LOOPS = 3


@lru_cache(maxsize=None)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)


def _slant(canvas: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random shear, squeeze and small turn about the canvas centre (handwriting is never upright)."""
    shear, squeeze = rng.uniform(-0.35, 0.35), rng.uniform(0.75, 1.25)
    c = CANVAS / 2
    canvas = canvas.transform(canvas.size, Image.Transform.AFFINE,
                              (squeeze, shear, c - squeeze * c - shear * c, 0, 1, 0), Image.Resampling.BILINEAR)
    return canvas.rotate(rng.uniform(-15, 15), Image.Resampling.BILINEAR)


def letter_mark(rng: np.random.Generator) -> np.ndarray:
    """One letter of :data:`TRAIN_LETTERS` in a random font, light on dark, float32 ``(200, 200)`` in [0, 1]."""
    letter = str(rng.choice(list(TRAIN_LETTERS)))
    font = _font(str(rng.choice(FONT_FILES)), int(rng.integers(110, 150)))
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    ImageDraw.Draw(canvas).text((CANVAS / 2, CANVAS / 2), letter, fill=255, anchor="mm", font=font)
    return np.asarray(_slant(canvas, rng), np.float32) / 255.0


def scribble_mark(rng: np.random.Generator) -> np.ndarray:
    """A closed smooth curve through 6-11 random points of the square: it crosses itself and encloses
    several loops; float32 ``(200, 200)`` in [0, 1]."""
    from scipy.interpolate import CubicSpline

    points = rng.uniform(20, CANVAS - 20, (int(rng.integers(6, 12)), 2))
    points = np.vstack([points, points[:1]])  # closed: a periodic spline returns to where it started
    curve = CubicSpline(np.arange(len(points)), points, bc_type="periodic")(np.linspace(0, len(points) - 1, 600))
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    ImageDraw.Draw(canvas).line([tuple(p) for p in curve], fill=255, width=int(rng.integers(5, 12)), joint="curve")
    return np.asarray(canvas, np.float32) / 255.0


def non_digit_images(count: int, seed: int = 0, scribbles: float = 0.25) -> np.ndarray:
    """``count`` non-digit marks as the recognizer prepares them: uint8 ``(count, 28, 28)``, MNIST-style.

    A share ``scribbles`` are scribbles, the rest letters. Marks the pipeline finds no ink in (it should
    not happen) and scribbles with fewer than :data:`MIN_SCRIBBLE_LOOPS` loops are drawn again.
    """
    from ..recognition.preprocess import NoDigitError, prepare_digit
    from ..recognition.reject import count_loops

    rng = make_rng(seed)
    images = np.zeros((count, 28, 28), np.uint8)
    done = 0
    while done < count:
        scribble = rng.random() < scribbles
        mark = scribble_mark(rng) if scribble else letter_mark(rng)
        try:
            prepared = prepare_digit(mark, check=False)
        except NoDigitError:
            continue
        if scribble and count_loops(prepared > 0.3) < MIN_SCRIBBLE_LOOPS:
            continue
        images[done] = np.rint(prepared * 255).astype(np.uint8)
        done += 1
    return images
