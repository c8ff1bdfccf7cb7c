"""Any picture of a digit -> the 28x28 array an MNIST-trained network expects.

A network that scores 99% on MNIST can fail on a digit a person draws, because MNIST digits were made
in a particular way (LeCun et al., 1998): black-on-white scans were size-normalized to fit a **20x20**
box *keeping their aspect ratio*, anti-aliased (so edges are grey, not jagged), and placed in a **28x28**
field so that their **centre of mass** sits at the centre. The network saw nothing else: a light digit
on a perfectly dark background, about 20 pixels tall, strokes 2-3 pixels wide, centred by mass.
:func:`prepare_digit` repeats those steps on any picture, as a pipeline of small functions::

    load_image        file / bytes / PIL image -> PIL image (RGB kept), RGBA composited on white,
                      big JPEGs decoded at 1/2, 1/4 or 1/8 scale
    find_mark         (cnnlab.recognition.paper) the written mark on the sheet: illumination flattened, rulings
                      removed, components chosen; small pictures: polarity + Otsu (to_ink, ink_mask)
    check_mark        (cnnlab.recognition.reject) one digit? not noise, a line, a scribble or several marks
    clean_ink         -> background set to exactly 0, contrast stretched
    crop_to_ink       -> the ink's bounding box
    shrink_large      -> big crops averaged down first (cheap, keeps thin strokes as grey)
    normalize_strokes -> a thin pen line widened, a fat one narrowed, towards MNIST's stroke width
                      (fat ones kept for a model trained on them: thins_strokes)
    fit_in_box        -> scaled so the longer side is 20 px, aspect kept, anti-aliased
    centre_by_mass    -> pasted into 28x28 with the centre of mass at the centre

The result is float32 ``(28, 28)`` in ``[0, 1]``: exactly ``pixels / 255`` of an MNIST image, which is the
training normalization, so it can be fed to ``model.predict_proba(x[None, None])`` and also shown.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from .ink import (  # noqa: F401  (other modules read these names from here too)
    ImageError,
    ImageTooLargeError,
    NoDigitError,
    MIN_CONTRAST,
    SPECK_FRACTION,
    _as_uint8,
    border_pixels,
    to_ink,
    histogram256,
    histogram_quantile,
    otsu_threshold,
    ink_mask,
    drop_specks,
    clean_ink,
    grow_by_one,
)

#: Refuse pictures with more pixels than this *before* decoding them (a 25-megapixel photo is fine; a
#: 1x1-GB "decompression bomb" PNG that unpacks to 50,000 x 50,000 pixels is not).
MAX_IMAGE_PIXELS = 25_000_000
#: JPEGs may be larger — a 600-dpi A4 scan has 34.8 megapixels — because the decoder itself shrinks them
#: by up to 8 per side while decoding (``Image.draft``); still below Pillow's own bomb warning (89.5 MP).
MAX_JPEG_PIXELS = 80_000_000
#: ... or with either side longer than this (a 1 x 20,000,000 strip is absurd even if it is small).
MAX_IMAGE_SIDE = 20_000

BOX = 20  # MNIST: the digit fits a 20x20 box ...
FIELD = 28  # ... inside a 28x28 field.
MIN_STROKE_PX = 1.5  # strokes thinner than this in the final 20x20 box (5% of MNIST's) are widened ...
TYPICAL_STROKE_PX = 2.2  # ... to MNIST's median stroke width
MAX_STROKE_PX = 3.2  # strokes wider than this in the 20x20 box (MNIST's widest 10%) are narrowed


# -- reading --------------------------------------------------------------------------------------------
def _open(source) -> Image.Image:
    """Open (not decode) a picture from a path, bytes, a binary file object or a PIL image."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (str, os.PathLike)) and not Path(source).is_file():
        raise ImageError(f"expected an image file, received {str(source)!r}, which does not exist")
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            return Image.open(io.BytesIO(bytes(source)))
        if isinstance(source, (str, os.PathLike)):
            return Image.open(Path(source))
        if hasattr(source, "read"):
            return Image.open(source)
    except Image.DecompressionBombError as exc:  # Pillow's own limit, checked in open() for huge headers
        raise ImageTooLargeError(f"image refused as a decompression bomb: {exc}") from exc
    except UnidentifiedImageError:
        raise ImageError("expected a PNG, JPEG, BMP, GIF or WebP image, but the data could not be read as one") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"expected a PNG, JPEG, BMP, GIF or WebP image, but it could not be read: {exc}") from exc
    raise ImageError(f"expected a path, bytes or a PIL image, received {type(source).__name__}")


