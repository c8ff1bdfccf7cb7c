"""Synthetic phone photos of a digit written on paper, and of marks that are not digits.

Real photos of handwriting are kept outside the project (nothing may be tuned to them), so the recognizer
is developed and tested on pictures rendered here. A photo is built in the order a camera sees it::

    paper_texture    off-white sheet with fibre noise                              (H, W, 3) float 0..255
    print_rulings    light-blue 5 mm squares, or ruled lines with a red margin     same, multiplied on
    pen_alpha        the mark's shape as a pen stroke: thinned to a ballpoint's     (h, w) float 0..1
                     width by a signed distance, anti-aliased
    lay_ink          ballpoint blue/black or grainy pencil grey, multiplied onto the paper
    lighting         desk-lamp spot, linear gradient, vignette, sometimes a soft shadow
    tilt_sheet       slight perspective (PIL PERSPECTIVE); the desk shows where the sheet ends
    camera           Gaussian blur, sensor noise, JPEG compression

Everything is drawn from one ``numpy.random.Generator``, so the same seed gives the same JPEG bytes.
The marks are MNIST *test* digits (never seen in training) or shapes drawn here: straight lines,
scribbles, letters, several digits side by side. Sizes follow the issue: 900 x 1200 pixels, the mark
10-45% of the short side, anywhere on the sheet.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage

PHOTO_SIZE = (900, 1200)  # (width, height): a phone photo, portrait, scaled down
INKS = {"blue": (30, 48, 140), "black": (28, 28, 34), "pencil": (100, 100, 106)}
PAPERS = ("plain", "squared", "ruled")
DESK = (92, 70, 52)  # a wooden desk, seen where the tilted sheet does not fill the frame
#: Letters that no careful reader would take for a digit (O, I, S, Z, B, G, q, l look like 0 1 5 2 8 6 9 1).
LETTERS = "AEFHKMNRWXY"
NON_DIGIT_KINDS = ("blank", "noise", "line", "scribble", "letter", "several-digits")


@dataclass(frozen=True)
class Photo:
    """One rendered picture: JPEG bytes, the digit it shows (``None`` for a non-digit) and its category."""

    jpeg: bytes
    label: int | None
    category: str
    seed: int


def smooth_upscale(field: np.ndarray, size) -> np.ndarray:
    """A small float ``(h, w)`` field enlarged to ``size`` = (W, H) with bicubic interpolation (smooth)."""
    image = Image.fromarray(np.ascontiguousarray(field, np.float32)).resize(size, Image.Resampling.BICUBIC)
    return np.asarray(image, np.float32)


# -- the sheet ---------------------------------------------------------------------------------------------
def paper_texture(rng: np.random.Generator, size=PHOTO_SIZE) -> np.ndarray:
    """Off-white paper ``(H, W, 3)`` in 0..255: a random tint, fine fibres and faint large blotches."""
    width, height = size
    tint = np.array([245.0, 242.0, 232.0]) + rng.uniform(-8, 6, 3)
    fibres = ndimage.gaussian_filter(rng.normal(0, 1, (height, width)).astype(np.float32), 0.8) * 2.5
    blotches = smooth_upscale(rng.normal(0, 1.5, (height // 100 + 2, width // 100 + 2)), size)
    return np.clip(tint + (fibres + blotches)[..., None], 0, 255).astype(np.float32)


def line_profile(coord: np.ndarray, spacing: float, offset: float, width: float) -> np.ndarray:
    """Coverage (0..1) of parallel printed lines every ``spacing`` px, ``width`` px wide, anti-aliased.

    ``coord`` is the pixel coordinate across the lines; the distance to the nearest line minus half its
    width gives a one-pixel soft edge.
    """
    distance = np.abs(np.mod(coord - offset + spacing / 2, spacing) - spacing / 2)
    return np.clip(width / 2 + 0.5 - distance, 0.0, 1.0)


def print_rulings(paper: np.ndarray, rng: np.random.Generator, kind: str) -> np.ndarray:
    """Print ``"squared"`` (5 mm squares) or ``"ruled"`` lines (plus a red margin) on the paper.

    ``"plain"`` returns the paper unchanged. The line colour is a random light blue, multiplied on like ink.
    """
    if kind == "plain":
        return paper
    height, width = paper.shape[:2]
    colour = np.array([rng.uniform(120, 175), rng.uniform(170, 210), rng.uniform(215, 245)]) / 255.0
    strength = rng.uniform(0.5, 0.9)
    line_width = rng.uniform(1.0, 2.2)
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    if kind == "squared":
        spacing = rng.uniform(28, 46)
        across = np.maximum(line_profile(ys, spacing, rng.uniform(0, spacing), line_width),
                            line_profile(xs, spacing, rng.uniform(0, spacing), line_width))
    elif kind == "ruled":
        spacing = rng.uniform(36, 56)
        across = np.broadcast_to(line_profile(ys, spacing, rng.uniform(0, spacing), line_width), (height, width))
    else:
        raise ValueError(f"paper must be one of {PAPERS}, received {kind!r}")
    out = paper * (1.0 - strength * across[..., None] * (1.0 - colour))
    if kind == "ruled" and rng.random() < 0.5:  # the red margin of an exercise book
        margin = line_profile(xs, 10 * width, rng.uniform(0.08, 0.15) * width, line_width + 0.8)
        red = np.array([0.9, 0.45, 0.45])
        out = out * (1.0 - strength * np.broadcast_to(margin, (height, width))[..., None] * (1.0 - red))
    return out


# -- the pen --------------------------------------------------------------------------------------------------
def stroke_half_width(mask: np.ndarray, inside: np.ndarray) -> float:
    """Typical half-width (px) of the strokes of ``mask``: the median distance to the edge along the
    ridge (the pixels where the distance to the edge is a local maximum)."""
    ridge = mask & (inside >= ndimage.maximum_filter(inside, size=3))
    return float(np.median(inside[ridge])) if ridge.any() else 1.0


def pen_alpha(mark: np.ndarray, height_px: int, pen_px: float, longest: bool = False) -> np.ndarray:
    """A mark ``(h, w)`` (1 = ink, any resolution) -> pen coverage ``(H, W)`` in 0..1, ``height_px`` tall
    (with ``longest``: ``height_px`` on its longer side, for a line or a scribble that may lie flat).

    The mark is enlarged smoothly (bicubic, then a blur that hides MNIST's pixels), and its strokes are
    made ``pen_px`` wide: the signed distance to the stroke's edge is shifted so the outline moves
    inwards (a marker-thick MNIST digit becomes a ballpoint line) and gives a one-pixel anti-aliased edge.
    Strokes are thinned to at most 45% of their width lost, so no part of a digit disappears.
    """
    rows, cols = np.flatnonzero(mark.max(axis=1) > 0.2), np.flatnonzero(mark.max(axis=0) > 0.2)
    mark = mark[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    scale = height_px / (max(mark.shape) if longest else mark.shape[0])
    size = (max(1, round(mark.shape[1] * scale)), max(1, round(mark.shape[0] * scale)))
    big = Image.fromarray(np.ascontiguousarray(mark, np.float32)).resize(size, Image.Resampling.BICUBIC)
    pad = int(pen_px) + 4
    big = ndimage.gaussian_filter(np.pad(np.asarray(big, np.float32), pad), sigma=max(scale * 0.4, 0.5))
    mask = big > 0.4 * float(big.max())
    inside = ndimage.distance_transform_edt(mask)
    signed = inside - ndimage.distance_transform_edt(~mask)
    half = stroke_half_width(mask, inside)
    shrink = float(np.clip(half - pen_px / 2, -pen_px, 0.45 * half))
    return np.clip(signed - shrink + 0.5, 0.0, 1.0).astype(np.float32)


def lay_ink(paper: np.ndarray, alpha: np.ndarray, top_left: tuple[int, int], ink: str,
            rng: np.random.Generator) -> np.ndarray:
    """Multiply pen coverage ``alpha`` onto ``paper`` at ``(x, y)`` in the colour of ``ink``.

    A ballpoint varies a little in pressure along the stroke; pencil is lighter and grainy (graphite
    sits on the paper's fibres), which is what makes it hard to tell from a printed grid line.
    """
    h, w = alpha.shape
    x, y = top_left
    smooth = ndimage.gaussian_filter(rng.normal(0, 1, alpha.shape).astype(np.float32), 6)
    pressure = 1.0 - 0.15 * np.abs(smooth) / max(float(np.abs(smooth).max()), 1e-6)
    if ink == "pencil":
        grain = np.clip(ndimage.gaussian_filter(rng.uniform(0.5, 1.0, alpha.shape).astype(np.float32), 0.6), 0, 1)
        cover = alpha * pressure * grain * rng.uniform(0.55, 0.8)
    else:
        cover = alpha * pressure * rng.uniform(0.85, 1.0)
    colour = np.array(INKS[ink], np.float32) / 255.0 + rng.uniform(-0.03, 0.03, 3).astype(np.float32)
    out = paper.copy()
    region = out[y : y + h, x : x + w]
    region *= 1.0 - cover[..., None] * (1.0 - np.clip(colour, 0, 1))
    return out


# -- light and camera -----------------------------------------------------------------------------------
def lighting(rng: np.random.Generator, size=PHOTO_SIZE) -> np.ndarray:
    """Illumination ``(H, W)`` to multiply with: a desk-lamp spot, a linear gradient, a vignette and,
    in a third of the photos, the soft shadow of the phone or a hand. Brightest about 1, darkest ~0.45."""
    width, height = size
    # Light varies slowly: computed on a grid 8x coarser and enlarged (smooth, and 64x less work).
    ys, xs = np.mgrid[0 : height // 8, 0 : width // 8].astype(np.float32)
    ys, xs = ys / (height // 8), xs / (width // 8)
    angle = rng.uniform(0, 2 * np.pi)
    gradient = 1.0 - rng.uniform(0.1, 0.35) * ((np.cos(angle) * xs + np.sin(angle) * ys) - 0.5)
    cx, cy, spread = rng.uniform(-0.2, 1.2), rng.uniform(-0.2, 1.2), rng.uniform(0.25, 0.6)
    lamp = 1.0 + rng.uniform(0.15, 0.5) * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * spread**2))
    vignette = 1.0 - rng.uniform(0.1, 0.3) * ((xs - 0.5) ** 2 + (ys - 0.5) ** 2) * 2
    light = gradient * lamp * vignette
    if rng.random() < 0.33:
        side = rng.uniform(0, 2 * np.pi)
        distance = np.cos(side) * (xs - 0.5) + np.sin(side) * (ys - 0.5) - rng.uniform(0.25, 0.45)
        light *= 1.0 - rng.uniform(0.2, 0.4) / (1.0 + np.exp(-distance / rng.uniform(0.02, 0.06)))
    return smooth_upscale(light / light.max() * rng.uniform(0.9, 1.02), size)


def perspective_coefficients(targets, sources) -> list[float]:
    """The 8 coefficients PIL's PERSPECTIVE transform wants: output point -> input point, from 4 pairs."""
    matrix, vector = [], []
    for (x, y), (u, v) in zip(targets, sources):
        matrix.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        matrix.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        vector.extend([u, v])
    return list(np.linalg.solve(np.array(matrix, np.float64), np.array(vector, np.float64)))


def tilt_sheet(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A slight perspective: each corner of the frame looks at a point up to 3% inside the sheet. In a quarter of the
    photos one side looks past the sheet's edge, so a strip of desk is in the picture."""
    width, height = image.size
    corners = [(0, 0), (width, 0), (width, height), (0, height)]
    # Corners look inwards (the frame sees only paper), except on the side chosen below.
    inwards = np.array([(1, 1), (-1, 1), (-1, -1), (1, -1)])
    jitter = rng.uniform(0, 0.03, (4, 2)) * inwards * (width, height)
    if rng.random() < 0.25:
        side = rng.integers(4)  # 0 top, 1 right, 2 bottom, 3 left: those two corners look outside
        amount = rng.uniform(0.03, 0.08)
        pairs = {0: (0, 1), 1: (1, 2), 2: (2, 3), 3: (3, 0)}[int(side)]
        direction = {0: (0, -1), 1: (1, 0), 2: (0, 1), 3: (-1, 0)}[int(side)]
        for k in pairs:
            jitter[k] += np.array(direction) * amount * (width, height)
    sources = [(x + dx, y + dy) for (x, y), (dx, dy) in zip(corners, jitter)]
    coefficients = perspective_coefficients(corners, sources)
    return image.transform(image.size, Image.Transform.PERSPECTIVE, coefficients,
                           Image.Resampling.BILINEAR, fillcolor=DESK)


def camera(image: Image.Image, rng: np.random.Generator) -> bytes:
    """Blur (focus and shake), sensor noise and JPEG compression: what the phone stores."""
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.6)))
    pixels = np.asarray(image, np.float32) + rng.normal(0, rng.uniform(1.5, 5.0), (image.height, image.width, 1))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=int(rng.integers(60, 93)))
    return buffer.getvalue()


