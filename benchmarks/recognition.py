"""Recognition in the wild, per category: synthetic photos, non-digits, MNIST test, UCI 8x8 scans.

    CNNLAB_DATA=../shared/datasets python benchmarks/recognition.py [--photos 200] [--non-digits 40]
        [--drawings 1000] [--mnist 10000] [--uci] [--model M] [--json out.json]

* photos: ``--photos`` per paper (plain, squared, ruled) of MNIST *test* digits rendered by
  :mod:`cnnlab.synthetic.photos` (seed 0); right = the answer is the digit (a rejection counts as wrong);
* drawings: ``--drawings`` 280x280 canvases of MNIST *test* digits redrawn as pen strokes
  (:mod:`cnnlab.synthetic.drawings`: slant, pen width, size, place, both polarities; seed 0);
* non-digits: ``--non-digits`` per kind (blank, noise, line, scribble, letter, several digits); right =
  ``prediction`` is ``null``;
* MNIST test: the first ``--mnist`` test digits through the whole recognizer (preprocessing included):
  accuracy and the share rejected;
* UCI: scikit-learn's ``load_digits`` (1,797 8x8 scans, 0..16), enlarged 4x (bicubic) to 32x32.

Everything goes through :class:`cnnlab.recognition.serve.recognize.Recognizer`, i.e. what ``cnnlab predict`` answers.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image


def mnist_test(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    from cnnlab.data import load_dataset

    test = load_dataset("mnist", "test", data_dir, download=False, progress=False)
    return test.images[:, 0], test.labels


def uci_pictures() -> tuple[list[Image.Image], np.ndarray]:
    """The UCI optdigits scans (8x8, 0..16, light on dark) as 32x32 gray pictures."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pictures = [
        Image.fromarray((image * (255 / 16)).astype(np.uint8)).resize((32, 32), Image.Resampling.BICUBIC)
        for image in digits.images
    ]
    return pictures, digits.target


#: Marks that the bundled model's "not a digit" class never saw in training (cnnlab.synthetic.non_digits
#: trains on other fonts' capital and small letters, and on scribbles): symbols, and small letters it left
#: out, drawn in Pillow's font (Aileron) and photographed like the test letters. How far the class reaches.
UNSEEN = {"symbol": "#@&?$€§¶ΩλπΣ%*", "small-letter": "aehtuy"}


def unseen_mark_photos(per_mark: int) -> dict[str, list[bytes]]:
    """``per_mark`` photos of each of :data:`UNSEEN`'s marks, by kind; photo ``k`` of mark ``i`` of a kind
    uses seed ``1000 + 10 i + k``."""
    from PIL import ImageDraw, ImageFont

    from cnnlab.synthetic import photos

    def photo(char: str, seed: int) -> bytes:
        rng = np.random.default_rng(seed)
        paper, ink = str(rng.choice(photos.PAPERS)), str(rng.choice(["blue", "black", "pencil"]))
        canvas = Image.new("L", (240, 240), 0)
        ImageDraw.Draw(canvas).text((120, 120), char, fill=255, anchor="mm", font=ImageFont.load_default(size=170))
        height = photos.digit_height(rng)
        alpha = photos.pen_alpha(np.asarray(canvas, np.float32) / 255.0, height, photos.random_pen(rng, height, ink),
                                 True)
        return photos.photograph([(alpha, photos.place(alpha, rng))], rng, paper, ink)

    return {kind: [photo(char, 1000 + 10 * i + k) for i, char in enumerate(chars) for k in range(per_mark)]
            for kind, chars in UNSEEN.items()}


def score(recognizer, pictures, labels) -> dict:
    """Right / rejected / wrong counts and the median time per picture (ms)."""
    right = rejected = 0
    times = []
    messages: Counter = Counter()
    for picture, label in zip(pictures, labels):
        start = time.perf_counter()
        answer = recognizer.recognize(picture)
        times.append(time.perf_counter() - start)
        if answer["prediction"] is None:
            rejected += 1
            messages[answer["message"].split(":")[0]] += 1
            right += label is None
        else:
            right += answer["prediction"] == label
    n = len(labels)
    right = int(right)
    return {"n": n, "right": right, "accuracy": right / n, "rejected": rejected / n,
            "median_ms": 1000 * float(np.median(times)), "reasons": dict(messages.most_common(4))}


def score_numbers(recognizer, rendered) -> dict:
    """Number mode on photos of written numbers: whole numbers right, digits right (position by position,
    over the true numbers' digits), no answer, and the median time per photo (ms)."""
    right = digits_right = digits = unanswered = 0
    times = []
    for photo in rendered:
        start = time.perf_counter()
        answer = recognizer.recognize(photo.jpeg, number=True).get("number")
        times.append(time.perf_counter() - start)
        unanswered += answer is None
        right += answer == photo.number
        digits += len(photo.number)
        if answer is not None and len(answer) == len(photo.number):  # a digit lost or added: none counted
            digits_right += sum(a == b for a, b in zip(answer, photo.number))
    n = len(rendered)
    return {"n": n, "right": right, "accuracy": right / n, "digit_accuracy": digits_right / digits,
            "unanswered": unanswered / n, "median_ms": 1000 * float(np.median(times))}


