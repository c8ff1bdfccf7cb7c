"""Decode a picture with memory in mind: never more pixels in play than the recognizer needs.

The network sees 28x28, and a whole number is read well from a few hundred pixels of height, yet the
largest picture accepted is 25 megapixels. Decoded naively, one such PNG (RGBA: 100 MB of pixels) went
through compositing, gray conversion and the float pipeline at full size and took ~500 MB; four at once
took 2 GB. Here a picture is shrunk to :data:`WORK_PIXELS` as early as the format allows:

* JPEG: Pillow's ``draft()`` makes the decoder itself scale by 1/2, 1/4 or 1/8 and produce gray, so the
  full-size pixels never exist;
* other formats (PNG, WebP, GIF, BMP) cannot decode at a smaller scale: they are decoded once, flattened
  to gray (alpha composited on white, as :func:`cnnlab.recognition.preprocess.load_image` does) with one 8-bit copy
  at a time, then reduced with a box filter, which keeps a thin pen line as grey instead of dropping it.

Pictures at or under the budget are returned exactly as :func:`~cnnlab.recognition.preprocess.load_image` reads
them, so a page drawing (280x280 or 840x280) is recognized pixel for pixel as before.
"""

from __future__ import annotations

import math
import threading

from PIL import Image, ImageOps

from ..preprocess import ImageError, ImageTooLargeError, _open, check_dimensions, load_image

#: Largest picture handed on to preprocessing (about 1200 x 800). Past this, more pixels only cost memory.
WORK_PIXELS = 1_000_000
#: Pictures over this many pixels take one of the :data:`LARGE_DECODES` slots while decoding.
LARGE_PICTURE_PIXELS = 4_000_000
#: How many large pictures may be decoded at once, process-wide: each holds up to ~150 MB while it is
#: decoded (25 MP RGBA), so two would already be 300 MB; small pictures (page drawings) never wait here.
LARGE_DECODES = threading.BoundedSemaphore(1)

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "F")  # 16-bit and float gray: load_image rescales these


def work_size(size: tuple[int, int], budget: int = WORK_PIXELS) -> tuple[int, int]:
    """``(width, height)`` scaled down, aspect kept, to at most ``budget`` pixels (unchanged if under)."""
    width, height = size
    if width * height <= budget:
        return width, height
    scale = math.sqrt(budget / (width * height))
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def _flatten_to_rgb(image: Image.Image, owned: bool = True) -> Image.Image:
    """A decoded picture -> ``"RGB"``, transparency composited on white (as :func:`_flatten_to_gray`)."""
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        if owned:
            image.close()
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    if image.mode in _WIDE_MODES:
        return load_image(image, mode="RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


def _flatten_to_gray(image: Image.Image, owned: bool = True) -> Image.Image:
    """A decoded picture -> ``"L"``, transparency composited on white, holding few full-size copies
    (``owned``: the picture is ours to close early, not the caller's)."""
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in _ALPHA_MODES:
        alpha = image.getchannel("A" if "A" in image.mode else "a")
        gray = image.convert("L")  # RGB -> gray is linear, so compositing after it equals before it
        if owned:
            image.close()  # the full-size colour pixels are no longer needed
        paper = Image.new("L", gray.size, 255)
        return Image.composite(gray, paper, alpha)
    if image.mode in _WIDE_MODES:
        return load_image(image)
    return image.convert("L") if image.mode != "L" else image


def decode_picture(source, budget: int = WORK_PIXELS, mode: str = "L") -> Image.Image:
    """Bytes, path, file object or PIL image -> gray ``"L"`` (or ``mode="RGB"``) image of at most ``budget``
    pixels.

    Errors are those of :func:`~cnnlab.recognition.preprocess.load_image`: :class:`ImageTooLargeError` for
    dimensions over the limits (judged from the header, before decoding), :class:`ImageError` for
    anything that is not a readable picture.
    """
    image = _open(source)
    owned = image is not source  # a PIL image from the caller is read, never changed or closed
    try:
        return _decode_opened(image, budget, owned, mode)
    finally:
        if owned:  # opened here: release the file (the result is always a new image)
            image.close()


def _decode_opened(image: Image.Image, budget: int, owned: bool, mode: str = "L") -> Image.Image:
    check_dimensions(image.size, image.format)
    if image.width * image.height <= budget:
        return load_image(image, mode=mode)  # nothing to save: the exact path the command line has always taken
    large = image.width * image.height > LARGE_PICTURE_PIXELS
    if large:
        LARGE_DECODES.acquire()
    try:
        metadata = {k: v for k, v in image.info.items() if k != "transparency"}  # EXIF / XMP orientation
        image.seek(0)  # animated GIF / WebP: the first frame
        if owned and image.format == "JPEG":
            image.draft(mode, work_size(image.size, budget))  # the decoder scales by 1/2..1/8 itself
        image.load()
        gray = _flatten_to_gray(image, owned) if mode == "L" else _flatten_to_rgb(image, owned)
        target = work_size(gray.size, budget)
        if target != gray.size:
            gray = gray.resize(target, Image.Resampling.BOX, reducing_gap=None)
        gray.info.update(metadata)
        return ImageOps.exif_transpose(gray)  # phone photos are stored sideways with a rotation tag
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image refused as a decompression bomb: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"the image could not be decoded (truncated or corrupt?): {exc}") from exc
    finally:
        if large:
            LARGE_DECODES.release()