def check_dimensions(size: tuple[int, int], image_format: str | None = None) -> None:
    """Raise :class:`ImageTooLargeError` if a ``(width, height)`` is too large to decode.

    Only the header has been read when this runs: a PNG of a few kilobytes can claim 100,000 x 100,000
    pixels and would need 10 GB once decoded, so the size is judged before any pixel is.
    """
    width, height = size
    if width < 1 or height < 1:
        raise ImageError(f"expected an image with pixels, received size {width}x{height}")
    limit = MAX_JPEG_PIXELS if image_format == "JPEG" else MAX_IMAGE_PIXELS
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE or width * height > limit:
        raise ImageTooLargeError(
            f"image of {width}x{height} pixels refused: at most {MAX_IMAGE_SIDE} per side and "
            f"{limit:,} pixels in all" + ("" if image_format == "JPEG" else
                                          f" ({MAX_JPEG_PIXELS:,} for a JPEG, which is shrunk while decoded)")
        )


def load_image(source, mode: str = "L", max_side: int | None = None) -> Image.Image:
    """Read a picture (path, bytes, file object or PIL image) as a gray ``"L"`` (or ``mode``) image.

    Animated GIF/WebP: the first frame. Transparency is composited on white, the way it looks on a page
    (a digit drawn on a transparent canvas is dark ink on "paper"). The dimensions are checked against
    :data:`MAX_IMAGE_PIXELS` / :data:`MAX_IMAGE_SIDE` before the pixels are decoded. With ``max_side``,
    a JPEG is decoded at a reduced scale (1/2, 1/4 or 1/8, done inside the decoder: a 12-megapixel
    photo then costs a few milliseconds) that still leaves at least ``max_side / 1.5`` pixels on its long side.
    """
    opened = image = _open(source)
    check_dimensions(image.size, image.format)
    try:
        image.seek(0)
        # (only on a file we opened ourselves: a caller's PIL image is never changed in place)
        if max_side and opened is not source and image.format == "JPEG" and max(image.size) > 2 * max_side:
            factor = 1.5 * max(image.size) / max_side  # 4000 px -> 1/8 = 500 px, no resize needed after
            image.draft("RGB" if mode == "RGB" else "L", (int(image.width / factor), int(image.height / factor)))
        image.load()
        image = ImageOps.exif_transpose(image)  # phone photos are stored sideways with a rotation tag
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, rgba)
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            # 16-bit / float grayscale: rescale to 0..255 instead of letting Pillow clip it.
            values = np.asarray(image, dtype=np.float64)
            low, high = float(values.min()), float(values.max())
            scale = 255.0 / (high - low) if high > low else 0.0
            return Image.fromarray(((values - low) * scale).astype(np.uint8)).convert(mode)
        return image.convert(mode)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image refused as a decompression bomb: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"the image could not be decoded (truncated or corrupt?): {exc}") from exc
    finally:
        if opened is not source:  # we opened the file: release it (every path above returned a copy)
            opened.close()


