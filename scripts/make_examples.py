"""Draw the example pictures that ship with cnnlab (src/cnnlab/examples/*.png).

They are drawn the way a person draws on paper — dark marker strokes on a light, slightly uneven page,
not centred, not MNIST-sized — so that `cnnlab predict --example` shows the whole preprocessing at work.
Run: python scripts/make_examples.py
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

OUT = Path(__file__).resolve().parent.parent / "src" / "cnnlab" / "examples"

# Strokes of each digit as polylines in a unit box (x right, y down).
STROKES = {
    "2": [[(0.2, 0.3), (0.35, 0.12), (0.6, 0.1), (0.75, 0.25), (0.7, 0.45), (0.45, 0.65), (0.2, 0.88), (0.82, 0.86)]],
    "3": [[(0.22, 0.18), (0.45, 0.08), (0.7, 0.15), (0.72, 0.35), (0.5, 0.47), (0.42, 0.48)],
          [(0.5, 0.47), (0.75, 0.58), (0.78, 0.78), (0.55, 0.92), (0.3, 0.88), (0.18, 0.78)]],
    "7": [[(0.18, 0.14), (0.8, 0.12), (0.62, 0.42), (0.45, 0.9)], [(0.38, 0.5), (0.72, 0.48)]],
    "0": [[(0.5, 0.08), (0.28, 0.2), (0.2, 0.5), (0.3, 0.82), (0.5, 0.92), (0.72, 0.8), (0.8, 0.5), (0.7, 0.18),
           (0.5, 0.08)]],
    "6": [[(0.7, 0.1), (0.45, 0.22), (0.28, 0.5), (0.28, 0.78), (0.48, 0.92), (0.7, 0.8), (0.72, 0.6),
           (0.5, 0.5), (0.3, 0.62)]],
}


def draw_digits(text: str, size=(220, 240), origin=(40, 30), width=18, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    page = Image.new("L", (origin[0] * 2 + w * len(text), origin[1] * 2 + h), 238)
    pen = ImageDraw.Draw(page)
    for i, ch in enumerate(text):
        x0, y0 = origin[0] + i * w, origin[1]
        for stroke in STROKES[ch]:
            points = [(x0 + x * w + rng.normal(0, 2), y0 + y * h + rng.normal(0, 2)) for x, y in stroke]
            pen.line(points, fill=25, width=width, joint="curve")
            for p in (points[0], points[-1]):  # round caps
                pen.ellipse([p[0] - width / 2, p[1] - width / 2, p[0] + width / 2, p[1] + width / 2], fill=25)
    paper = rng.normal(0, 6, (page.height, page.width))  # uneven paper
    noisy = np.clip(np.asarray(page, dtype=np.float64) + paper, 0, 255).astype(np.uint8)
    return Image.fromarray(noisy).filter(ImageFilter.GaussianBlur(1.2))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    draw_digits("7", seed=1).save(OUT / "seven.png", optimize=True)
    draw_digits("3", seed=2).save(OUT / "three.png", optimize=True)
    draw_digits("2026", seed=3).save(OUT / "number-2026.png", optimize=True)
    for path in sorted(OUT.glob("*.png")):
        print(path, path.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
