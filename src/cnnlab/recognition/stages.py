"""The strip that ``cnnlab predict photo.jpg --show stages.png`` saves: one panel per preprocessing step.

original -> flattened background -> ink mask -> chosen mark -> 20x20 -> 28x28 centred by mass, each
panel the same height and labelled, with the answer (or why there is none) written underneath. The
pictures come from :func:`cnnlab.recognition.preprocess.prepare_digit` called with ``stages={}``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

STAGE_ORDER = ("original", "flattened", "ink mask", "chosen", "20x20", "28x28")
TITLES = {
    "original": "original",
    "flattened": "flattened background",
    "ink mask": "ink mask (rulings removed)",
    "chosen": "chosen mark",
    "20x20": "20x20 box",
    "28x28": "28x28, centred by mass",
}
PANEL_HEIGHT = 220
GAP = 12
CAPTION = 22  # pixels above each panel for its title
MISSING = (235, 235, 235)


def as_rgb(picture) -> Image.Image:
    """A PIL picture or an array in 0..1 (``(h, w)``, ``(h, w, 3)`` or boolean) -> an RGB PIL image."""
    if isinstance(picture, Image.Image):
        return picture.convert("RGB")
    array = np.asarray(picture)
    array = array.astype(np.float32) if array.dtype == bool else array
    return Image.fromarray((np.clip(array, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)).convert("RGB")


def chosen_overlay(stages: dict) -> Image.Image:
    """The flattened picture, faded, with the chosen mark in red: what was kept, and what was not."""
    base = np.asarray(as_rgb(stages["flattened"]), dtype=np.float32) * 0.5 + 127
    ink = np.asarray(stages["ink mask"], dtype=bool)
    chosen = np.asarray(stages["chosen"], dtype=bool)
    base[ink & ~chosen] = (120, 120, 120)  # ink that was dropped: specks, rulings' leftovers, the desk
    base[chosen] = (220, 30, 30)
    return Image.fromarray(base.astype(np.uint8))


def panel(picture: Image.Image, height: int = PANEL_HEIGHT) -> Image.Image:
    """Scaled to ``height``; small pictures (the 20x20 and 28x28) with sharp pixels."""
    width = max(1, round(picture.width * height / picture.height))
    resample = Image.Resampling.NEAREST if max(picture.size) <= 32 else Image.Resampling.BILINEAR
    return picture.resize((width, height), resample)


def stage_strip(stages: dict, caption: str = "") -> Image.Image:
    """The stages (name -> picture) side by side, left to right in :data:`STAGE_ORDER`, titled, with
    ``caption`` (the answer or the reason for none) underneath. Steps that did not run are grey."""
    font = ImageFont.load_default(size=14)
    panels = []
    for name in STAGE_ORDER:
        if name == "chosen" and all(k in stages for k in ("flattened", "ink mask", "chosen")):
            picture = panel(chosen_overlay(stages))
        elif name in stages:
            picture = panel(as_rgb(stages[name]))
        else:
            picture = Image.new("RGB", (PANEL_HEIGHT // 2, PANEL_HEIGHT), MISSING)
        panels.append((TITLES[name], picture))
    width = sum(p.width for _, p in panels) + GAP * (len(panels) + 1)
    sheet = Image.new("RGB", (width, PANEL_HEIGHT + 2 * CAPTION + GAP * 2), (255, 255, 255))
    pen = ImageDraw.Draw(sheet)
    x = GAP
    for title, picture in panels:
        pen.text((x, GAP // 2), title, fill=(0, 0, 0), font=font)
        sheet.paste(picture, (x, GAP // 2 + CAPTION))
        x += picture.width + GAP
    pen.text((GAP, GAP + CAPTION + PANEL_HEIGHT), caption, fill=(0, 0, 0), font=font)
    return sheet