# -- the pipeline ---------------------------------------------------------------------------------------
def to_gray(image) -> np.ndarray:
    """Picture -> float32 ``(H, W)`` in ``[0, 1]`` with 1 = white.

    Accepts what :func:`load_image` accepts, or an array: ``(H, W)`` gray or ``(H, W, 3|4)`` colour,
    uint8 (0..255) or float (0..1).
    """
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[2] in (3, 4):
            return to_gray(load_image(Image.fromarray(_as_uint8(array))))
        if array.ndim != 2:
            raise ImageError(f"expected a (H, W) or (H, W, 3|4) array, received shape {array.shape}")
        check_dimensions((array.shape[1], array.shape[0]))
        if array.dtype == np.uint8:
            return array.astype(np.float32) / 255.0
        return np.clip(array.astype(np.float32), 0.0, 1.0)
    return np.asarray(load_image(image), dtype=np.float32) / 255.0


def crop_to_ink(ink: np.ndarray) -> np.ndarray:
    """The smallest rectangle of ``(H, W)`` holding every non-zero pixel."""
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        raise NoDigitError("no digit found: no ink left after removing the background")
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _resize(ink: np.ndarray, height: int, width: int, resample) -> np.ndarray:
    """Resize a float ``(H, W)`` array with Pillow's ``"F"`` mode (no 8-bit rounding on the way)."""
    resized = Image.fromarray(np.ascontiguousarray(ink, dtype=np.float32)).resize(
        (width, height), resample=resample
    )
    return np.asarray(resized, dtype=np.float32)


def shrink_large(ink: np.ndarray, limit: int = 4 * BOX) -> np.ndarray:
    """Average a big crop down so its longer side is ``limit``; small crops pass through.

    Area averaging (a box filter) keeps a thin stroke as a faint grey line instead of dropping it; the
    brightness is restored afterwards. Working at 80 px also keeps the next steps cheap on a photo.
    """
    height, width = ink.shape
    longest = max(height, width)
    if longest <= limit:
        return ink
    scale = limit / longest
    small = _resize(ink, max(1, round(height * scale)), max(1, round(width * scale)), Image.Resampling.BOX)
    return np.clip(small / max(float(small.max()), 1e-6), 0.0, 1.0)


def stroke_width(ink: np.ndarray) -> float:
    """Rough stroke width in pixels: ink area divided by half its outline length.

    A stroke of width ``w`` and length ``L`` covers ``w * L`` pixels and has about ``2 L`` edge pixels.
    A 1-pixel line would be all edge (and read as 2), so the mask is measured at twice the size.
    """
    mask = ink > 0.5 * float(ink.max())
    mask = mask.repeat(2, axis=0).repeat(2, axis=1)
    edge = mask & ~ndimage.binary_erosion(mask)
    return mask.sum() / max(int(edge.sum()), 1)


def thicken_strokes(ink: np.ndarray, box: int = BOX, width: float | None = None) -> np.ndarray:
    """Widen strokes that would be thinner than :data:`MIN_STROKE_PX` once scaled into the ``box``.

    A fine pen photographed at high resolution shrinks to a hairline MNIST never had; a grey dilation
    with a disc makes it a marker line of MNIST's typical width again. Other strokes are left as they are.
    """
    scale = box / max(ink.shape)
    width = stroke_width(ink) if width is None else width
    if width * scale >= MIN_STROKE_PX:
        return ink
    missing = TYPICAL_STROKE_PX / scale - width
    radius = int(np.ceil(missing / 2))
    if radius < 1:
        return ink
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disc = xx**2 + yy**2 <= radius**2
    padded = np.pad(ink, radius)
    return ndimage.grey_dilation(padded, footprint=disc)


def thin_strokes(ink: np.ndarray, box: int = BOX, width: float | None = None) -> np.ndarray:
    """Narrow strokes that would be wider than :data:`MAX_STROKE_PX` once scaled into the ``box``.

    Scans of small digits (the UCI 8x8 set, a thick felt pen written small) have strokes half as wide
    again as MNIST's; a grey erosion with a disc brings them back towards MNIST's typical width.
    """
    scale = box / max(ink.shape)
    width = stroke_width(ink) if width is None else width
    if width * scale <= MAX_STROKE_PX:
        return ink
    radius = int(np.floor((width - TYPICAL_STROKE_PX / scale) / 2))
    if radius < 1:
        return ink
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    thinner = ndimage.grey_erosion(ink, footprint=xx**2 + yy**2 <= radius**2)
    return thinner if thinner.max() > 0 else ink


