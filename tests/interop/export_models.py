"""Models for the export tests: every preset with non-trivial BatchNorm statistics, and one model that holds
every layer type and option the exporters translate (asymmetric "same" padding, strides, overlapping
pooling, BatchNorm on images and on vectors, every activation)."""

from __future__ import annotations

import numpy as np

from cnnlab.training.presets import build
from cnnlab.engine.layers import (ELU, AvgPool2D, BatchNorm, Conv2D, Dense, Dropout, Flatten, LeakyReLU, MaxPool2D,
                           ReLU, Sigmoid, Softmax, Tanh)
from cnnlab.engine.model import Sequential

PRESETS = ("mlp", "lenet5", "vgg-mini", "keras-mnist", "cnn-bn")


def randomise_batchnorm(model, seed: int = 0):
    """Give every BatchNorm random gamma, beta and running statistics: freshly built ones are the identity
    (gamma 1, beta 0, mean 0, var 1), and an exporter that dropped them would still pass."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.kind == "BatchNorm":
            n = layer.params["gamma"].shape[0]
            layer.params["gamma"][...] = rng.uniform(0.5, 1.5, n)
            layer.params["beta"][...] = rng.normal(0, 0.2, n)
            layer.buffers["running_mean"][...] = rng.normal(0, 0.2, n)
            layer.buffers["running_var"][...] = rng.uniform(0.5, 2.0, n)
    return model


def preset(name: str, seed: int = 0):
    """A randomly initialised preset for MNIST-shaped input (the MLP keeps its sigmoid outputs)."""
    return randomise_batchnorm(build(name, (1, 28, 28), 10, seed=seed), seed)


def every_layer_model(seed: int = 0, softmax: bool = True):
    """Input (3, 13, 11), not square, so a height/width mix-up shows; each translated option once.

    ``softmax=False`` leaves out the final Softmax, so the logits themselves are compared (a softmax
    squeezes differences in large logits)."""
    layers = [
        Conv2D(8, 3, stride=2, padding=(1, 0)),          # stride 2, padding unequal between H and W
        BatchNorm(), LeakyReLU(0.2),
        Conv2D(8, 4, padding="same", use_bias=False),    # even kernel: 1 zero before, 2 after
        ELU(0.7),
        MaxPool2D(3, stride=1),                          # overlapping windows
        Conv2D(6, (3, 2), padding="same"), Sigmoid(),    # odd x even kernel
        AvgPool2D(2),                                    # floor: a row no window reaches
        Flatten(), Dense(20, use_bias=False), BatchNorm(), Tanh(), Dropout(0.3),
        Dense(12), ReLU(), Dense(5), *([Softmax()] if softmax else []),
    ]
    return randomise_batchnorm(Sequential(layers, (3, 13, 11), seed=seed, name="every-layer"), seed)
