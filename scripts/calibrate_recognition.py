"""Calibrate a model's displayed confidence and choose its "not a digit" threshold on held-out digits.

    CNNLAB_DATA=../shared/datasets python scripts/calibrate_recognition.py [--model M] [--out JSON]
        [--reject 0.004]

The held-out digits are the model's own validation split (the ``val_split`` and ``seed`` stored in its
metadata; 5,000 of MNIST's training images for the bundled LeNet-5), never the test set. Each goes
through the whole recognizer (``prepare_digit``, shape checks included), then:

1. **temperature**: the T that minimizes the negative log-likelihood of ``softmax(log p / T)`` on them
   (Guo et al., 2017, "On calibration of modern neural networks"); it changes no answer, only the
   percentages shown;
2. **thresholds**, set so that at most ``--reject`` of these digits are turned away (shape checks
   included): for a model with a "not a digit" class (``cnnlab train --non-digits``) first the probability
   of that class above which an answer is refused (``--share`` of the budget left after the shape
   checks), then the temperature-scaled top probability of the digits under which it is refused (the rest).

A model with a "not a digit" class also had non-digit marks held out (the same ``non_digits`` and seed):
they join the temperature fit with their own label, and the note says how many of them are refused.

Writes ``{temperature, min_confidence, max_not_a_digit, weights_sha256, note}``; by default beside the
bundled digit model (``src/cnnlab/models/cnn-bn-mnist.calibration.json``), which
:func:`cnnlab.recognition.calibration.calibration_for` reads only while the weights' fingerprint matches.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.optimize import minimize_scalar


def nll(log_p: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the labels under ``softmax(log_p / T)``."""
    z = log_p / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_softmax = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_softmax[np.arange(len(labels)), labels].mean())


def expected_calibration_error(p: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins."""
    confidence, predicted = p.max(axis=1), p.argmax(axis=1)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            total += inside.mean() * abs(float((predicted[inside] == labels[inside]).mean()) - float(confidence[inside].mean()))
    return total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model file; default: the bundled one")
    parser.add_argument("--out", help="where to write the calibration JSON; default: beside the bundled model")
    parser.add_argument("--reject", type=float, default=0.004, help="share of held-out digits it may turn away")
    parser.add_argument("--share", type=float, default=1.0,
                        help="part of that budget (after the shape checks) given to the 'not a digit' class")
    parser.add_argument("--data-dir", default=None, help="dataset folder; default: $CNNLAB_DATA")
    args = parser.parse_args(argv)

    from cnnlab.data import load_dataset, train_val_split
    from cnnlab.io import load_bundled_model, load_model
    from cnnlab.recognition.preprocess import NoDigitError, prepare_digit, thins_strokes
    from cnnlab.recognition.calibration import (Calibration, bundled_calibration_path, not_a_digit_class,
                                                split_off, weights_fingerprint)
    from cnnlab.recognition.serve.recognize import model_inputs
    from cnnlab.synthetic.non_digits import non_digit_images

    model = load_model(args.model) if args.model else load_bundled_model()
    config = ((getattr(model, "info", None) or {}).get("extra") or {}).get("config") or {}
    val_count, seed = config.get("val_split") or 5000, config.get("seed", 0)
    reject_class = not_a_digit_class(model)
    thin = thins_strokes((getattr(model, "info", None) or {}).get("preprocessing"))  # as the recognizer does
    _, val = train_val_split(load_dataset("mnist", "train", args.data_dir, download=False, progress=False),
                             val_count, seed=seed)
    digits, labels, shape_rejected = [], [], 0
    for image, label in zip(val.images[:, 0], val.labels):
        try:
            digits.append(prepare_digit(Image.fromarray(image), thin_fat_strokes=thin))
            labels.append(int(label))
        except NoDigitError:
            shape_rejected += 1
    labels = np.array(labels)
    n_digits = len(labels)
    marks = np.zeros((0, 28, 28), np.float32)
    if reject_class is not None and config.get("non_digits"):  # the marks held out in training, as drawn there
        marks = non_digit_images(int(config["non_digits"]), seed=seed)[: int(config["non_digits"]) // 10] / 255.0
    inputs = np.concatenate([np.stack(digits), marks.astype(np.float32)])
    fit_labels = np.concatenate([labels, np.full(len(marks), reject_class or 0)])
    p = np.asarray(model.predict_proba(model_inputs(model, inputs)), np.float64)
    log_p = np.log(np.clip(p, 1e-30, None))
    fit = minimize_scalar(lambda t: nll(log_p, fit_labels, t), bounds=(0.05, 20.0), method="bounded")
    temperature = float(fit.x)
    scaled_all = Calibration(temperature).scale(p)
    digit_p, not_a_digit = split_off(scaled_all[:n_digits], reject_class)
    n = len(val.labels)
    allowed = max(0, int(np.floor(args.reject * n)) - shape_rejected)  # model rejections still allowed
    by_class = int(round(args.share * allowed)) if reject_class is not None else 0
    max_not_a_digit = float(np.sort(not_a_digit)[::-1][by_class]) if reject_class is not None else 1.0
    kept = not_a_digit <= max_not_a_digit  # rejects exactly the `by_class` highest
    top = np.sort(digit_p[kept].max(axis=1))
    by_confidence = allowed - by_class
    min_confidence = float(top[by_confidence]) if by_confidence > 0 else 0.0  # rejects the lowest ones
    note = (f"fitted on {n} held-out MNIST training digits (val_split={val_count}, seed={seed})"
            + (f" and {len(marks)} held-out non-digit marks" if len(marks) else "") + ": "
            f"T={temperature:.3f}; NLL {nll(log_p, fit_labels, 1.0):.4f} -> {fit.fun:.4f}; "
            f"ECE {expected_calibration_error(p, fit_labels):.4f} -> "
            f"{expected_calibration_error(scaled_all, fit_labels):.4f}; digits: {shape_rejected} rejected by shape"
            + (f", {by_class} above {max_not_a_digit:.4f} 'not a digit'" if reject_class is not None else "")
            + f", {by_confidence} below {min_confidence:.4f} confidence ({(shape_rejected + allowed) / n:.2%} in all)")
    if len(marks):
        mark_p, mark_not = split_off(scaled_all[n_digits:], reject_class)
        refused = (mark_not > max_not_a_digit) | (mark_p.max(axis=1) < min_confidence)
        note += f"; non-digit marks refused: {int(refused.sum())} of {len(marks)}"
    out = Path(args.out) if args.out else bundled_calibration_path()
    record = {"temperature": round(temperature, 6), "min_confidence": round(min_confidence, 6),
              "max_not_a_digit": round(max_not_a_digit, 6), "weights_sha256": weights_fingerprint(model),
              "note": note}
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(note)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
