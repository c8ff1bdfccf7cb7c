"""Named network presets, used by every command (``--arch lenet5``).

Each preset is a function returning a list of unbuilt layers for a given input shape and number of
classes; :func:`build` turns it into a :class:`~cnnlab.engine.model.Sequential`. Presets take a few options so
that studies can vary them (``activation="relu"``, ``pooling="max"``), and every classifier ends with a
``Softmax`` layer: training fuses it with the cross-entropy loss, ``predict_proba`` returns probabilities.

=============  ======================================================================  ==========
name           layers                                                                  MNIST params
=============  ======================================================================  ==========
mlp            Dense 30 → sigmoid → Dense 10 → sigmoid (sizes configurable)            23,860
lenet5         conv 6@5x5 pad 2 → tanh → avgpool 2 → conv 16@5x5 → tanh → avgpool 2    61,706
               → dense 120 → tanh → dense 84 → tanh → dense 10
vgg-mini       (conv 16@3x3 → relu) x2 → maxpool → (conv 32@3x3 → relu) x2 → maxpool    218,490
               → dense 128 → relu → dense 10
keras-mnist    conv 32@3x3 relu → maxpool → conv 64@3x3 relu → maxpool → dropout 0.5   34,826
               → dense 10 (the Keras example's "simple MNIST convnet")
cnn-bn         (conv 32@3x3 → BN → relu) x2 → maxpool → (conv 64@3x3 → BN → relu) x2     
               → maxpool → dense 256 → BN → relu → dropout 0.4 → dense 10 (aimed at ≥ 99.6%)
course-cnn     (conv 16@3x3 → relu) x2 → maxpool → (conv 32@3x3 → relu) x2 → maxpool    83,322
               → dense 128 → sigmoid → dense 10 → sigmoid; valid convolutions, weights
               U(-0.1, 0.1), dense biases 0.1 (the from-scratch course network)
=============  ======================================================================  ==========
"""

from __future__ import annotations

from ..engine.backend import DEFAULT_DTYPE
from ..engine.errors import ConfigError
from ..engine.layers import ELU, AvgPool2D, BatchNorm, Conv2D, Dense, Dropout, Flatten, LeakyReLU, MaxPool2D, ReLU, Sigmoid, Softmax, Tanh
from ..engine.model import Sequential

ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid, "elu": ELU, "leaky-relu": LeakyReLU}
POOLING = {"max": MaxPool2D, "avg": AvgPool2D}


def _activation(name: str):
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ConfigError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}") from None


def _pool(name: str, size: int = 2):
    try:
        return POOLING[name](size)
    except KeyError:
        raise ConfigError(f"unknown pooling {name!r}; expected one of {sorted(POOLING)}") from None


def _default_init(activation: str) -> str:
    # He initialisation keeps ReLU activations' variance constant layer to layer; Glorot does so for
    # the symmetric saturating ones (tanh, sigmoid).
    return "he" if activation in ("relu", "elu", "leaky-relu") else "glorot"


def mlp(input_shape, num_classes=10, sizes=(30,), activation="sigmoid", output="sigmoid", init="default"):
    """Fully connected network (Nielsen's ``[784, 30, 10]`` is ``sizes=(30,)``).

    ``output="sigmoid"`` gives the classic sigmoid output units (for the quadratic and binary
    cross-entropy costs); ``output="softmax"`` a softmax output for the softmax cross-entropy.
    """
    # Nielsen draws the biases from N(0, 1) with either weight initialisation; so do we.
    layers = [Flatten()] if len(input_shape) > 1 else []
    for units in sizes:
        layers += [Dense(units, kernel_initializer=init, bias_initializer="large"), _activation(activation)]
    layers += [Dense(num_classes, kernel_initializer=init, bias_initializer="large"),
               Softmax() if output == "softmax" else Sigmoid()]
    return layers


def lenet5(input_shape, num_classes=10, activation="tanh", pooling="avg", init=None):
    """LeNet-5 (LeCun et al. 1998) as usually written today: padding 2 instead of 32x32 inputs."""
    init = init or _default_init(activation)
    return [
        Conv2D(6, 5, padding=2, kernel_initializer=init), _activation(activation), _pool(pooling),
        Conv2D(16, 5, kernel_initializer=init), _activation(activation), _pool(pooling),
        Flatten(),
        Dense(120, kernel_initializer=init), _activation(activation),
        Dense(84, kernel_initializer=init), _activation(activation),
        Dense(num_classes, kernel_initializer=init), Softmax(),
    ]


