"""Synthetic canvas drawings of digits: what the drawing page (and ``cnnlab predict drawing.png``) receives.

A drawing is an MNIST *test* digit redrawn the way a person draws on a canvas::

    slant        a small rotation (±10°) and shear (±0.3, the writer's slant) of the 28x28 digit
    pen          its strokes redrawn at one pen width, 6-28 px (a finger, a mouse, a stylus), with an
                 anti-aliased edge (:func:`cnnlab.synthetic.photos.pen_alpha`)
    size, place  35-85% of the canvas tall, anywhere on it
    polarity     white on black (the drawing page) or black on white (a paint program), half each

on a 280 x 280 canvas saved as PNG. Everything is drawn from one ``numpy.random.Generator`` seeded per
drawing, so drawing ``k`` can be rendered again on its own and a measured accuracy can be repeated.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from .photos import pen_alpha

CANVAS = 280  # pixels a side, as the drawing page sends


@dataclass(frozen=True)
class Drawing:
    """One rendered canvas: PNG bytes, the digit it shows, and the seed that renders it again."""

    png: bytes
    label: int
    seed: int


def slant(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The digit ``(28, 28)`` in 0..1, rotated by ±10° and sheared by ±0.3 about its centre, on a 44x44
    field (nothing is cut off)."""
    field = np.pad(digit.astype(np.float32), 8)
    angle = np.deg2rad(rng.uniform(-10, 10))
    shear = rng.uniform(-0.3, 0.3)
    rotate = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = rotate @ np.array([[1.0, 0.0], [shear, 1.0]])  # (row, col): col shifts with the row
    centre = (np.array(field.shape) - 1) / 2
    # affine_transform maps each output pixel to the input pixel it reads: input = M @ output + offset
    moved = ndimage.affine_transform(field, matrix, offset=centre - matrix @ centre, order=3)
    return np.clip(moved, 0.0, 1.0)  # cubic interpolation overshoots a little at the edges


def digit_drawing(digit: np.ndarray, seed: int) -> bytes:
    """PNG bytes of a 280x280 canvas on which ``digit`` (uint8 ``(28, 28)``, MNIST style) is drawn."""
    rng = np.random.default_rng(seed)
    mark = slant(np.squeeze(digit) / 255.0, rng)  # (28, 28), also from (1, 28, 28)
    height = int(rng.uniform(0.35, 0.85) * CANVAS)
    pen = min(rng.uniform(6, 28), 0.2 * height)
    alpha = pen_alpha(mark, height, pen)
    while max(alpha.shape) > CANVAS:  # a wide, slanted digit: draw it a little smaller
        height = int(height * 0.9)
        alpha = pen_alpha(mark, height, min(pen, 0.2 * height))
    canvas = np.zeros((CANVAS, CANVAS), np.float32)
    top = int(rng.integers(0, CANVAS - alpha.shape[0] + 1))
    left = int(rng.integers(0, CANVAS - alpha.shape[1] + 1))
    canvas[top:top + alpha.shape[0], left:left + alpha.shape[1]] = alpha
    if rng.random() < 0.5:
        canvas = 1.0 - canvas  # black ink on a white canvas
    buffer = io.BytesIO()
    Image.fromarray(np.round(canvas * 255).astype(np.uint8), "L").save(buffer, "PNG")
    return buffer.getvalue()


def digit_drawings(images: np.ndarray, labels: np.ndarray, count: int, seed: int = 0) -> list[Drawing]:
    """``count`` drawings of MNIST test digits; drawing ``k`` shows ``images[k % len(images)]`` and uses
    seed ``seed * 100_000 + 50_000 + k``."""
    drawings = []
    for k in range(count):
        index, drawing_seed = k % len(images), seed * 100_000 + 50_000 + k
        drawings.append(Drawing(digit_drawing(images[index], drawing_seed), int(labels[index]), drawing_seed))
    return drawings
