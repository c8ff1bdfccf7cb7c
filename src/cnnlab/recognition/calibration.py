"""Calibrated confidence and the model's own "not a digit": temperature scaling and a threshold.

The top probability, after dividing the logits by a temperature T fitted on held-out MNIST digits, below a
threshold chosen so that only a stated small share of real digits is turned away
(``scripts/calibrate_recognition.py``). A calibration is tied to the weights it was fitted for by their
SHA-256, so a retrained or replaced model is never judged with another model's numbers.

A model trained with a "not a digit" class (``cnnlab train --non-digits``) has a second piece of evidence:
the probability of that class, above its own threshold (chosen the same way). The answer shown is then
the ten digits' probabilities, renormalized, and that class's probability beside them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

CALIBRATION_SUFFIX = ".calibration.json"


@dataclass(frozen=True)
class Calibration:
    """How to read a model's probabilities: ``temperature`` divides the logits (log-probabilities) before
    the softmax; an answer whose scaled top probability is below ``min_confidence`` is "not a digit"."""

    temperature: float = 1.0
    min_confidence: float = 0.0
    weights_sha256: str = ""
    note: str = ""
    max_not_a_digit: float = 1.0  # a model with a "not a digit" class: reject above this probability of it

    def scale(self, probabilities: np.ndarray) -> np.ndarray:
        """``(N, K)`` probabilities -> temperature-scaled probabilities (same argmax)."""
        logits = np.log(np.clip(np.asarray(probabilities, np.float64), 1e-30, None)) / self.temperature
        logits -= logits.max(axis=-1, keepdims=True)
        scaled = np.exp(logits)
        return scaled / scaled.sum(axis=-1, keepdims=True)


def weights_fingerprint(model) -> str:
    """SHA-256 of a model's weights (names, shapes and bytes, in order): ties a calibration to them."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        array = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
        digest.update(name.encode())
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def bundled_calibration_path(name: str = "digits") -> Path:
    """The calibration file beside a bundled model (``name`` as :data:`cnnlab.io.BUNDLED_MODELS` has it)."""
    from ..io import BUNDLED_MODELS

    return Path(str(resources.files("cnnlab") / "models")) / (Path(BUNDLED_MODELS[name]).stem + CALIBRATION_SUFFIX)


def read_calibration(path: Path) -> Calibration:
    return calibration_from(json.loads(Path(path).read_text()))


def calibration_from(data: dict) -> Calibration:
    return Calibration(float(data["temperature"]), float(data["min_confidence"]), str(data.get("weights_sha256", "")),
                       str(data.get("note", "")), float(data.get("max_not_a_digit", 1.0)))


def calibration_for(model) -> Calibration:
    """The calibration stored for this model's weights, or none (T = 1, no threshold).

    A calibration is found in the model's metadata (``info["calibration"]``) or, for the bundled model,
    in the JSON file beside it; either way it only applies if its weight fingerprint matches, so a
    retrained or replaced model is never judged with another model's threshold.
    """
    if not hasattr(model, "state_dict"):  # a stand-in (tests) or foreign model: nothing to match against
        return Calibration()
    info = getattr(model, "info", None) or {}
    stored = info.get("calibration")
    if isinstance(stored, dict):
        candidates = [calibration_from(stored)]
    else:  # one of the bundled models? Their calibrations lie beside them.
        folder = Path(str(resources.files("cnnlab") / "models"))
        candidates = [read_calibration(path) for path in sorted(folder.glob(f"*{CALIBRATION_SUFFIX}"))]
    fingerprint = None
    for candidate in candidates:
        if not candidate.weights_sha256:
            return candidate
        fingerprint = fingerprint or weights_fingerprint(model)
        if candidate.weights_sha256 == fingerprint:
            return candidate
    return Calibration()


def not_a_digit_class(model) -> int | None:
    """The index of the model's "not a digit" class (``cnnlab train --non-digits``), or ``None``."""
    from .reject import NOT_A_DIGIT

    names = list(((getattr(model, "info", None) or {}).get("class_names")) or [])
    return names.index(NOT_A_DIGIT) if NOT_A_DIGIT in names else None


def split_off(probabilities: np.ndarray, reject: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(N, K)`` probabilities -> (the digits' ``(N, K - 1)`` renormalized, the "not a digit" ``(N,)``).

    Without a reject class (``reject`` None) the probabilities come back as they are, with zeros."""
    p = np.asarray(probabilities, dtype=np.float64)
    if reject is None:
        return p, np.zeros(len(p))
    digits = np.delete(p, reject, axis=1)
    return digits / np.clip(digits.sum(axis=1, keepdims=True), 1e-30, None), p[:, reject]


def percent(p: float, decimals: int = 0) -> str:
    """``p`` as a percentage that never rounds up to a certainty it does not have: 0.99996 -> ">99.99%"."""
    text = f"{p:.{decimals}%}"
    if p < 1.0 and text.startswith("100"):
        return f">{100 - 10 ** -decimals:.{decimals}f}%"
    return text


def judge(probabilities: np.ndarray, calibration: Calibration,
          reject: int | None = None) -> tuple[np.ndarray, str | None, float]:
    """One picture's ``(K,)`` probabilities -> (calibrated digit probabilities, message or ``None``, the
    calibrated probability of "not a digit").

    ``reject`` is the index of the model's "not a digit" class, if it has one (:func:`not_a_digit_class`):
    the answer is then the other classes, renormalized. The message is set when that class's probability
    is above the calibration's ``max_not_a_digit``, or the digits' top probability under its
    ``min_confidence``.
    """
    scaled, not_a_digit = (a[0] for a in split_off(calibration.scale(np.asarray(probabilities)[None]), reject))
    not_a_digit = float(not_a_digit)
    if not_a_digit > calibration.max_not_a_digit:
        return scaled, (f"not a digit: the network sees no digit here ({percent(not_a_digit)} 'not a digit', above the "
                        f"{calibration.max_not_a_digit:.0%} that nearly no real digit reaches); expected one "
                        "handwritten digit"), not_a_digit
    top = float(scaled.max())
    if top < calibration.min_confidence:
        return scaled, (f"not a digit: the network is unsure ({top:.0%} for {int(scaled.argmax())}, below the "
                        f"{calibration.min_confidence:.0%} that nearly all real digits reach); expected one "
                        "handwritten digit"), not_a_digit
    return scaled, None, not_a_digit
