"""Picture in, JSON-ready answer out: what ``POST /api/predict`` and ``cnnlab predict --json`` return.

No web framework here, so the command line and the server give the same answer for the same picture.
:class:`Recognizer` wraps a model with a lock: one inference at a time, whatever the number of threads
asking (the layers cache nothing in inference mode, but a lock makes that a guarantee rather than a
promise kept by every layer; LeNet-5 answers in about a millisecond, so the lock costs little).
"""

from __future__ import annotations

import base64
import contextlib
import threading

import numpy as np

from ...data.normalize import normalize
from ...explain import grad_cam, saliency
from ...engine.errors import ConfigError
from ...threads import one_blas_thread
from ..paper import WORK_SIDE
from ..picture import prepare_resized, uses_resize
from ..preprocess import NoDigitError, as_batch, load_image, prepare_digit, thins_strokes, to_png_bytes
from ..calibration import calibration_for, judge, not_a_digit_class, split_off
from ..segment import read_number
from .decode import decode_picture

NO_DIGIT_MESSAGE = "no digit found"


def png_data_url(array: np.ndarray, scale: int = 1) -> str:
    """``(H, W)`` array in ``[0, 1]`` -> ``"data:image/png;base64,..."`` (shown by the page as is)."""
    return "data:image/png;base64," + base64.b64encode(to_png_bytes(array, scale)).decode("ascii")


def top_k(probabilities: np.ndarray, k: int) -> list[dict]:
    """The ``k`` most likely classes, most likely first: ``[{"label": 7, "probability": 0.98}, ...]``."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [{"label": int(i), "probability": round(float(probabilities[i]), 6)} for i in order]


def model_inputs(model, digits: np.ndarray) -> np.ndarray:
    """``(N, 28, 28)`` pixels/255 -> the network's input, applying the mean/std stored with the model."""
    return normalize(as_batch(digits), (getattr(model, "info", None) or {}).get("preprocessing"))


def feature_map_images(maps: list[tuple[str, np.ndarray]], max_channels: int = 32) -> list[dict]:
    """Feature maps of one picture -> ``[{"layer", "shape", "channels": [PNG data URLs]}]``.

    Every channel of a layer is scaled by the same maximum, so a channel that barely reacts to this
    drawing looks dark next to one that fires strongly (per-channel scaling would hide that).
    """
    out = []
    for name, activations in maps:
        channels = np.asarray(activations[0], dtype=np.float32)[:max_channels]  # (C, H, W), first picture
        low = min(float(channels.min()), 0.0)
        span = max(float(channels.max()) - low, 1e-6)
        out.append(
            {
                "layer": name,
                "shape": list(np.asarray(activations).shape[1:]),
                "channels": [png_data_url((c - low) / span) for c in channels],
            }
        )
    return out