def photograph(marks: list[tuple[np.ndarray, tuple[int, int]]], rng: np.random.Generator, paper: str,
               ink: str) -> bytes:
    """Paper, rulings, the pen coverages ``marks`` (alpha, (x, y)), light, tilt and camera -> JPEG bytes."""
    sheet = print_rulings(paper_texture(rng), rng, paper)
    for alpha, top_left in marks:
        sheet = lay_ink(sheet, alpha, top_left, ink, rng)
    sheet = sheet * lighting(rng)[..., None]
    image = Image.fromarray(np.clip(sheet, 0, 255).astype(np.uint8))
    return camera(tilt_sheet(image, rng), rng)


# -- what is written ------------------------------------------------------------------------------------------
def random_pen(rng: np.random.Generator, height_px: int, ink: str) -> float:
    """Pen width in px for a mark ``height_px`` tall: a ballpoint is 4-9% of a digit's height, pencil 4-7%."""
    top = 0.07 if ink == "pencil" else 0.09
    return max(2.0, rng.uniform(0.04, top) * height_px)


def place(alpha: np.ndarray, rng: np.random.Generator, size=PHOTO_SIZE) -> tuple[int, int]:
    """A random top-left corner keeping the mark 4% away from the sheet's edges (anywhere else)."""
    width, height = size
    h, w = alpha.shape
    margin_x, margin_y = int(0.04 * width), int(0.04 * height)
    x = int(rng.integers(margin_x, max(margin_x + 1, width - margin_x - w)))
    y = int(rng.integers(margin_y, max(margin_y + 1, height - margin_y - h)))
    return x, y


