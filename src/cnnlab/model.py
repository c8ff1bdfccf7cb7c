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
    threads:
        CPU threads a training step may use: ``None`` (default) means ``$CNNLAB_THREADS`` if set, else
        every core this process may run on; ``1`` the plain serial step. With more than one, :meth:`train_step` splits each batch into shards
        trained at once (see :mod:`cnnlab.parallel`) when the model allows it; the result is the same.
    """

    def __init__(self, layers: list[Layer], input_shape, seed=0, dtype=DEFAULT_DTYPE, name: str = "model",
                 threads: int | None = None):
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
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads must be a positive integer or None, received {threads!r}")
        self.threads = threads
        self._sharded = None  # the parallel step's layer replicas, built on first use

    # -- structure ----------------------------------------------------------------------------------
    def parameters(self):
        """Yield ``(dotted_name, layer, key)`` for every trainable parameter, e.g. ``("layers.0.W", conv, "W")``."""
        for index, layer in enumerate(self.layers):
            for key in layer.params:
                yield f"layers.{index}.{key}", layer, key

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
    def _check_batch(self, x):
        xp = array_module(x)
        if not xp.issubdtype(x.dtype, xp.floating):
            raise ShapeError(
                f"model input must be floating point (pixels scaled to [0, 1]), received dtype {x.dtype}")
        if tuple(x.shape[1:]) != self.input_shape:
            raise ShapeError(
                f"model input: expected shape (N, {', '.join(map(str, self.input_shape))}), "
                f"received {tuple(x.shape)}")
        return x.astype(self.dtype, copy=False)

    def forward(self, x, training: bool = False, stop: int | None = None):
        """Run layers ``0 .. stop-1`` (all by default). Inference mode caches nothing."""
        out = self._check_batch(x)
        for layer in self.layers[:stop]:
            out = layer.forward(out, training=training)
        return out

    def backward(self, grad, stop: int | None = None):
        """Backpropagate dL/d(output of layer ``stop-1``) through layers ``stop-1 .. 0``; fills ``layer.grads``."""
        for layer in reversed(self.layers[:stop]):
            grad = layer.backward(grad)
        return grad

    def _fused_stop(self, loss) -> int | None:
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
        stop = self._fused_stop(loss)
        out = self.forward(x, training=training, stop=stop)
        value = loss.forward_from_logits(out, y) if stop is not None else loss.forward(out, y)
        return value, out

    def train_step(self, x, y, loss, optimizer) -> tuple[float, np.ndarray]:
        """One step of mini-batch gradient descent; returns (batch loss, output or logits of the batch).

        The output lets the caller count training accuracy without a second forward pass (the argmax of
        the logits is the argmax of the probabilities).
        """
        stop = self._fused_stop(loss)
        sharded = self._sharded_step(x)
        if sharded is not None:  # the same gradients, computed on shards of the batch by several threads
            value, out = sharded.gradients(self._check_batch(x), y, loss, stop)
        else:
            out = self.forward(x, training=True, stop=stop)
            if stop is not None:
                value, grad = loss.forward_from_logits(out, y), loss.grad_from_logits(out, y)
            else:
                value, grad = loss.forward(out, y), loss.grad(out, y)
            self.backward(grad.astype(self.dtype, copy=False), stop=stop)
        optimizer.step([(name, layer.params[key], layer.grads[key], key in layer.regularized)
                        for name, layer, key in self.parameters()])
        return float(value), out

    def _sharded_step(self, x):
        """The data-parallel step for this batch, or None when the serial step is the one to use."""
        from . import parallel

        threads = parallel.default_threads() if self.threads is None else self.threads
        if threads < 2 or not parallel.can_shard(self):
            return None
        if self._sharded is None or self._sharded.threads != threads:
            self._sharded = parallel.ShardedStep(self, threads)
        return self._sharded if self._sharded.usable(x) else None

    def predict_proba(self, x, batch_size: int = 256) -> np.ndarray:
        """Network outputs for ``x`` (probabilities when the model ends with Softmax), in batches.

        Batches of 256 keep the work arrays small (a 3x3 convolution's columns take 9x its input) and are
        as fast as larger ones; with several threads, batches run at once (inference caches nothing).
        """
        x = self._check_batch(x)
        xp = array_module(x)
        batches = [x[i:i + batch_size] for i in range(0, len(x), batch_size)]
        return xp.concatenate(self._map_batches(self.forward, batches))

    def predict(self, x, batch_size: int = 256) -> np.ndarray:
        """Predicted class index for every sample, shape ``(N,)``."""
        return self.predict_proba(x, batch_size).argmax(axis=1)

    def _map_batches(self, fn, batches):
        """``[fn(b) for b in batches]``, on ``threads`` threads when there are several (see cnnlab.parallel)."""
        from . import parallel

        threads = parallel.default_threads() if self.threads is None else self.threads
        if threads < 2 or len(batches) < 2 or not parallel.can_map(batches[0]):
            return [fn(b) for b in batches]
        return parallel.map_in_threads(fn, batches, threads)

    def feature_maps(self, x) -> list[tuple[str, np.ndarray]]:
        """Activations after each convolution block, ``[(layer_name, (N, C, H, W)), ...]``.

        We report the output of the activation that follows a Conv2D (what the next layer sees) or the
        convolution itself when no activation follows.
        """
        maps = []
        out = self._check_batch(x)
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

    # -- the workflow, as methods (thin wrappers, so a notebook reads like Keras) ---------------------
    def fit(self, train_data, val_data=None, **options):
        """Train this model; see :func:`cnnlab.train.fit` for the options. Returns a ``History``."""
        from .train import fit

        return fit(self, train_data, val_data, **options)

    def evaluate(self, dataset, **options):
        """Accuracy, per-class accuracy and confusion matrix; see :func:`cnnlab.train.evaluate`."""
        from .train import evaluate

        return evaluate(self, dataset, **options)

    def save(self, path, **metadata):
        """Write a safetensors model file; see :func:`cnnlab.io.save_model`."""
        from .io import save_model

        return save_model(self, path, **metadata)

    def __getstate__(self) -> dict:
        """Copies and pickles leave out the parallel step's replicas (they hold thread barriers, and a
        copy builds its own on first use)."""
        state = dict(vars(self))
        state["_sharded"] = None
        return state

    def __repr__(self) -> str:
        return f"Sequential({self.name!r}, {len(self.layers)} layers, {self.n_params:,} params)"