def _is_jpeg(source) -> bool:
    """True when ``source`` (bytes, a path or a PIL image) holds a JPEG (its first three bytes say so)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source[:3]) == b"\xff\xd8\xff"
    if hasattr(source, "format"):  # a PIL image
        return source.format == "JPEG"
    try:
        with open(source, "rb") as handle:
            return handle.read(3) == b"\xff\xd8\xff"
    except (OSError, TypeError, ValueError):
        return False


def heat_overlay_url(heat: np.ndarray, size: int = 112) -> str:
    """``(H, W)`` heat in ``[0, 1]`` -> a PNG data URL of a translucent colour map (transparent where the
    heat is 0), ``size`` pixels square, to lay over the picture the network saw."""
    import io

    from matplotlib import colormaps
    from PIL import Image

    rgba = colormaps["jet"](np.clip(heat, 0, 1))
    rgba[..., 3] = 0.65 * np.clip(heat, 0, 1) ** 0.7  # faint where the evidence is weak
    image = Image.fromarray((rgba * 255).astype(np.uint8), "RGBA").resize((size, size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def no_answer(message: str, *, number: bool, features: bool, explain: bool) -> dict:
    """The answer for a picture with no digit in it: every field there, empty, and the reason."""
    result = {"prediction": None, "top_k": [], "probabilities": None, "processed": None, "message": message}
    if number:
        result.update({"number": None, "digits": []})
    if features:
        result["feature_maps"] = []
    if explain:
        result["explanation"] = None
    return result


class Recognizer:
    """A model, a lock, and the answers in the API's JSON shape."""

    def __init__(self, model, top_k: int = 5):
        self.model = model
        self.top_k = top_k
        self.lock = threading.Lock()
        self.calibration = calibration_for(model)  # temperature and "not a digit" threshold, if calibrated
        self.reject_class = not_a_digit_class(model)  # a model trained with a "not a digit" class, or None
        info = getattr(model, "info", None) or {}
        self.preprocessing = info.get("preprocessing") or {}
        self.class_names = list(info.get("class_names") or [])
        self.whole_picture = uses_resize(self.preprocessing)  # clothes, photos: no digit pipeline
        self.thin_fat_strokes = thins_strokes(self.preprocessing)  # fat strokes narrowed unless trained on them

    @contextlib.contextmanager
    def model_turn(self):
        """The model to oneself, with BLAS on one thread: a picture or a few are small products, and
        OpenBLAS splitting them over threads that must wait for a busy core made one answer of the
        bundled cnn-bn take 13-64 ms instead of 4-6 ms on a loaded 2-core machine (measured 2026-12-02)."""
        with self.lock, one_blas_thread():
            yield

    def probabilities(self, digits: np.ndarray) -> np.ndarray:
        """``(N, 28, 28)`` prepared digits -> ``(N, K)`` probabilities."""
        with self.model_turn():
            return np.asarray(self.model.predict_proba(model_inputs(self.model, digits)), dtype=np.float64)

    def explanation(self, digit: np.ndarray, label: int) -> dict:
        """What made the model answer ``label`` for the prepared ``digit`` ``(28, 28)``: Grad-CAM on its last
        convolution block (saliency for a model without one), as a heat-map overlay (see cnnlab.explain)."""
        x = model_inputs(self.model, digit[None])
        with self.model_turn():
            if any(layer.kind == "Conv2D" for layer in self.model.layers):
                cam = grad_cam(self.model, x, label)
                heat, method, layer = cam.upsampled(digit.shape)[0], "grad-cam", cam.layer
            else:
                raw = saliency(self.model, x, label)[0].reshape(digit.shape)
                heat, method, layer = raw / max(float(raw.max()), 1e-12), "saliency", None
        return {"label": int(label), "method": method, "layer": layer, "heatmap": heat_overlay_url(heat)}

    def name_classes(self, result: dict) -> dict:
        """Add the class names stored with the model: ``class_name`` and a ``name`` per top-k entry."""
        if self.class_names and result.get("prediction") is not None:
            result["class_name"] = self.class_names[result["prediction"]]
            for entry in result["top_k"]:
                entry["name"] = self.class_names[entry["label"]]
        return result

    def recognize_whole(self, picture, *, features: bool = False, explain: bool = False, k: int) -> dict:
        """The answer of a whole-picture model (Fashion-MNIST, CIFAR-10): resized, no digit checks."""
        x = prepare_resized(picture, self.preprocessing, self.model.input_shape)  # (C, H, W) in [0, 1]
        inputs = normalize(x[None], self.preprocessing)
        with self.model_turn():
            p = np.asarray(self.model.predict_proba(inputs), dtype=np.float64)[0]
        shown = x[0] if x.shape[0] == 1 else x.transpose(1, 2, 0)
        result = {"prediction": int(p.argmax()), "top_k": top_k(p, k), "probabilities": [round(float(v), 6) for v in p],
                  "processed": png_data_url(shown)}
        if features:
            with self.model_turn():
                result["feature_maps"] = feature_map_images(self.model.feature_maps(inputs))
        if explain:
            with self.model_turn():
                cam = grad_cam(self.model, inputs, result["prediction"])
            result["explanation"] = {"label": result["prediction"], "method": "grad-cam", "layer": cam.layer,
                                     "heatmap": heat_overlay_url(cam.upsampled(x.shape[1:])[0])}
        return self.name_classes(result)

    def recognize(self, picture, *, number: bool = False, features: bool = False, explain: bool = False,
                  k: int | None = None) -> dict:
        """The JSON answer for one picture (path, bytes or PIL image).

        A blank picture is not an error: ``prediction`` is ``None`` and ``message`` says "no digit found"
        (a page that predicts while you draw sees blank canvases all the time). Unreadable pictures raise
        :class:`~cnnlab.recognition.preprocess.ImageError`.
        """
        k = self.top_k if k is None else k
        if self.whole_picture:
            if number:
                raise ConfigError("this model reads whole pictures (its training data was not digits): "
                                  "reading a number needs a digit model")
            return self.recognize_whole(picture, features=features, explain=explain, k=k)
        # Decoded once, in colour (colour tells printed rulings from ink). A photo (JPEG) for one digit is
        # decoded at a reduced scale inside the decoder, as the photo steps were tuned on; anything else,
        # and numbers, within a pixel budget (a 25-megapixel PNG must not cost a gigabyte).
        if not number and _is_jpeg(picture):
            picture = load_image(picture, mode="RGB", max_side=WORK_SIDE)
        else:
            picture = decode_picture(picture, mode="RGB")
        try:
            digit = prepare_digit(picture, single=not number, thin_fat_strokes=self.thin_fat_strokes)
            p, doubt, not_a_digit = judge(self.probabilities(digit[None])[0], self.calibration, self.reject_class)
            if doubt is not None and not number:
                raise NoDigitError(doubt)
        except NoDigitError as exc:
            return no_answer(str(exc), number=number, features=features, explain=explain)
        result = {
            "prediction": int(p.argmax()),
            "top_k": top_k(p, k),
            "probabilities": [round(float(v), 6) for v in p],
            "processed": png_data_url(digit),
        }
        if self.reject_class is not None:
            result["not_a_digit"] = round(not_a_digit, 6)
        if features:
            with self.model_turn():
                maps = self.model.feature_maps(model_inputs(self.model, digit[None]))
            result["feature_maps"] = feature_map_images(maps)
        if explain:
            result["explanation"] = self.explanation(digit, result["prediction"])
        if number:
            try:
                result.update(self.read_number(picture, k))
            except NoDigitError as exc:  # ink the one-mark steps took, but no digit to cut out of it
                return no_answer(str(exc), number=number, features=features, explain=explain)
        return self.name_classes(result)

    def read_number(self, picture, k: int) -> dict:
        """``{"number": "504192", "digits": [{"label", "probability", "top_k", "box", "processed"}]}``."""

        def digit_probabilities(x):  # the ten digits' probabilities, without a "not a digit" class
            return split_off(self.calibration.scale(self.probabilities(x[:, 0])), self.reject_class)[0]

        class LockedModel:  # read_number calls predict_proba once, with every digit in one batch
            predict_proba = staticmethod(digit_probabilities)

        reading = read_number(LockedModel(), picture, self.thin_fat_strokes)
        return {
            "number": reading.text,
            "digits": [
                {
                    "label": d.label,
                    "probability": round(d.confidence, 6),
                    "top_k": top_k(d.probabilities, k),
                    "box": list(d.box),
                    "processed": png_data_url(d.image),
                }
                for d in reading.digits
            ],
        }