def digit_height(rng: np.random.Generator, size=PHOTO_SIZE) -> int:
    """A digit's height: 10-45% of the photo's short side."""
    return int(rng.uniform(0.10, 0.45) * min(size))


def digit_photo(digit: np.ndarray, seed: int, paper: str = "plain", ink: str | None = None) -> bytes:
    """A photo of one digit (an MNIST-style ``(28, 28)`` uint8, light on dark) written on ``paper``."""
    rng = np.random.default_rng(seed)
    ink = ink or str(rng.choice(list(INKS)))
    height = digit_height(rng)
    alpha = pen_alpha(np.asarray(digit, np.float32) / 255.0, height, random_pen(rng, height, ink))
    return photograph([(alpha, place(alpha, rng))], rng, paper, ink)


def line_mark(rng: np.random.Generator) -> np.ndarray:
    """A straight stroke 50-90 degrees away from vertical. A steeper one is a fair "1": MNIST's own
    training set has "1"s leaning 48 degrees."""
    angle = np.deg2rad(rng.uniform(50, 90) * rng.choice([-1, 1]))
    canvas = Image.new("L", (200, 200), 0)
    dx, dy = 90 * np.sin(angle), 90 * np.cos(angle)
    ImageDraw.Draw(canvas).line([(100 - dx, 100 - dy), (100 + dx, 100 + dy)], fill=255, width=14)
    return np.asarray(canvas, np.float32) / 255.0


