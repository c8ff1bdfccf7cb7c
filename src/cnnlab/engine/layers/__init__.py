"""Layers: each computes its forward pass and its own backward pass (see :mod:`cnnlab.engine.layers.base`)."""

from .activations import ELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .base import Layer
from .conv import Conv2D
from .dense import Dense
from .dropout import Dropout
from .normalization import BatchNorm
from .pooling import AvgPool2D, MaxPool2D
from .reshape import Flatten

#: Layer classes by name, used to rebuild a model from its JSON description.
LAYER_TYPES: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (Conv2D, MaxPool2D, AvgPool2D, Dense, Flatten, Dropout, BatchNorm,
                ReLU, LeakyReLU, ELU, Sigmoid, Tanh, Softmax)
}

__all__ = ["Layer", "LAYER_TYPES", *LAYER_TYPES]
