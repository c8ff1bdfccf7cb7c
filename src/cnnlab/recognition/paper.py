"""A photo or scan of a sheet of paper -> the ink of the one mark written on it.

A phone photo of an exercise book is not a drawing on a clean canvas: the light falls off across the
sheet, a desk lamp makes a bright spot, the paper has printed squares or rulings, and the digit may be
small and anywhere. A single global threshold sees the lighting and the grid, not the pen. These steps
come first (each one is a no-op on a clean drawing), and :func:`cnnlab.recognition.preprocess.prepare_digit` goes
on from their result exactly as before::

    working_copy          RGB picture, long side at most WORK_SIDE (big photos shrunk first)
    paper_brightness      per pixel, the brightest colour channel: a light-blue or red printed line is
                          nearly white in it, while pen and pencil are dark in every channel
    flatten_illumination  the paper's own brightness, estimated by a morphological closing larger than
                          any stroke, is divided out: paper becomes 1 everywhere, whatever the light
                          (dark_ink tells light-on-dark pictures apart; they are inverted here)
    mark_components       ink = a threshold relative to the paper's noise, raised step by step while a
                          faint grid or shading touching the frame still passes it; then
      remove_rulings      long thin straight horizontal/vertical lines spanning most of the frame
                          (rulings and grids in any colour: the line structure, long_lines) are removed
                          where they are thin, and the strokes that crossed them are closed again;
                          then 8-connected components
    choose_mark           the written mark: the component with the most ink, not touching the frame
                          (the sheet's edge, the desk, a shadow), with the strokes near it (a "5" whose
                          bar came loose), specks dropped
    core                  haze around the strokes (under CORE_FRACTION of the mark's peak) dropped

The result, :class:`Sheet`, has the ink ``(h, w)`` with the background at 0 and the chosen mask, plus
the intermediate pictures for ``cnnlab predict --show``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageChops
from scipy import ndimage

from .components import Components
from .ink import grow_by_one, ink_mask, to_ink

WORK_SIDE = 512  # photos are processed with their long side at most this (a digit 10% of the short side is ~38 px)
SMALL_PICTURE = 64  # up to this size a picture is a crop or a drawing: no illumination to flatten
CLEAN_FRACTION = 0.5  # half the pixels of exactly one value: a digital drawing, not a photo
CLEAN_SIDE = 96  # a clean drawing is cut to its ink and shrunk to this long side (the digit ends up 20 px)
CLEAN_TOLERANCE = 32  # on 0..255: pixels this far from the background's value are ink (or its soft edge)
CLOSING_FRACTION = 1 / 6  # the paper's brightness is estimated over windows this fraction of the short side
NOISE_SIGMAS = 6.0  # ink must stand this many noise deviations above the paper ...
MIN_INK_STEP = 0.10  # ... and at least this much (on 0..1) to count as ink at all
NOISE_LEVELS = 1 << 16  # histogram levels on 0..1 for the paper's noise (noise_level)
THRESHOLD_STEP = 0.05  # how much the threshold rises when it let a grid or shading through
CORE_FRACTION = 0.3  # ink weaker than this fraction of the mark's peak is haze, not stroke
SPECK_FRACTION = 0.02  # components with less than 2% of the main mark's ink are dust
NEAR_FRACTION = 0.35  # strokes within this fraction of the mark's size around it belong to it
NUMBER_GAP_FRACTION = 1.0  # a number's digits: each within this fraction of the first one's height of the next
LIGHT_INK_EVIDENCE = 3.0  # light strokes must stand out 3x more than dark ones to be taken for the ink
POLARITY_STEP = 0.1  # departures from the local background smaller than this are paper texture or noise
MAX_COVERAGE = 0.05  # ink touching the frame over 5% of the picture (after rulings): the grid or shading got in
RULING_FRACTION = 0.7  # a printed line spans at least this fraction of the frame (a digit's bar: far less)
MAX_LINE_THICKNESS = 5.0  # ... and is at most this thick on the 2x-pooled copy, 3 px dilation included
LINE_RUN_FRACTION = 0.1  # ... and is made of straight runs this fraction of the frame long (tilt up to ~10 degrees)


#: What the caller says when :func:`find_mark` chose no mark.
BLANK_SHEET = "no digit found: the picture is blank (no ink darker than the paper around it)"


@dataclass
class Sheet:
    """What was found on the sheet: ``ink`` (h, w) in 0..1 (0 = paper), ``mask`` (h, w) of the chosen
    mark, ``pieces`` (all the ink's components, :class:`~cnnlab.recognition.components.Components`) and the
    ``chosen`` ones' labels, and the pictures of
    the steps (``stages``: name -> PIL picture or (h, w) array in 0..1). ``frame_pixels`` is the area of
    the whole picture at the scale of ``ink`` (more than ``ink.size`` when a clean drawing was cut to its
    ink: how much of the *picture* the ink covers is what tells noise from a digit)."""

    ink: np.ndarray
    mask: np.ndarray
    pieces: Components
    chosen: list[int]
    stages: dict = field(default_factory=dict)
    frame_pixels: float | None = None


def working_copy(picture: Image.Image) -> Image.Image:
    """A PIL picture -> RGB, shrunk by area averaging so that the long side is at most
    :data:`WORK_SIDE` (averaging keeps a thin stroke as a fainter line instead of dropping it)."""
    picture = picture.convert("RGB")
    longest = max(picture.size)
    if longest > WORK_SIDE:
        scale = WORK_SIDE / longest
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.BOX)
    return picture


def paper_brightness(rgb: Image.Image) -> np.ndarray:
    """RGB picture -> ``(h, w)`` float32 in 0..1: the brightest channel of each pixel (HSV's value).

    Printed rulings are light tints (light blue, pink, red): one of their channels stays near the paper's
    white, so they almost vanish here. Pen and pencil absorb in every channel and stay dark.
    """
    red, green, blue = rgb.split()
    brightest = ImageChops.lighter(ImageChops.lighter(red, green), blue)  # uint8, much faster than numpy
    return np.asarray(brightest, dtype=np.float32) / 255.0


def border_median(values: np.ndarray) -> float:
    """Median of the outermost rows and columns: on a picture of one mark, the background's level."""
    return float(np.median(np.concatenate([values[0], values[-1], values[:, 0], values[:, -1]])))


def shrink(values: np.ndarray, factor: int) -> np.ndarray:
    """``(h, w)`` float32 -> about ``(h / factor, w / factor)`` by block averaging (Pillow's reduce)."""
    return np.asarray(Image.fromarray(values).reduce(factor), dtype=np.float32)


def background(brightness: np.ndarray, dark_strokes: bool) -> np.ndarray:
    """The background's brightness under the strokes, ``(h, w)``, for dark or for light strokes.

    A grey closing (maximum then minimum filter) over windows larger than any stroke fills in the dark
    strokes and keeps the slowly varying paper (it follows a lighting gradient exactly); an opening does
    the same for light strokes. The paper varies slowly, so this is done on a 4x smaller copy (16x less
    work) and enlarged again.
    """
    height, width = brightness.shape
    if max(height, width) <= SMALL_PICTURE:  # a crop or a digital drawing: uniform background
        return np.full_like(brightness, border_median(brightness))
    small = shrink(brightness, 4)
    size = max(3, int(min(small.shape) * CLOSING_FRACTION) | 1)
    morphology = ndimage.grey_closing if dark_strokes else ndimage.grey_opening
    smooth = ndimage.uniform_filter(morphology(small, size=(size, size)), size=size // 2 | 1)  # no blocky steps
    return np.asarray(Image.fromarray(smooth).resize((width, height), Image.Resampling.BILINEAR))


def dark_ink(brightness: np.ndarray) -> bool:
    """Is the ink darker than the background (a pen on paper) rather than lighter (MNIST, a white-on-black
    canvas, a chalkboard)?

    Small pictures are judged by their border, which is mostly background. On a photo the border may lie
    in a shadow or on the desk, so each pixel is compared with the mean brightness around it instead (a
    box over :data:`CLOSING_FRACTION` of the short side, on a 2x smaller copy): ink is the minority,
    so the mean stays near the paper and the strokes depart from it the way the ink goes; the ink is the
    side with the larger strong departures (paper texture and noise, under :data:`POLARITY_STEP`, do not
    count), with :data:`LIGHT_INK_EVIDENCE` in favour of dark ink.

    Why a mean and not the closing and opening that :func:`background` uses: the opening of a row of dark
    digits is dark over the whole row, so the paper around a written number stood out as "light ink"
    from it (9 photos of 100 numbers read inverted, 2 of 450 single digits).
    """
    if max(brightness.shape) <= SMALL_PICTURE:
        return border_median(brightness) >= 0.5
    small = shrink(brightness, 2)
    local = ndimage.uniform_filter(small, size=max(3, int(min(small.shape) * CLOSING_FRACTION) | 1))
    departure = small - local
    darker = float(np.clip(-departure - POLARITY_STEP, 0, None).sum())
    lighter = float(np.clip(departure - POLARITY_STEP, 0, None).sum())
    if darker == lighter:  # nothing stands out (blank): fall back to the border
        return border_median(brightness) >= 0.5
    # Pen on paper is by far the common case, and the desk or a shadow's edge adds departures both ways:
    # light ink needs clear evidence (a white-on-black canvas has no dark departures at all).
    return lighter <= LIGHT_INK_EVIDENCE * darker


def flatten_illumination(brightness: np.ndarray) -> np.ndarray:
    """``(h, w)`` brightness (1 = white) -> ink ``(h, w)`` in 0..1 with the paper at 0 everywhere.

    Dark ink: the brightness is divided by the paper's (a pen stroke is as dark in the lamp's shadow as
    in its light once the light is divided out). Light ink: the picture is inverted first, so its dark
    background plays the paper.
    """
    if dark_ink(brightness):
        flat = brightness / np.maximum(background(brightness, True), 0.05)
    else:
        flat = (1.0 - brightness) / np.maximum(1.0 - background(brightness, False), 0.05)
    return 1.0 - np.clip(flat, 0.0, 1.0)


def opening_1d(mask: np.ndarray, length: int, axis: int) -> np.ndarray:
    """Binary opening of ``mask`` with a straight line ``length`` px long along ``axis``: the runs of at
    least ``length`` pixels. Minimum then maximum filters along one axis cost O(pixels) at any length."""
    as_bytes = mask.view(np.uint8)
    eroded = ndimage.minimum_filter1d(as_bytes, length, axis=axis)
    return ndimage.maximum_filter1d(eroded, length, axis=axis).astype(bool)


def long_lines(mask: np.ndarray, axis: int) -> np.ndarray:
    """The pixels of ``mask`` on straight lines along ``axis`` (1: horizontal) that span at least
    :data:`RULING_FRACTION` of the frame: the rulings and grid lines, not a digit's bar.

    Searched on a copy pooled 2x2 (any ink in the block; 4x less work) and dilated by 3 pixels across
    the lines (and along them, to bridge the gaps of a faint line), so a line the camera tilted still holds straight runs :data:`LINE_RUN_FRACTION` of the
    frame long (an opening with a line element keeps exactly those runs); the runs of one line overlap
    and label as one piece, whose extent is measured.
    """
    height, width = mask.shape
    pooled = np.asarray(Image.fromarray(mask.view(np.uint8) * 255).reduce(2)) > 0
    across = 1 - axis
    band = ndimage.maximum_filter1d(pooled.view(np.uint8), 3, axis=across)
    band = ndimage.maximum_filter1d(band, 3, axis=axis).astype(bool)  # bridge the gaps of a faint line
    runs = opening_1d(band, max(5, int(LINE_RUN_FRACTION * pooled.shape[axis])), axis)
    pieces = Components.of(runs)
    if pieces.count == 0:
        return np.zeros_like(mask)
    extent = pieces.boxes[:, 2 + axis] - pieces.boxes[:, axis]  # along the line: width (1) or height (0)
    thickness = pieces.sizes / extent  # a printed line: its own width + the 2 px dilation
    spanning = (extent >= RULING_FRACTION * pooled.shape[axis]) & (thickness <= MAX_LINE_THICKNESS)
    lines = pieces.mask_of(np.flatnonzero(spanning) + 1).repeat(2, axis=0).repeat(2, axis=1)[:height, :width]
    return np.pad(lines, ((0, height - lines.shape[0]), (0, width - lines.shape[1]))) & mask


def remove_rulings(mask: np.ndarray) -> np.ndarray:
    """Remove printed rulings and grids from ``mask`` without eating the strokes that cross them.

    Lines are found by :func:`long_lines` (straight, and spanning most of the frame, which no written
    digit does). They are removed only where the mask is thin across them: a stroke crossing the line
    is 6 or more pixels tall there and stays; a closing across the line then joins the halves of a
    thin stroke it cut.
    """
    height, width = mask.shape
    if min(height, width) <= SMALL_PICTURE or not mask.any():
        return mask
    # 1: horizontal lines, 0: vertical ones. A line spanning most of the frame needs ink in that many
    # columns (rows): a picture without is skipped at the cost of one reduction (a canvas drawing).
    lines = {axis: long_lines(mask, axis) if mask.any(axis=1 - axis).mean() >= RULING_FRACTION
             else np.zeros_like(mask) for axis in (1, 0)}
    removed = np.zeros_like(mask)
    for axis, line in lines.items():
        if line.any():
            # 6+ pixels across the line (not counting the crossing grid line): a stroke lies there.
            thick = opening_1d(mask & ~lines[1 - axis], 6, 1 - axis)
            removed |= line & ~thick
    if not removed.any():
        return mask
    cleaned = mask & ~removed
    healed = np.zeros_like(mask)
    for axis in (0, 1):  # closing = not(opening(not)): fills gaps of up to 4 px across a removed line
        healed |= ~opening_1d(~cleaned, 5, axis)
    return cleaned | (healed & removed)


def noise_level(ink: np.ndarray) -> tuple[float, float]:
    """(median, robust standard deviation) of ``ink``: paper dominates, so this is the paper's noise.

    The robust deviation is 1.4826 x the median absolute deviation (the MAD of a normal distribution is
    0.6745 sigma). Both medians are read from histograms (:func:`histogram_median`) instead of sorting:
    on a 500x375 photo in a third of the time np.median takes (0.4 against 1.2 ms).
    """
    sample = ink[::2, ::2] if ink.size > 40_000 else ink
    median = histogram_median(sample)
    return median, 1.4826 * histogram_median(np.abs(sample - median))


def histogram_median(values: np.ndarray) -> float:
    """The median of ``values`` in 0..1 from a histogram of :data:`NOISE_LEVELS` levels, interpolated
    linearly inside the level where half the values are reached (as if the values of a level were spread
    evenly over it): within 2e-5 of ``np.median`` on photos, far below the paper's noise (0.01-0.1)."""
    top = NOISE_LEVELS - 1
    levels = np.minimum((np.clip(values, 0.0, 1.0) * top + 0.5).astype(np.intp), top).ravel()
    counts = np.bincount(levels, minlength=NOISE_LEVELS)
    cumulative = np.cumsum(counts)
    half = cumulative[-1] / 2
    level = int(np.searchsorted(cumulative, half))  # the first level that reaches half of the values
    below = cumulative[level] - counts[level]
    return float((level - 0.5 + (half - below) / counts[level]) / top)  # level k holds [k - 0.5, k + 0.5) / top


def mark_components(ink: np.ndarray) -> tuple[Components, float]:
    """Threshold the ink relative to the paper's noise, drop rulings, label 8-connected components.

    Returns (the components, threshold). The threshold is :data:`NOISE_SIGMAS` robust deviations above
    the paper, and at least :data:`MIN_INK_STEP` (JPEG noise on clean paper would otherwise be ink).
    """
    median, sigma = noise_level(ink)
    threshold = median + max(NOISE_SIGMAS * sigma, MIN_INK_STEP)
    # Where a faint grid or a shadow's edge still passes the threshold, it covers much of the frame and
    # swallows the digit it touches: raise the threshold step by step (a pen is darker than a grid).
    # A solid dark region (the desk, a deep shadow) does not shrink at a higher threshold: then the
    # lower threshold is kept, since the pencil needs it.
    pieces = Components.of(remove_rulings(ink > threshold))
    coverage = frame_coverage(pieces)
    for _ in range(4):
        if coverage <= MAX_COVERAGE:
            break
        higher = threshold + THRESHOLD_STEP
        higher_pieces = Components.of(remove_rulings(ink > higher))
        higher_coverage = frame_coverage(higher_pieces)
        if higher_coverage > 0.7 * coverage:
            break
        threshold, pieces, coverage = higher, higher_pieces, higher_coverage
    return pieces, threshold


def frame_coverage(pieces: Components) -> float:
    """Share of the picture covered by components that touch its frame (a grid, shading, the desk)."""
    return float(pieces.sizes[pieces.touching_frame()].sum()) / pieces.labels.size


def choose_mark(ink: np.ndarray, pieces: Components, single: bool = True) -> list[int]:
    """Label numbers of the components that make up the written mark ([] when there is none).

    The main component is the one with the most ink (a dark pen stroke outweighs a pale shadow);
    components touching the frame (the sheet's edge, the desk, a shadow's border, a line running off the
    page) only count when nothing else is there; the main one's neighbours within :data:`NEAR_FRACTION`
    of its size are kept unless they are specks (under :data:`SPECK_FRACTION` of its ink). With
    ``single=False`` (a number) the mark grows along its line of writing: each digit kept brings in
    its own neighbours, left and right, as long as they lie in the main one's rows.
    """
    if pieces.count == 0:
        return []
    mass = pieces.ink_of(ink)
    inside = ~pieces.touching_frame()
    candidates = inside if inside.any() else np.ones(pieces.count, bool)
    main = int(np.argmax(np.where(candidates, mass, -1.0)))
    top, left, bottom, right = pieces.boxes.T
    height, width = bottom[main] - top[main], right[main] - left[main]
    reach = NEAR_FRACTION * max(height, width)
    # along a line of writing, digits stand up to about their height apart
    across = reach if single else max(reach, NUMBER_GAP_FRACTION * height)
    eligible = (candidates & (mass >= SPECK_FRACTION * mass[main])
                & (top < bottom[main] + reach) & (bottom > top[main] - reach))  # in the main one's rows
    start, stop = left[main], right[main]  # the columns the mark spans so far
    chosen = np.zeros(pieces.count, bool)
    while True:
        near = eligible & ~chosen & (left < stop + across) & (right > start - across)
        chosen |= near
        if single or not near.any():  # one digit: the main one's neighbours, not theirs
            return [int(k) + 1 for k in np.flatnonzero(chosen)]
        start, stop = min(start, int(left[near].min())), max(stop, int(right[near].max()))


def needs_photo_steps(gray: Image.Image) -> bool:
    """Does this working copy (gray) need the photo steps (light flattened, rulings removed)? Not when it
    is small (a crop, MNIST) or clean (a digital drawing, :func:`is_clean`)."""
    return max(gray.size) > SMALL_PICTURE and not is_clean(gray)


def is_clean(gray: Image.Image) -> bool:
    """Is this a digital drawing or a clean scan, with no light or paper to correct? Then at least
    :data:`CLEAN_FRACTION` of its pixels share one exact value (a photo's noise never allows that),
    and the quick path (Otsu's threshold) is both right and 3x faster."""
    histogram = gray.histogram()
    return max(histogram) >= CLEAN_FRACTION * gray.width * gray.height


def cut_to_drawing(gray: Image.Image) -> tuple[Image.Image, float]:
    """A clean drawing (:func:`is_clean`) -> (the part that holds its ink, with a 2-pixel frame of
    background, shrunk by area averaging so that its long side is at most :data:`CLEAN_SIDE`; the scale
    of that shrinking, 1 when none).

    Why: the digit is fitted into 20x20 pixels in the end, so a 280x280 canvas carries 100 times more
    pixels than the answer needs; every later step (threshold, components, shape checks) costs a
    fraction on the cut. Nothing outside the ink is lost: a second mark anywhere is inside the cut too.
    """
    background = int(np.argmax(gray.histogram()))
    # Pillow maps every pixel through a 256-entry table and finds the box of what is left, in C.
    inked = gray.point([255 * (abs(level - background) > CLEAN_TOLERANCE) for level in range(256)])
    found = inked.getbbox()
    if found is None:
        return gray, 1.0  # blank: the simple path says so
    margin = 2
    left, top, right, bottom = found
    box = (max(left - margin, 0), max(top - margin, 0), min(right + margin, gray.width),
           min(bottom + margin, gray.height))
    cut = gray.crop(box)
    # A frame of pure background keeps the border-based polarity test right when ink reaches the edge.
    framed = Image.new("L", (cut.width + 2 * margin, cut.height + 2 * margin), background)
    framed.paste(cut, (margin, margin))
    longest, scale = max(framed.size), 1.0
    if longest > CLEAN_SIDE:
        scale = CLEAN_SIDE / longest
        framed = framed.resize((max(1, round(framed.width * scale)), max(1, round(framed.height * scale))),
                               Image.Resampling.BOX)
    return framed, scale


def find_mark(picture: Image.Image, single: bool = True) -> Sheet:
    """A picture -> :class:`Sheet`: the flattened ink of the written mark and how it was found.

    An empty ``chosen`` list means no mark (the caller says "no digit found"). Small pictures (at most
    :data:`SMALL_PICTURE` pixels: MNIST, a crop, an 8x8 scan enlarged) have no sheet around the digit
    (it may fill them edge to edge), and clean ones (a canvas drawing, :func:`is_clean`) no light to
    correct; both keep the simple path (a clean drawing first cut to its ink, :func:`cut_to_drawing`):
    polarity from the border, Otsu's threshold, specks dropped (:func:`cnnlab.recognition.preprocess.ink_mask`, which raises ``NoDigitError``).
    ``single=False``: the mark is a number, written along a line (see :func:`choose_mark`).
    """
    rgb = working_copy(picture)
    gray = rgb.convert("L")
    if not needs_photo_steps(gray):
        frame_pixels = float(gray.width * gray.height)
        if max(rgb.size) > SMALL_PICTURE:
            cut, scale = cut_to_drawing(gray)
            gray, frame_pixels = cut, frame_pixels * scale**2
        ink = to_ink(np.asarray(gray, dtype=np.float32) / 255.0)
        mask = ink_mask(ink)
        pieces = Components.of(mask)
        stages = {"original": rgb, "flattened": 1.0 - ink, "ink mask": mask, "chosen": mask}
        return Sheet(ink=ink, mask=mask, pieces=pieces, chosen=list(range(1, pieces.count + 1)), stages=stages,
                     frame_pixels=frame_pixels)
    ink = flatten_illumination(paper_brightness(rgb))
    pieces, threshold = mark_components(ink)
    chosen = choose_mark(ink, pieces, single)
    mask = pieces.mask_of(chosen)
    if chosen:
        # The mark's core: ink weaker than a fraction of its peak is the blur and haze around it.
        peak = float(ink[mask].max())
        core = ink > threshold + CORE_FRACTION * max(peak - threshold, 0.0)
        mask &= grow_by_one(core & mask)
    stages = {"original": rgb, "flattened": 1.0 - ink, "ink mask": pieces.labels > 0, "chosen": mask}
    return Sheet(ink=ink.astype(np.float32, copy=False), mask=mask, pieces=pieces, chosen=chosen, stages=stages)