def scribble_mark(rng: np.random.Generator) -> np.ndarray:
    """A tangle: a smooth random curve that loops 5-12 times inside a square."""
    turns = int(rng.integers(5, 13))
    t = np.linspace(0, 1, 400)
    xs = sum(rng.uniform(0.1, 0.35) * np.sin(2 * np.pi * (turns * rng.uniform(0.5, 1.5)) * t + rng.uniform(0, 6))
             for _ in range(3))
    ys = sum(rng.uniform(0.1, 0.35) * np.cos(2 * np.pi * (turns * rng.uniform(0.5, 1.5)) * t + rng.uniform(0, 6))
             for _ in range(3))
    xs = (xs - xs.min()) / np.ptp(xs) * 180 + 10
    ys = (ys - ys.min()) / np.ptp(ys) * 180 + 10
    canvas = Image.new("L", (200, 200), 0)
    ImageDraw.Draw(canvas).line(list(zip(xs, ys)), fill=255, width=8, joint="curve")
    return np.asarray(canvas, np.float32) / 255.0


def letter_mark(rng: np.random.Generator) -> np.ndarray:
    """A capital letter that is not digit-like, in Pillow's bundled font, slanted a little."""
    letter = str(rng.choice(list(LETTERS)))
    canvas = Image.new("L", (240, 240), 0)
    ImageDraw.Draw(canvas).text((120, 120), letter, fill=255, anchor="mm", font=ImageFont.load_default(size=170))
    shear = rng.uniform(-0.25, 0.25)
    canvas = canvas.transform(canvas.size, Image.Transform.AFFINE, (1, shear, -shear * 120, 0, 1, 0),
                              Image.Resampling.BILINEAR)
    return np.asarray(canvas, np.float32) / 255.0


def number_mark(digits: np.ndarray) -> np.ndarray:
    """Several MNIST digits ``(n, 28, 28)`` side by side, as one writes a number."""
    strip = np.zeros((28, 22 * len(digits) + 6), np.float32)
    for k, digit in enumerate(digits):
        strip[:, 22 * k : 22 * k + 28] = np.maximum(strip[:, 22 * k : 22 * k + 28], digit / 255.0)
    return strip


