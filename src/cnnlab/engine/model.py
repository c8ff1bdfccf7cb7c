"""``Sequential``: layers applied one after another, trained by backpropagation.

Backpropagation in one paragraph: the forward pass computes every layer's output from its input; the
loss compares the last output with the target; the backward pass walks the layers in reverse, each
turning dL/d(its output) into dL/d(its input) and, on the way, dL/d(its parameters). The optimizer then
moves every parameter a little against its gradient. Each layer knows its own derivative, so the model
only has to call them in the right order.
"""

from __future__ import annotations

import numpy as np

from .backend import DEFAULT_DTYPE, array_module, make_rng
from .errors import ConfigError, ShapeError
from .layers import LAYER_TYPES, Layer

#: The most parameters a model may have (268 M, 1 GiB in float32): a typo such as ``mlp:784-1000000000-10``
#: or a hostile model file is refused with a clear error instead of an allocation of terabytes.
MAX_PARAMETERS = 1 << 28


class Sequential:
    """A stack of layers built for one per-sample input shape.

    Parameters
    ----------
    layers:
        Unbuilt layer objects, applied in order.
    input_shape:
        Shape of one sample, without the batch axis: ``(1, 28, 28)`` for MNIST, ``(784,)`` for an MLP.
    seed:
        Seed (or ``numpy.random.Generator``) for the initial weights and any layer randomness (dropout).
    dtype:
        Parameter dtype: float32 (default, fast) or float64 (gradient checks).

    The model is serial: one training step is forward, loss, backward, update, layer after layer. Training
    on several cores at once wraps it (:class:`cnnlab.data_parallel.DataParallel`); nothing here knows.
    """

    def __init__(self, layers: list[Layer], input_shape, seed=0, dtype=DEFAULT_DTYPE, name: str = "model"):
        if not layers:
            raise ConfigError("a Sequential model needs at least one layer, received none")
        self.layers = list(layers)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.dtype = np.dtype(dtype)
        self.name = name
        rng = make_rng(seed)
        shape = self.input_shape
        total = 0
        for index, layer in enumerate(self.layers):
            if layer.name is None:
                layer.name = f"{layer.kind.lower()}_{index}"
            total += sum(int(np.prod(s, dtype=np.float64)) for s in layer.state_shapes(shape).values())
            if total > MAX_PARAMETERS:  # checked before the layer allocates anything
                raise ConfigError(f"{layer.describe()}: the model would have more than {MAX_PARAMETERS:,} "
                                  f"parameters ({total:,} up to this layer); check the layer sizes")
            shape = layer.build(shape, rng, dtype=self.dtype)
        self.output_shape = shape
        # The first layer's input is the data: nobody needs its gradient, and for a convolution it is the
        # most expensive part of the backward pass (a whole col2im), so we skip it.
        self.layers[0].needs_input_grad = False

    # -- structure ----------------------------------------------------------------------------------
    def parameters(self):
        """Yield ``(dotted_name, layer, key)`` for every trainable parameter, e.g. ``("layers.0.W", conv, "W")``."""
        for index, layer in enumerate(self.layers):
            for key in layer.params:
                yield f"layers.{index}.{key}", layer, key

    def parameters_and_grads(self):
        """``[(dotted_name, parameter, its gradient, decayed?)]``: what an optimizer step needs."""
        return [(name, layer.params[key], layer.grads[key], key in layer.regularized)
                for name, layer, key in self.parameters()]

    @property
    def n_params(self) -> int:
        return sum(layer.n_params for layer in self.layers)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every array that defines the model: parameters and buffers (BatchNorm's running statistics)."""
        state = {}
        for index, layer in enumerate(self.layers):
            for key, value in layer.params.items():
                state[f"layers.{index}.{key}"] = value
            for key, value in getattr(layer, "buffers", {}).items():
                state[f"layers.{index}.{key}"] = value
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy arrays into the model. Strict: every name must be present, with the same shape, and no extra."""
        expected = self.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ShapeError(f"state does not match the model: missing {missing}, unexpected {unexpected}")
        for name, target in expected.items():
            value = np.asarray(state[name])
            if value.shape != target.shape:
                raise ShapeError(f"{name}: expected shape {target.shape}, received {value.shape}")
            target[...] = value

    def get_config(self) -> dict:
        """JSON-serialisable description from which :func:`from_config` rebuilds the same architecture."""
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "layers": [{"type": layer.kind, "name": layer.name, "config": layer.get_config()}
                       for layer in self.layers],
        }

    @classmethod
    def from_config(cls, config: dict, seed=0, dtype=DEFAULT_DTYPE) -> "Sequential":
        layers = []
        for spec in config["layers"]:
            kind = spec["type"]
            if kind not in LAYER_TYPES:
                raise ConfigError(f"unknown layer type {kind!r}; expected one of {sorted(LAYER_TYPES)}")
            layer = LAYER_TYPES[kind](**spec.get("config", {}))
            layer.name = spec.get("name")
            layers.append(layer)
        return cls(layers, config["input_shape"], seed=seed, dtype=dtype, name=config.get("name", "model"))

    # -- computation --------------------------------------------------------------------------------
    def prepare_input(self, x):
        xp = array_module(x)
        if not xp.issubdtype(x.dtype, xp.floating):
            raise ShapeError(
                f"model input must be floating point (pixels scaled to [0, 1]), received dtype {x.dtype}")
        if tuple(x.shape[1:]) != self.input_shape:
            raise ShapeError(
                f"model input: expected shape (N, {', '.join(map(str, self.input_shape))}), "
                f"received {tuple(x.shape)}")
        return x.astype(self.dtype, copy=False)

    def forward(self, x, training: bool = False, stop: int | None = None, keep_cache: bool = False):
        """Run layers ``0 .. stop-1`` (all by default). Inference mode caches nothing, unless
        ``keep_cache``: then :meth:`backward` can follow (the gradients of the inference network)."""
        out = self.prepare_input(x)
        for layer in self.layers[:stop]:
            out = layer.forward(out, training=training, keep_cache=keep_cache)
        return out

    def backward(self, grad, stop: int | None = None):
        """Backpropagate dL/d(output of layer ``stop-1``) through layers ``stop-1 .. 0``; fills ``layer.grads``."""
        for layer in reversed(self.layers[:stop]):
            grad = layer.backward(grad)
        return grad

    def fused_stop(self, loss) -> int | None:
        """Where training stops the forward pass: before a final Softmax/Sigmoid the loss fuses with.

        Softmax followed by cross-entropy has the famously simple gradient ``p − y`` with respect to the
        logits (sigmoid + binary cross-entropy: ``a − y``). Computing it directly is both faster and
        numerically safer than multiplying the loss's gradient by the activation's Jacobian.
        """
        fused = getattr(loss, "fused_activation", None)
        if fused is not None and self.layers[-1].kind == fused:
            return len(self.layers) - 1
        return None

    def loss_and_output(self, x, y, loss, training: bool = False):
        """(mean loss, network output or fused logits) for a batch — used by training and evaluation."""
        stop = self.fused_stop(loss)
        out = self.forward(x, training=training, stop=stop)
        return loss.value(out, y, from_logits=stop is not None), out

    def compute_gradients(self, x, y, loss, grad_scale: float = 1.0) -> tuple[float, np.ndarray]:
        """Forward pass (training mode), loss, backward pass: fills every ``layer.grads``.

        ``x`` ``(N, *input_shape)``, ``y`` labels ``(N,)`` or targets ``(N, K)``. Returns ``(mean loss,
        output)``, the output being the logits when the loss fuses with the last activation.
        ``grad_scale`` multiplies the loss gradient (and so every gradient): a part of a larger batch
        passes its share ``N / N_total`` (see :mod:`cnnlab.data_parallel`).
        """
        stop = self.fused_stop(loss)
        out = self.forward(x, training=True, stop=stop)
        value, grad = loss.value_and_grad(out, y, from_logits=stop is not None)
        grad = grad.astype(self.dtype, copy=False)
        if grad_scale != 1.0:
            grad = grad * self.dtype.type(grad_scale)
        self.backward(grad, stop=stop)
        return float(value), out

    def train_step(self, x, y, loss, optimizer) -> tuple[float, np.ndarray]:
        """One step of mini-batch gradient descent; returns (batch loss, output or logits of the batch).

        The output lets the caller count training accuracy without a second forward pass (the argmax of
        the logits is the argmax of the probabilities).
        """
        value, out = self.compute_gradients(x, y, loss)
        optimizer.step(self.parameters_and_grads())
        return value, out

    def predict_proba(self, x, batch_size: int = 256) -> np.ndarray:
        """Network outputs for ``x`` (probabilities when the model ends with Softmax), in batches.

        Batches of 256 keep the work arrays small (a 3x3 convolution's columns take 9x its input) and are
        as fast as larger ones.
        """
        x = self.prepare_input(x)
        xp = array_module(x)
        return xp.concatenate([self.forward(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])

    def predict(self, x, batch_size: int = 256) -> np.ndarray:
        """Predicted class index for every sample, shape ``(N,)``."""
        return self.predict_proba(x, batch_size).argmax(axis=1)

    def feature_maps(self, x) -> list[tuple[str, np.ndarray]]:
        """Activations after each convolution block, ``[(layer_name, (N, C, H, W)), ...]``.

        We report the output of the activation that follows a Conv2D (what the next layer sees) or the
        convolution itself when no activation follows.
        """
        maps = []
        out = self.prepare_input(x)
        pending = None
        for layer in self.layers:
            out = layer.forward(out)
            if layer.kind == "Conv2D":
                if pending is not None:
                    maps.append(pending)
                pending = (layer.name, out)
            elif pending is not None:
                if out.ndim == 4 and layer.kind in ("ReLU", "LeakyReLU", "ELU", "Sigmoid", "Tanh", "BatchNorm"):
                    pending = (pending[0], out)
                else:
                    maps.append(pending)
                    pending = None
        if pending is not None:
            maps.append(pending)
        return maps

    # -- display ------------------------------------------------------------------------------------
    def summary(self) -> str:
        """Keras-like table: layer, output shape, parameter count; totals at the bottom."""
        rows = [(f"{layer.name} ({layer.kind})", str((None, *layer.output_shape)), f"{layer.n_params:,}")
                for layer in self.layers]
        header = ("Layer (type)", "Output Shape", "Param #")
        widths = [max(len(r[i]) for r in [header, *rows]) + 2 for i in range(3)]
        line = "=" * sum(widths)

        def fmt(r):
            return f"{r[0]:<{widths[0]}}{r[1]:<{widths[1]}}{r[2]:>{widths[2]}}"

        trainable = self.n_params
        buffers = sum(b.size for layer in self.layers for b in getattr(layer, "buffers", {}).values())
        return "\n".join([
            f'Model: "{self.name}"  input (None, {", ".join(map(str, self.input_shape))})',
            line, fmt(header), line, *map(fmt, rows), line,
            f"Total params: {trainable:,}",
            f"Trainable params: {trainable:,}",
            f"Non-trainable (running statistics): {buffers:,}",
        ])

    def _repr_html_(self) -> str:
        """The summary as an HTML table (Jupyter shows it for a model at the end of a cell)."""
        from .summary import summary_html

        return summary_html(self)

    # -- the workflow, as methods (thin wrappers, so a notebook reads like Keras) ---------------------
    # These two are the engine's only imports from above it (the import contract allows exactly them).
    # Saving is a free function, cnnlab.save_model(model, path): model files are io's business.
    def fit(self, train_data, val_data=None, **options):
        """Train this model; see :func:`cnnlab.training.loop.fit` for the options. Returns a ``History``."""
        from ..training.loop import fit

        return fit(self, train_data, val_data, **options)

    def evaluate(self, dataset, **options):
        """Accuracy, per-class accuracy and confusion matrix; see :func:`cnnlab.training.loop.evaluate`."""
        from ..training.loop import evaluate

        return evaluate(self, dataset, **options)

    def __repr__(self) -> str:
        return f"Sequential({self.name!r}, {len(self.layers)} layers, {self.n_params:,} params)"
