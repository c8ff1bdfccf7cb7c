"""Is it a digit at all? "Not a digit" instead of a confident guess.

A network trained on MNIST answers one of ten digits for *any* input: random noise, a slanted line or
a scribble get a digit, often at high confidence. Two kinds of evidence stop that:

1. **the mark's shape**, measured before the network runs (:func:`check_mark`, on the mask that
   :mod:`cnnlab.recognition.paper` chose): ink all over the picture (noise); one straight stroke far from vertical
   (a line: a vertical one is a fair "1"); more closed loops than any digit has (a scribble; an "8" has
   two); several marks side by side, each as tall as a digit (a number, in single-digit mode);
2. **the model's own evidence** (:func:`cnnlab.recognition.calibration.judge`): the temperature-scaled top probability below a
   threshold chosen on held-out MNIST digits (``scripts/calibrate_recognition.py``), so that only a
   stated small share of real digits is turned away (0.3% of the validation split for the bundled model).

Both raise or return the same kind of answer: ``prediction: null`` with a one-line ``message`` that says
what was seen and what was expected.
"""

from __future__ import annotations


import numpy as np
from scipy import ndimage

from .components import Components
from .pieces import Piece, attach_fragments, merge_broken_strokes
from .ink import NoDigitError

NOISE_COVERAGE = 0.5  # ink over half of the picture: noise or a texture, not a written mark; or ...
NOISE_PIECES = 12  # ... more than 12 pieces of ink at least RIVAL_FRACTION as big as the biggest
RIVAL_FRACTION = 0.2
LINE_ELONGATION = 0.13  # thickness / length below this: a straight stroke ...
LINE_MIN_TILT = 50.0  # ... at least this many degrees from vertical (MNIST has "1"s leaning 48 degrees)
MAX_LOOPS = 3  # closed loops bigger than a pinhole: an "8" has 2, a sloppy "8" 3
MIN_LOOP_FRACTION = 0.004  # a loop smaller than this share of the mark's box is a pinhole in the ink
SEVERAL_HEIGHT = 0.55  # a second group at least this tall (relative) beside the first: several digits
WIDE_MARK = 2.0  # one mark wider than 2x its height: touching digits (5 of MNIST's 60,000 training digits are)
#: The class name of a model's "not a digit" answer (``cnnlab train --non-digits``).
NOT_A_DIGIT = "not a digit"


class NotADigitError(NoDigitError):
    """The picture holds a mark, but not one digit (noise, a line, a scribble, several digits, ...)."""


# -- 1. the shape of the mark ---------------------------------------------------------------------------------
def elongation_and_tilt(mask: np.ndarray) -> tuple[float, float]:
    """(thickness / length, degrees between the long axis and vertical) of the mask's pixels.

    The principal axes of the pixel coordinates: for a stroke of length L and width w the variances are
    L^2/12 and w^2/12, so the square root of their ratio is w/L.
    """
    ys, xs = np.nonzero(mask)
    if ys.size < 3:
        return 1.0, 0.0
    cov = np.cov(np.stack([ys, xs]).astype(np.float64))
    values, vectors = np.linalg.eigh(cov)
    elongation = float(np.sqrt(max(values[0], 0.0) / max(values[1], 1e-9)))
    dy, dx = vectors[:, 1]
    tilt = float(np.degrees(np.arctan2(abs(dx), abs(dy))))
    return elongation, tilt


def count_loops(mask: np.ndarray) -> int:
    """Closed loops of ink (holes in the mask) bigger than a pinhole (:data:`MIN_LOOP_FRACTION`)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = np.pad(mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], 1)
    # The background around the mark is one 4-connected piece touching the padded border; every other
    # background piece is enclosed by ink: a loop (cheaper than binary_fill_holes' iterations).
    labels, count = ndimage.label(~box)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = sizes[labels[0, 0]] = 0
    return int((sizes >= max(3, MIN_LOOP_FRACTION * box.size)).sum())


def digit_groups(pieces: Components, chosen: list[int]) -> list:
    """The chosen components grouped the way :mod:`cnnlab.recognition.segment` groups a number's digits."""
    groups = []
    for k in chosen:
        top, left, bottom, right = (int(v) for v in pieces.boxes[k - 1])
        groups.append(Piece([k], left, right, top, bottom))
    return attach_fragments(merge_broken_strokes(groups))


def check_mark(mask: np.ndarray, pieces: Components, chosen: list[int], single: bool = True,
               frame_pixels: float | None = None) -> None:
    """Raise :class:`NotADigitError` when the chosen mark is not shaped like one digit.

    ``mask`` (h, w) is the chosen mark, ``pieces`` the components of the whole picture's ink and ``chosen``
    the labels that make up the mark. With ``single=False`` (number mode) several digits are fine.
    ``frame_pixels``: the whole picture's area at this scale, when ``pieces`` covers only a cut of it
    (default: the labels' size).
    """
    sizes = pieces.sizes
    mine = np.asarray(chosen) - 1
    # Noise makes many pieces as big as the "mark" it picked; a grid's leftover crossings are specks.
    mark_size = int(sizes[mine].sum())
    rivals = int((sizes >= RIVAL_FRACTION * sizes[mine].max()).sum())
    coverage = float(sizes.sum()) / (frame_pixels or pieces.labels.size)
    if coverage > NOISE_COVERAGE or rivals > NOISE_PIECES:
        raise NotADigitError(f"not a digit: {rivals} pieces of ink as big as the largest cover {coverage:.0%} of "
                             "the picture, which looks like noise or a texture; expected one written digit on a "
                             "plain background")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    mark = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # the shape measures need only the mark's box
    height, width = mark.shape
    elongation, tilt = elongation_and_tilt(mark)
    if single:
        groups = digit_groups(pieces, chosen)
        tallest = max(g.height for g in groups)
        tall = [g for g in groups if g.height >= SEVERAL_HEIGHT * tallest]
        # Elsewhere on the sheet: another mark about as big (a second digit written further away).
        others = np.ones(pieces.count, bool)
        others[mine] = False
        elsewhere = int((others & ~pieces.touching_frame() & (sizes >= RIVAL_FRACTION * mark_size)
                         & (pieces.heights() >= SEVERAL_HEIGHT * height)).sum())
        wide = width > WIDE_MARK * height and elongation > LINE_ELONGATION
        if len(tall) > 1 or elsewhere or wide:
            count = f"{len(tall) + elsewhere} marks" if not wide else "a mark as wide as several digits"
            raise NotADigitError(f"not a digit: {count} side by side; expected one digit (read a whole "
                                 "number with --number, or number mode on the page)")
    if elongation < LINE_ELONGATION and tilt > LINE_MIN_TILT:
        raise NotADigitError(f"not a digit: a straight line {tilt:.0f} degrees from vertical; expected a digit "
                             f"(a '1' leans at most {LINE_MIN_TILT:.0f} degrees)")
    loops = count_loops(mark)
    if loops > MAX_LOOPS:
        raise NotADigitError(f"not a digit: a scribble with {loops} closed loops; expected a digit (an '8' "
                             f"has 2)")


# -- 2. the model's own evidence ---------------------------------------------------------------------------------