def non_digit_photo(kind: str, seed: int, digits: np.ndarray | None = None) -> bytes:
    """A photo (or, for ``"noise"``, a picture) that holds no single digit.

    ``kind`` is one of :data:`NON_DIGIT_KINDS`; ``"several-digits"`` needs ``digits``, ``(n, 28, 28)``
    uint8 MNIST digits to write side by side.
    """
    rng = np.random.default_rng(seed)
    paper = str(rng.choice(PAPERS))
    ink = str(rng.choice(list(INKS)))
    if kind == "noise":  # what a confused client might send: random pixels, sometimes smoothed
        pixels = rng.integers(0, 256, (PHOTO_SIZE[1] // 2, PHOTO_SIZE[0] // 2, 3)).astype(np.float32)
        pixels = ndimage.gaussian_filter(pixels, (rng.uniform(0, 3), rng.uniform(0, 3), 0))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        return buffer.getvalue()
    if kind == "blank":
        return photograph([], rng, paper, ink)
    if kind == "several-digits":
        if digits is None or len(digits) < 2:
            raise ValueError("several-digits needs at least two (28, 28) digits")
        mark = number_mark(np.asarray(digits))
        height = digit_height(rng) // 2 + 40
    else:
        makers = {"line": line_mark, "scribble": scribble_mark, "letter": letter_mark}
        if kind not in makers:
            raise ValueError(f"kind must be one of {NON_DIGIT_KINDS}, received {kind!r}")
        mark = makers[kind](rng)
        height = digit_height(rng)
    pen = random_pen(rng, height, ink)
    longest = kind != "several-digits"  # a number is sized by its digits' height, other marks by their extent
    alpha = pen_alpha(mark, height, pen, longest)
    if alpha.shape[1] > 0.9 * PHOTO_SIZE[0]:  # a long number: written smaller so that it fits the sheet
        alpha = pen_alpha(mark, int(height * 0.85 * PHOTO_SIZE[0] / alpha.shape[1]), pen, longest)
    return photograph([(alpha, place(alpha, rng))], rng, paper, ink)


def digit_photos(images: np.ndarray, labels: np.ndarray, paper: str, count: int, seed: int = 0) -> list[Photo]:
    """``count`` photos of MNIST test digits on ``paper``; digit ``k`` is ``images[k % len(images)]``.

    Photo ``k`` uses seed ``seed * 100_000 + k``: any one photo can be rendered again on its own.
    """
    photos = []
    for k in range(count):
        index = k % len(images)
        photo_seed = seed * 100_000 + k + {"plain": 0, "squared": 30_000, "ruled": 60_000}[paper]
        photos.append(Photo(digit_photo(images[index], photo_seed, paper), int(labels[index]), paper, photo_seed))
    return photos


def non_digit_photos(count_per_kind: int, images: np.ndarray, seed: int = 0) -> list[Photo]:
    """``count_per_kind`` photos of every kind in :data:`NON_DIGIT_KINDS` (numbers of 2-4 MNIST digits)."""
    photos = []
    for kind_index, kind in enumerate(NON_DIGIT_KINDS):
        for k in range(count_per_kind):
            photo_seed = seed * 100_000 + 90_000 + kind_index * 1_000 + k
            rng = np.random.default_rng(photo_seed)
            digits = images[rng.choice(len(images), size=int(rng.integers(2, 5)), replace=False)]
            photos.append(Photo(non_digit_photo(kind, photo_seed, digits), None, kind, photo_seed))
    return photos


@dataclass(frozen=True)
class NumberPhoto:
    """A photo of a number written on paper: JPEG bytes and the digits it shows, as text ("4305")."""

    jpeg: bytes
    number: str
    seed: int


def number_photos(images: np.ndarray, labels: np.ndarray, count: int, seed: int = 0) -> list[NumberPhoto]:
    """``count`` photos of numbers of 2-4 MNIST digits (``images`` ``(n, 28, 28)`` uint8, ``labels``
    ``(n,)``), written side by side on paper of any kind (the "several digits" photos of
    :func:`non_digit_photo`, with the number they show). Photo ``k`` uses seed ``seed * 100_000 + 50_000 + k``."""
    photos = []
    for k in range(count):
        photo_seed = seed * 100_000 + 50_000 + k
        rng = np.random.default_rng(photo_seed)
        chosen = rng.choice(len(images), size=int(rng.integers(2, 5)), replace=False)
        number = "".join(str(int(labels[i])) for i in chosen)
        photos.append(NumberPhoto(non_digit_photo("several-digits", photo_seed, images[chosen]), number, photo_seed))
    return photos