def normalize_strokes(ink: np.ndarray, box: int = BOX, thin: bool = True) -> np.ndarray:
    """Stroke-width normalization after the crop: hairlines widened, fat strokes narrowed (MNIST's
    strokes are 1.5-3.2 px wide in the 20x20 box; the network has seen little else). ``thin=False``
    keeps fat strokes as they are (a model trained on them, see :func:`thins_strokes`)."""
    width = stroke_width(ink)  # measured once: at most one of the two changes anything
    scale = box / max(ink.shape)
    if width * scale < MIN_STROKE_PX:
        return thicken_strokes(ink, box, width)
    return thin_strokes(ink, box, width) if thin else ink


def thins_strokes(preprocessing: dict | None) -> bool:
    """Should fat strokes be narrowed for a model with this stored preprocessing?

    Yes for a model trained on MNIST as it is. No for one trained with stroke-thickness augmentation
    (``"thin_strokes": false``, written by ``cnnlab train``): it has seen fat strokes, and the erosion
    that narrows them also closes the loops of a blurred digit. Measured 2026-12-03 on the UCI 8x8 scans,
    whose strokes are the fattest we meet: the bundled cnn-bn reads 96.38% with the erosion and 97.22%
    without, LeNet-5 (no such augmentation) 96.05% with it and 95.05% without; MNIST, the canvas
    drawings and the photos read the same either way.
    """
    return bool((preprocessing or {}).get("thin_strokes", True))


def fit_in_box(ink: np.ndarray, box: int = BOX) -> np.ndarray:
    """Scale so the longer side is ``box`` pixels, keeping the aspect ratio (a "1" stays thin).

    Lanczos resampling anti-aliases, like MNIST's own normalization; its slight overshoot is clipped.
    """
    height, width = ink.shape
    scale = box / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    resized = np.clip(_resize(ink, new_h, new_w, Image.Resampling.LANCZOS), 0.0, None)
    return np.clip(resized / max(float(resized.max()), 1e-6), 0.0, 1.0)


def centre_by_mass(digit: np.ndarray, field: int = FIELD) -> np.ndarray:
    """Paste ``digit`` (at most ``field`` on each side) into a ``(field, field)`` black square so its
    centre of mass lands on the centre, as MNIST did.

    The shift is a whole number of pixels (no blur) and is limited so that no ink falls off the edge.
    """
    height, width = digit.shape
    cy, cx = ndimage.center_of_mass(digit)
    top = int(np.clip(round(field / 2 - cy), 0, field - height))
    left = int(np.clip(round(field / 2 - cx), 0, field - width))
    out = np.zeros((field, field), dtype=np.float32)
    out[top : top + height, left : left + width] = digit
    return out


def digit_from_ink(ink: np.ndarray, stages: dict | None = None, thin_fat_strokes: bool = True) -> np.ndarray:
    """Clean ink ``(H, W)`` (background 0) of one digit -> MNIST-like ``(28, 28)`` float32.

    ``stages``, when given, receives the 20x20 box and the final 28x28 picture; ``thin_fat_strokes=False``
    keeps fat strokes (:func:`thins_strokes`).
    """
    crop = crop_to_ink(ink)
    crop = shrink_large(crop)
    crop = normalize_strokes(crop, thin=thin_fat_strokes)
    crop = crop_to_ink(crop)
    boxed = fit_in_box(crop)
    digit = centre_by_mass(boxed)
    if stages is not None:
        stages.update({"20x20": boxed, "28x28": digit})
    return digit


