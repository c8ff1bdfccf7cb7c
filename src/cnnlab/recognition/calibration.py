"""Calibrated confidence and the model's own "not a digit": temperature scaling and a threshold.

The top probability, after dividing the logits by a temperature T fitted on held-out MNIST digits, below a
threshold chosen so that only a stated small share of real digits is turned away
(``scripts/calibrate_recognition.py``). A calibration is tied to the weights it was fitted for by their
SHA-256, so a retrained or replaced model is never judged with another model's numbers.
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


def bundled_calibration_path() -> Path:
    from ..io import BUNDLED_MODEL

    return Path(str(resources.files("cnnlab") / "models")) / (Path(BUNDLED_MODEL).stem + CALIBRATION_SUFFIX)


def read_calibration(path: Path) -> Calibration:
    data = json.loads(Path(path).read_text())
    return Calibration(float(data["temperature"]), float(data["min_confidence"]), str(data.get("weights_sha256", "")),
                       str(data.get("note", "")))


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
        candidate = Calibration(float(stored["temperature"]), float(stored["min_confidence"]),
                                str(stored.get("weights_sha256", "")))
    else:
        path = bundled_calibration_path()
        if not path.is_file():
            return Calibration()
        candidate = read_calibration(path)
    if candidate.weights_sha256 and candidate.weights_sha256 != weights_fingerprint(model):
        return Calibration()
    return candidate


def judge(probabilities: np.ndarray, calibration: Calibration) -> tuple[np.ndarray, str | None]:
    """One picture's ``(K,)`` probabilities -> (calibrated probabilities, message or ``None``).

    The message is set when the calibrated top probability is under the calibration's threshold.
    """
    scaled = calibration.scale(np.asarray(probabilities)[None])[0]
    top = float(scaled.max())
    if top < calibration.min_confidence:
        return scaled, (f"not a digit: the network is unsure ({top:.0%} for {int(scaled.argmax())}, below the "
                        f"{calibration.min_confidence:.0%} that nearly all real digits reach); expected one "
                        "handwritten digit")
    return scaled, None
