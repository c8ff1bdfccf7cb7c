"""A picture as a whole-picture model's input: Fashion-MNIST clothes, CIFAR-10 photos, folder datasets.

Digit models read pictures through the digit pipeline (:mod:`cnnlab.recognition.preprocess`: the ink cropped, fitted in
20x20, centred by mass), because that is how MNIST was made. Other datasets were made differently, and a
model stores which way in its preprocessing (``"pipeline": "resize"``, see
:func:`cnnlab.training.recipes.preprocessing_for`):

* ``polarity: "light-on-dark"`` (Fashion-MNIST): the object is light on a black background. A product photo
  is usually dark on white, so a picture whose border is light is inverted first; it is then padded to a
  square with the background and resized to the model's size, as Fashion-MNIST's pictures were.
* ``polarity: "as-is"`` (CIFAR-10, folders): the picture is taken as it is, in the model's channels (gray or
  RGB), centre-cropped to the model's aspect ratio and resized.

Either way the result is float32 ``(C, H, W)`` in [0, 1] (pixels / 255), to be normalized with the model's
stored mean and std like any training batch.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from ..engine.errors import ConfigError
from .preprocess import load_image

#: A border brighter than this (0..1) marks a light background: a dark object on paper or a white table.
LIGHT_BORDER = 0.5


def uses_resize(preprocessing: dict | None) -> bool:
    """True when a model with this stored preprocessing reads whole pictures (not the digit pipeline)."""
    return (preprocessing or {}).get("pipeline", "digit") == "resize"


def prepare_resized(image, preprocessing: dict | None, input_shape) -> np.ndarray:
    """Picture (path, bytes, PIL image) -> float32 ``(C, H, W)`` in [0, 1] for a model of ``input_shape``."""
    if len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise ConfigError(f"a whole-picture model needs inputs (1 or 3, H, W), this one takes {tuple(input_shape)}")
    channels, height, width = (int(d) for d in input_shape)
    pre = preprocessing or {}
    picture = load_image(image, mode="RGB" if channels == 3 else "L")
    if pre.get("polarity") == "light-on-dark":
        gray = np.asarray(picture.convert("L"), dtype=np.float32) / 255
        border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
        if border.mean() > LIGHT_BORDER:  # dark on light: make it light on dark, as the training pictures
            picture = ImageOps.invert(picture)
        side = max(picture.size)  # pad to a square with the (now dark) background, keep the shape
        square = Image.new(picture.mode, (side, side), 0)
        square.paste(picture, ((side - picture.width) // 2, (side - picture.height) // 2))
        picture = square.resize((width, height), Image.Resampling.LANCZOS)
    else:
        picture = ImageOps.fit(picture, (width, height), Image.Resampling.LANCZOS)  # centre crop + resize
    array = np.asarray(picture, dtype=np.float32) / 255
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