def as_picture(image) -> Image.Image:
    """What :func:`prepare_digit` accepts -> a PIL picture (RGB kept: colour helps to tell a printed
    ruling from a pen). Big JPEGs are decoded at a reduced scale (see :func:`load_image`)."""
    from .paper import WORK_SIDE

    if isinstance(image, np.ndarray):
        if image.ndim == 3 and image.shape[2] in (3, 4):
            return load_image(Image.fromarray(_as_uint8(image)), mode="RGB")
        return Image.fromarray(_as_uint8(to_gray(image)))
    return load_image(image, mode="RGB", max_side=WORK_SIDE)


MIN_MARK_PIXELS = 5  # a mark smaller than this (at the working size) is a speck, not a digit
MIN_MARK_CONTRAST = 0.12  # the mark's darkest ink, once the paper is flattened to 0 (faint pencil: ~0.2)


def prepare_digit(image, *, single: bool = True, stages: dict | None = None, check: bool = True,
                  thin_fat_strokes: bool = True) -> np.ndarray:
    """Any picture of one digit -> float32 ``(28, 28)`` in ``[0, 1]``, light on dark, MNIST-style.

    ``image`` may be a path, bytes, a PIL image or an array (see :func:`to_gray`). The written mark is
    found first (:func:`cnnlab.recognition.paper.find_mark`: illumination flattened, rulings removed, the mark's
    components chosen), checked to be shaped like one digit (:func:`cnnlab.recognition.reject.check_mark`; with
    ``single=False``, number mode, several digits are fine), then cropped, stroke-normalized, fitted in
    20x20 and centred by mass in 28x28. Pass a dict as ``stages`` to receive the intermediate pictures
    (name -> array in 0..1) that ``cnnlab predict --show`` draws. ``check=False`` skips the shape checks
    (a dataset's pictures are whatever its classes are: a dash, a letter). ``thin_fat_strokes=False`` keeps
    fat strokes fat, for a model trained on them (:func:`thins_strokes` reads it from a model's preprocessing).

    Raises :class:`NoDigitError` on a blank picture (:class:`cnnlab.recognition.reject.NotADigitError` on a mark
    that is not a digit) and :class:`ImageError` on an unreadable one.
    """
    from .paper import BLANK_SHEET, find_mark
    from .reject import check_mark

    sheet = find_mark(as_picture(image))
    if stages is not None:
        stages.update(sheet.stages)
    if not sheet.chosen or int(sheet.mask.sum()) < MIN_MARK_PIXELS:
        raise NoDigitError(BLANK_SHEET)
    contrast = float(sheet.ink[sheet.mask].max())
    if contrast < MIN_MARK_CONTRAST:
        raise NoDigitError(f"no digit found: ink and background differ by only {contrast:.2f} "
                           f"(need {MIN_MARK_CONTRAST})")
    if check:
        check_mark(sheet.mask, sheet.pieces, sheet.chosen, single=single, frame_pixels=sheet.frame_pixels)
    # Only the region around the mark matters from here on; cropping now makes the rest cheaper.
    rows, cols = np.flatnonzero(sheet.mask.any(axis=1)), np.flatnonzero(sheet.mask.any(axis=0))
    region = np.s_[max(rows[0] - 1, 0) : rows[-1] + 2, max(cols[0] - 1, 0) : cols[-1] + 2]
    return digit_from_ink(clean_ink(sheet.ink[region], sheet.mask[region]), stages, thin_fat_strokes)


def as_batch(digits) -> np.ndarray:
    """``(28, 28)`` arrays -> float32 ``(N, 1, 28, 28)``, the shape ``model.predict_proba`` takes."""
    return np.stack([np.asarray(d, dtype=np.float32) for d in digits])[:, None, :, :]


def to_png_bytes(array: np.ndarray, scale: int = 1) -> bytes:
    """A ``(H, W)`` array in ``[0, 1]`` as PNG bytes (nearest-neighbour ``scale`` up, for display)."""
    image = Image.fromarray(_as_uint8(np.asarray(array)))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
