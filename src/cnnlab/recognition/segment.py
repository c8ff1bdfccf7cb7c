"""A written number -> one MNIST-like picture per digit, left to right.

The network reads one digit at a time, so a number ("504192") must first be cut into digits:

1. **ink**: the same steps as :mod:`cnnlab.recognition.preprocess` (polarity, Otsu threshold, specks dropped);
   a photo or scan of paper first goes through the photo steps of :mod:`cnnlab.recognition.paper`
   (light flattened, rulings removed, the marks along the line of writing kept);
2. **connected components** (``scipy.ndimage.label``, 8-connected): usually one per digit;
3. **merge broken strokes**: a "5" whose top bar did not touch its body is two components stacked in
   the same columns; components that overlap strongly along x are one digit;
   A piece much shorter than the others (the detached bar of a "5", the dot of a pen lifted off) is
   joined to its nearest neighbour along x;
4. **split touching digits**: a group much wider than it is tall is two (or more) digits written
   together; it is cut at the column where the ink is thinnest, within its middle part, again and
   again until every piece has the proportions of a digit;
5. **order** left to right, and prepare each piece exactly like a single digit (crop, 20x20, centre of
   mass in 28x28).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .components import EIGHT_CONNECTED
from .ink import NoDigitError, clean_ink, grow_by_one, ink_mask, to_ink
from .paper import BLANK_SHEET, find_mark, needs_photo_steps, working_copy
from .pieces import FRAGMENT_HEIGHT, MERGE_OVERLAP, Piece, _join, attach_fragments, merge_broken_strokes  # noqa: F401
from .preprocess import as_batch, as_picture, digit_from_ink, to_gray

MAX_ASPECT = 1.25  # a piece wider than 1.25x its height is taken for touching digits
SPLIT_ZONE = (0.25, 0.75)  # where a cut may fall, as fractions of the piece's width


@dataclass
class DigitCrop:
    """One segmented digit: the ``(28, 28)`` picture the network sees and where it was found."""

    image: np.ndarray
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) in the input picture, x1/y1 exclusive


@dataclass
class DigitReading:
    label: int
    confidence: float
    box: tuple[int, int, int, int]
    probabilities: np.ndarray = field(repr=False)
    image: np.ndarray = field(repr=False)


@dataclass
class NumberReading:
    """What :func:`read_number` found: the digits as text and, per digit, label, confidence and box."""

    text: str
    digits: list[DigitReading]

    @property
    def confidence(self) -> float:
        """Probability that every digit is right, if the per-digit answers were independent."""
        return float(np.prod([d.confidence for d in self.digits])) if self.digits else 0.0


def _piece_mask(labels: np.ndarray, piece: Piece) -> np.ndarray:
    """Boolean mask, over the piece's columns, of the pixels that belong to the piece's components."""
    return np.isin(labels[:, piece.x0 : piece.x1], piece.labels)


def _fit_rows(labels: np.ndarray, piece: Piece) -> Piece | None:
    """Shrink a piece to the rows and columns its ink occupies (``None`` if it holds no ink)."""
    mask = _piece_mask(labels, piece)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return Piece(piece.labels, piece.x0 + int(cols[0]), piece.x0 + int(cols[-1]) + 1, int(rows[0]), int(rows[-1]) + 1)


def find_components(labels: np.ndarray, count: int) -> list[Piece]:
    """One piece per connected component, with its bounding box."""
    pieces = []
    for index, slices in enumerate(ndimage.find_objects(labels, max_label=count), start=1):
        if slices is not None:
            rows, cols = slices
            pieces.append(Piece([index], cols.start, cols.stop, rows.start, rows.stop))
    return pieces


def thinnest_column(mask: np.ndarray, zone: tuple[float, float] = SPLIT_ZONE) -> int:
    """Column index, within the middle ``zone`` of ``mask``'s width, where the ink is thinnest.

    Two touching digits are joined by a short bridge of ink; the column crossing it has less ink than
    columns crossing either digit. Ties go to the column nearest the middle.
    """
    width = mask.shape[1]
    lo, hi = int(zone[0] * width), max(int(zone[1] * width), int(zone[0] * width) + 1)
    ink = mask[:, lo:hi].sum(axis=0).astype(np.float64)
    distance_from_middle = np.abs(np.arange(lo, hi) - width / 2) / width
    return lo + int(np.argmin(ink + 1e-3 * distance_from_middle))


def split_touching(labels: np.ndarray, piece: Piece, reference_height: float, max_aspect: float = MAX_ASPECT) -> list[Piece]:
    """Cut a piece too wide for one digit at its thinnest column, recursively."""
    height = max(piece.height, reference_height)
    if piece.width <= max_aspect * height or piece.width < 4:
        return [piece]
    cut = piece.x0 + thinnest_column(_piece_mask(labels, piece)[piece.y0 : piece.y1])
    parts = []
    for x0, x1 in ((piece.x0, cut), (cut, piece.x1)):
        part = _fit_rows(labels, Piece(piece.labels, x0, x1))
        if part is not None:
            parts.extend(split_touching(labels, part, reference_height, max_aspect))
    return parts


def segment_number(image, thin_fat_strokes: bool = True) -> list[DigitCrop]:
    """A picture of a written number -> its digits, left to right, each as an MNIST-like ``(28, 28)``
    (``thin_fat_strokes``: see :func:`cnnlab.recognition.preprocess.thins_strokes`).

    Raises :class:`~cnnlab.recognition.preprocess.NoDigitError` on a blank picture.
    """
    ink, mask, scale = number_ink(image)
    labels, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
    pieces = attach_fragments(merge_broken_strokes(find_components(labels, count)))
    reference_height = float(np.median([p.height for p in pieces]))
    pieces = [part for piece in pieces for part in split_touching(labels, piece, reference_height)]
    pieces.sort(key=lambda p: (p.x0 + p.x1) / 2)

    digits = []
    for piece in pieces:
        own = np.zeros_like(mask)
        own[:, piece.x0 : piece.x1] = _piece_mask(labels, piece)
        # Grown by a pixel so the anti-aliased edge of each stroke comes along, as in clean_ink.
        region = ink * grow_by_one(own)
        region[:, : piece.x0] = 0
        region[:, piece.x1 :] = 0
        box = tuple(round(v * scale) for v in (piece.x0, piece.y0, piece.x1, piece.y1))
        digits.append(DigitCrop(digit_from_ink(region, thin_fat_strokes=thin_fat_strokes), box))
    return digits


def number_ink(image) -> tuple[np.ndarray, np.ndarray, float]:
    """(clean ink ``(h, w)``, its mask, how many input pixels one of its pixels is) for a number.

    A photo or scan of paper goes through :func:`cnnlab.recognition.paper.find_mark` (the threshold
    of step 1 would see the lighting and the grid, not the pen), which works at a reduced size; a
    drawing or a small picture keeps the simple path at its own size.
    """
    picture = as_picture(image)
    if needs_photo_steps(working_copy(picture).convert("L")):
        sheet = find_mark(picture, single=False)
        if not sheet.chosen:
            raise NoDigitError(BLANK_SHEET)
        return clean_ink(sheet.ink, sheet.mask), sheet.mask, picture.width / sheet.ink.shape[1]
    ink = to_ink(to_gray(image))
    mask = ink_mask(ink)  # specks already dropped
    return clean_ink(ink, mask), mask, 1.0


def read_number(model, image, thin_fat_strokes: bool = True) -> NumberReading:
    """Segment ``image`` and classify every digit with ``model.predict_proba`` (one batch)."""
    crops = segment_number(image, thin_fat_strokes)
    probabilities = np.asarray(model.predict_proba(as_batch([c.image for c in crops])))
    readings = [
        DigitReading(int(p.argmax()), float(p.max()), crop.box, p, crop.image)
        for crop, p in zip(crops, probabilities)
    ]
    return NumberReading("".join(str(r.label) for r in readings), readings)
