"""Ink on paper, the first steps of reading any picture: which pixels are ink, and how much.

Shared by the digit pipeline (:mod:`cnnlab.recognition.preprocess`), the photo steps (:mod:`cnnlab.recognition.paper`), the
"is it a digit?" checks (:mod:`cnnlab.recognition.reject`) and the number reader (:mod:`cnnlab.recognition.segment`), so they
all see the same ink. Arrays are float32 ``(H, W)``: ``gray`` in [0, 1] with 1 = white, ``ink`` in [0, 1]
with 1 = ink.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..engine.errors import CnnlabError
from .components import EIGHT_CONNECTED

MIN_CONTRAST = 0.2  # Otsu class means closer than this (on a 0..1 scale): no ink, just noise or paper.
SPECK_FRACTION = 0.02  # components smaller than 2% of the largest one are dust, not strokes


class ImageError(CnnlabError, ValueError):
    """A picture cannot be read: not an image, an unsupported format, or a corrupt file."""


class ImageTooLargeError(ImageError):
    """A picture is too large to decode safely (a decompression bomb or absurd dimensions)."""


class NoDigitError(CnnlabError, ValueError):
    """A picture holds no ink (blank page or pure noise): "no digit found" rather than a guess."""


def _as_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    return (np.clip(array.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def border_pixels(gray: np.ndarray) -> np.ndarray:
    """The outermost rows and columns of ``(H, W)``: on a picture of one digit, mostly background."""
    return np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])


def to_ink(gray: np.ndarray) -> np.ndarray:
    """``(H, W)`` gray (1 = white) -> ink amount (1 = ink), whatever the polarity of the picture.

    MNIST digits are light on dark. A pen on paper is dark on light, a chalkboard or a screenshot of
    MNIST is light on dark: the border tells which. It is mostly background, so a bright border means
    dark ink and the picture is inverted.
    """
    return 1.0 - gray if np.median(border_pixels(gray)) >= 0.5 else gray.copy()


def histogram256(values: np.ndarray) -> np.ndarray:
    """Counts of ``values`` in ``[0, 1]`` quantized to 256 levels (a ``bincount``: no sort, fast)."""
    levels = (np.clip(values, 0.0, 1.0) * 255.0 + 0.5).astype(np.intp)
    return np.bincount(levels.ravel(), minlength=256)


def histogram_quantile(hist: np.ndarray, q: float) -> float:
    """The ``q``-quantile (0..1) of the values a 256-level histogram counts."""
    cumulative = np.cumsum(hist)
    return float(np.searchsorted(cumulative, q * cumulative[-1])) / 255.0


def otsu_threshold(hist: np.ndarray) -> tuple[float, float]:
    """Otsu's threshold for a 256-level histogram, and the gap between the two class means.

    Otsu picks the level that best splits a histogram into two groups (maximum between-class variance):
    here paper and ink. Values above the threshold are ink. The gap says how different the groups are;
    on a blank or pure-noise picture it is small, which is how "no digit" is told from a faint digit.
    """
    levels = np.arange(hist.size) / (hist.size - 1)
    weight0 = np.cumsum(hist).astype(np.float64)
    weight1 = weight0[-1] - weight0
    sum0 = np.cumsum(hist * levels)
    mean0 = sum0 / np.maximum(weight0, 1)
    mean1 = (sum0[-1] - sum0) / np.maximum(weight1, 1)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    k = int(np.argmax(between))
    return float(levels[k]), float(mean1[k] - mean0[k])


def ink_mask(ink: np.ndarray) -> np.ndarray:
    """Boolean ``(H, W)``: where the ink is, without background noise or specks of dust.

    Raises :class:`NoDigitError` when paper and "ink" are not distinguishable.
    """
    if float(ink.max() - ink.min()) < MIN_CONTRAST:
        raise NoDigitError("no digit found: the picture is blank (no contrast between ink and background)")
    threshold, gap = otsu_threshold(histogram256(ink))
    if gap < MIN_CONTRAST:
        raise NoDigitError(f"no digit found: ink and background differ by only {gap:.2f} (need {MIN_CONTRAST})")
    mask = ink > threshold
    return drop_specks(mask)


def drop_specks(mask: np.ndarray, fraction: float = SPECK_FRACTION) -> np.ndarray:
    """Remove connected components smaller than ``fraction`` of the largest one (dust, JPEG noise)."""
    labels, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
    if count == 0:
        raise NoDigitError("no digit found: no ink in the picture")
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = sizes >= max(2, fraction * sizes.max())
    keep[0] = False
    if not keep.any():  # only single-pixel dots: noise, not a digit
        raise NoDigitError("no digit found: only isolated specks in the picture")
    return keep[labels]


def clean_ink(ink: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Ink amount with the background at exactly 0 and the strokes stretched to reach 1.

    The paper level (median of the non-ink pixels) is subtracted, so grey paper becomes black, and the
    strokes are scaled so their bright core reaches 1 (a faint pencil becomes as strong as MNIST's ink).
    Outside the ink mask (grown by one pixel to keep the anti-aliased edges) everything is zeroed.
    """
    if mask is None:
        mask = ink_mask(ink)
    # One bincount gives both histograms: levels 0..255 are paper pixels, 256..511 ink pixels.
    levels = (np.clip(ink, 0.0, 1.0) * 255.0 + 0.5).astype(np.intp) + 256 * mask
    both = np.bincount(levels.ravel(), minlength=512)
    paper = histogram_quantile(both[:256], 0.5) if both[:256].any() else 0.0
    core = histogram_quantile(both[256:], 0.9)
    stretched = np.clip((ink - paper) / max(core - paper, 1e-6), 0.0, 1.0)
    return (stretched * grow_by_one(mask)).astype(np.float32)


def grow_by_one(mask: np.ndarray) -> np.ndarray:
    """Dilate a boolean ``(H, W)`` mask by one pixel in all 8 directions (two shifted ORs per axis)."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    rows = grown.copy()
    grown[:, 1:] |= rows[:, :-1]
    grown[:, :-1] |= rows[:, 1:]
    return grown
