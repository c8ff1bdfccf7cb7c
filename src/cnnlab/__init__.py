"""cnnlab: understand, train, study and use convolutional neural networks.

The engine is written from scratch in NumPy: every layer computes its forward pass and its own gradients.
"""

from .version import __version__  # noqa: F401


#: Layers by name, as ``cnnlab.Conv2D`` (from cnnlab.engine.layers).
_LAYER_NAMES = ("Conv2D", "Dense", "MaxPool2D", "AvgPool2D", "Flatten", "Dropout", "BatchNorm", "ReLU",
                "LeakyReLU", "ELU", "Sigmoid", "Tanh", "Softmax")


def __getattr__(name):
    # The public API, imported lazily so that `import cnnlab` (and the CLI) start fast.
    if name in ("load_model", "save_model", "load_bundled_model"):
        from . import io

        return getattr(io, name)
    if name in ("fit", "evaluate"):
        from .training import loop as train

        return getattr(train, name)
    if name == "build":
        from .training.presets import build

        return build
    if name == "Sequential":
        from .engine.model import Sequential

        return Sequential
    if name in _LAYER_NAMES:
        from .engine import layers

        return getattr(layers, name)
    if name in ("load_dataset",):
        from .data import load_dataset

        return load_dataset
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