def median_ms(fn, repeats: int = 30) -> float:
    fn()  # warm up (first-call imports and caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(1000 * float(np.median(times)), 2)


def timing(recognizer, photo_jpeg: bytes) -> dict:
    """Median single-picture times: preprocessing alone and the whole answer (preprocessing + network)."""
    from PIL import ImageDraw

    from cnnlab.recognition.preprocess import load_image, prepare_digit

    big = Image.open(io.BytesIO(photo_jpeg)).resize((3000, 4000), Image.Resampling.BICUBIC)  # 12 MP
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=90)
    jpeg12 = buffer.getvalue()
    canvas = Image.new("L", (280, 280), 0)  # what the drawing page sends: a white "7" on black
    ImageDraw.Draw(canvas).line([(60, 50), (220, 50), (130, 240)], fill=255, width=20)
    buffer = io.BytesIO()
    canvas.save(buffer, "PNG")
    png = buffer.getvalue()
    return {
        "photo_12mp_decode": median_ms(lambda: load_image(jpeg12, mode="RGB", max_side=512)),
        "photo_12mp_prepare": median_ms(lambda: prepare_digit(jpeg12)),
        "photo_12mp_answer": median_ms(lambda: recognizer.recognize(jpeg12)),
        "canvas_prepare": median_ms(lambda: prepare_digit(png)),
        "canvas_answer": median_ms(lambda: recognizer.recognize(png)),
        "load_average": round(os.getloadavg()[0], 2),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200, help="photos per paper kind")
    parser.add_argument("--non-digits", type=int, default=40, help="pictures per non-digit kind")
    parser.add_argument("--drawings", type=int, default=1000, help="canvas drawings of MNIST test digits")
    parser.add_argument("--mnist", type=int, default=10_000, help="MNIST test digits (0: skip)")
    parser.add_argument("--uci", action="store_true", help="also score the 1,797 UCI 8x8 digits")
    parser.add_argument("--unseen", type=int, default=0,
                        help="photos per mark of symbols and small letters never trained on as 'not a digit'")
    parser.add_argument("--model", help="model file; default: the bundled one")
    parser.add_argument("--numbers", type=int, default=0,
                        help="photos of written numbers (2-4 digits) read in number mode")
    parser.add_argument("--timing", action="store_true",
                        help="also time one picture: a 12-megapixel JPEG photo and a 280x280 canvas PNG")
    parser.add_argument("--json", help="write the table as JSON here")
    args = parser.parse_args(argv)

    from cnnlab.io import load_bundled_model, load_model
    from cnnlab.recognition.serve.recognize import Recognizer
    from cnnlab.synthetic import drawings, photos

    data_dir = Path(os.environ.get("CNNLAB_DATA", "../shared/datasets"))
    images, labels = mnist_test(data_dir)
    recognizer = Recognizer(load_model(args.model) if args.model else load_bundled_model())
    table = {}

    def report(name, pictures, truth):
        table[name] = row = score(recognizer, pictures, truth)
        print(f"{name:<22} n={row['n']:<6} right {row['accuracy']:7.2%}  rejected {row['rejected']:6.2%}  "
              f"median {row['median_ms']:6.1f} ms  {row['reasons']}", flush=True)

    for paper in photos.PAPERS if args.photos else ():
        rendered = photos.digit_photos(images, labels, paper, args.photos, seed=0)
        report(f"photo-{paper}", [p.jpeg for p in rendered], [p.label for p in rendered])
    if args.drawings:
        rendered = drawings.digit_drawings(images, labels, args.drawings, seed=0)
        report("drawn-canvas", [d.png for d in rendered], [d.label for d in rendered])
    if args.non_digits:
        rendered = photos.non_digit_photos(args.non_digits, images, seed=0)
        for kind in photos.NON_DIGIT_KINDS:
            chosen = [p for p in rendered if p.category == kind]
            report(f"not-a-digit-{kind}", [p.jpeg for p in chosen], [None] * len(chosen))
    if args.numbers:
        rendered = photos.number_photos(images, labels, args.numbers, seed=0)
        table["number-photo"] = row = score_numbers(recognizer, rendered)
        print(f"{'number-photo':<22} n={row['n']:<6} right {row['accuracy']:7.2%}  digits right "
              f"{row['digit_accuracy']:7.2%}  no answer {row['unanswered']:6.2%}  median {row['median_ms']:6.1f} ms",
              flush=True)
    for kind, pictures in unseen_mark_photos(args.unseen).items() if args.unseen else ():
        report(f"unseen-{kind}", pictures, [None] * len(pictures))
    if args.mnist:
        report("mnist-test", [Image.fromarray(d) for d in images[: args.mnist]], list(labels[: args.mnist]))
    if args.uci:
        pictures, truth = uci_pictures()
        report("uci-8x8", pictures, list(truth))
    if args.timing:
        table["timing"] = timing(recognizer, photos.digit_photo(images[0], seed=1, paper="squared"))
        print("timing (median ms):", table["timing"], flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