def vgg_mini(input_shape, num_classes=10, activation="relu", pooling="max", init=None, conv_layers=4):
    """Small VGG: blocks of two 3x3 'same' convolutions then a 2x2 pooling.

    ``conv_layers`` (2, 4 or 6) sets how many convolutions: 16, 16 | 32, 32 | 64, 64 filters per block.
    """
    if conv_layers not in (2, 4, 6):
        raise ConfigError(f"vgg-mini: conv_layers must be 2, 4 or 6, received {conv_layers!r}")
    init = init or _default_init(activation)
    layers = []
    for filters in (16, 32, 64)[: conv_layers // 2]:
        layers += [Conv2D(filters, 3, padding="same", kernel_initializer=init), _activation(activation),
                   Conv2D(filters, 3, padding="same", kernel_initializer=init), _activation(activation),
                   _pool(pooling)]
    layers += [Flatten(), Dense(128, kernel_initializer=init), _activation(activation),
               Dense(num_classes, kernel_initializer=init), Softmax()]
    return layers


def keras_mnist(input_shape, num_classes=10, activation="relu", pooling="max", init="glorot", dropout=0.5):
    """The Keras example "Simple MNIST convnet" (34,826 parameters on MNIST)."""
    return [
        Conv2D(32, 3, kernel_initializer=init), _activation(activation), _pool(pooling),
        Conv2D(64, 3, kernel_initializer=init), _activation(activation), _pool(pooling),
        Flatten(), Dropout(dropout),
        Dense(num_classes, kernel_initializer=init), Softmax(),
    ]


def cnn_bn(input_shape, num_classes=10, activation="relu", pooling="max", init=None, dropout=0.4):
    """A stronger preset: VGG-style blocks with batch normalisation, aimed at ≥ 99.6% on MNIST."""
    init = init or _default_init(activation)
    layers = []
    for filters in (32, 64):
        for _ in range(2):
            layers += [Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer=init),
                       BatchNorm(), _activation(activation)]
        layers.append(_pool(pooling))
    layers += [Flatten(), Dense(256, use_bias=False, kernel_initializer=init), BatchNorm(),
               _activation(activation), Dropout(dropout),
               Dense(num_classes, kernel_initializer=init), Softmax()]
    return layers


def course_cnn(input_shape, num_classes=10, activation="relu", pooling="max", init="uniform"):
    """The from-scratch course CNN: valid 3x3 convolutions, sigmoid dense layers, every weight and conv bias
    from U(-0.1, 0.1) and the dense biases 0.1, as its text gives them (train it with the quadratic cost)."""
    layers = []
    for filters in (16, 32):
        layers += [Conv2D(filters, 3, kernel_initializer=init, bias_initializer=init), _activation(activation),
                   Conv2D(filters, 3, kernel_initializer=init, bias_initializer=init), _activation(activation),
                   _pool(pooling)]
    layers += [Flatten(), Dense(128, kernel_initializer=init, bias_initializer="constant:0.1"), Sigmoid(),
               Dense(num_classes, kernel_initializer=init, bias_initializer="constant:0.1"), Sigmoid()]
    return layers


PRESETS = {
    "mlp": mlp,
    "lenet5": lenet5,
    "vgg-mini": vgg_mini,
    "keras-mnist": keras_mnist,
    "cnn-bn": cnn_bn,
    "course-cnn": course_cnn,
}


def parse_arch(spec: str) -> tuple[str, dict]:
    """``"mlp:784-100-10"`` -> ``("mlp", {"sizes": (100,)})``; other names pass through unchanged.

    The MLP shorthand lists every layer size, as Nielsen writes ``Network([784, 30, 10])``; the first
    and last numbers must match the data and are checked by :func:`build`.
    """
    name, _, arg = spec.partition(":")
    if not arg:
        return name, {}
    if name != "mlp":
        raise ConfigError(f"only 'mlp' takes sizes after ':', received {spec!r}")
    try:
        sizes = [int(s) for s in arg.replace(",", "-").split("-")]
    except ValueError:
        raise ConfigError(f"mlp sizes must be integers like 'mlp:784-30-10', received {spec!r}") from None
    if len(sizes) < 2:
        raise ConfigError(f"mlp needs at least input and output sizes like 'mlp:784-30-10', received {spec!r}")
    return name, {"sizes": tuple(sizes[1:-1]), "_io": (sizes[0], sizes[-1])}


def build(arch: str, input_shape=(1, 28, 28), num_classes: int = 10, seed=0, dtype=DEFAULT_DTYPE,
          **options) -> Sequential:
    """Build a named preset for data of ``input_shape`` (per sample) with ``num_classes`` outputs."""
    name, parsed = parse_arch(arch)
    if name not in PRESETS:
        raise ConfigError(f"unknown architecture {arch!r}; expected one of: {', '.join(PRESETS)}")
    io = parsed.pop("_io", None)
    if io is not None:
        n_in = 1
        for d in input_shape:
            n_in *= int(d)
        if io != (n_in, num_classes):
            raise ConfigError(f"{arch}: sizes must start with {n_in} inputs and end with {num_classes} classes "
                              f"for this data, received {io[0]} and {io[1]}")
    options = {**parsed, **{k: v for k, v in options.items() if v is not None}}
    try:
        layers = PRESETS[name](tuple(input_shape), num_classes, **options)
    except TypeError as exc:
        raise ConfigError(f"{name}: unsupported option ({exc})") from None
    return Sequential(layers, input_shape, seed=seed, dtype=dtype, name=arch)
