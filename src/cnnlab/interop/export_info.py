"""What an exported model carries besides its weights: preprocessing, class names, architecture.

Shared by the ONNX and PyTorch exporters so both files describe a model the same way. A model read from a
file has these in ``model.info`` (see :mod:`cnnlab.io`); a model built in memory gets the defaults a model
file would get: MNIST preprocessing (pixels · 1/255) and classes ``"0" .. "K-1"``.
"""

from __future__ import annotations


def export_info(model) -> dict:
    """``{"preprocessing": dict, "class_names": [str], "architecture": Sequential.get_config()}``."""
    from ..io import MNIST_PREPROCESSING

    info = getattr(model, "info", None) or {}
    classes = info.get("class_names") or [str(i) for i in range(model.output_shape[-1])]
    return {
        "preprocessing": dict(info.get("preprocessing") or MNIST_PREPROCESSING),
        "class_names": [str(name) for name in classes],
        "architecture": model.get_config(),
    }
