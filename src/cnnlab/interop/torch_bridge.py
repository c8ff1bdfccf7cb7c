"""The same network in PyTorch, with the same weights, both ways: ``to_torch(model)`` and ``from_torch(...)``.

From Python::

    import cnnlab
    from cnnlab.interop.torch_bridge import to_torch, from_torch, torch_code

    model = cnnlab.load_model("lenet5.safetensors")
    net = to_torch(model, drop_final_softmax=False)   # an nn.Sequential; net.eval() gives model's outputs
    print(torch_code(model))                          # the nn.Sequential(...) source, to rebuild it anywhere
    same = from_torch(net.state_dict(), cnnlab.build("lenet5"))   # weights back into a cnnlab model

PyTorch is *not* a dependency of cnnlab; it is imported only when a function here needs it. The
translation is one-to-one, layer by layer, into ``torch.nn.Sequential`` (so the weights are named
``"0.weight"``, ``"0.bias"``, ``"3.running_mean"``...). Two layouts differ and are converted:

* Dense weights are ``(n_in, n_out)`` in cnnlab (``y = x @ W``) and ``(out, in)`` in ``nn.Linear``;
* a convolution padded unevenly (``"same"`` with an even kernel: 1 zero before, 2 after) becomes an
  ``nn.ZeroPad2d`` followed by an unpadded ``nn.Conv2d``, as ``nn.Conv2d`` pads both sides alike.

A final ``Softmax`` is dropped by default (``drop_final_softmax=True``): PyTorch's ``CrossEntropyLoss``
takes the logits, as cnnlab's fused loss does. It has no weights, so the state dict is the same either way.

:func:`torch_modules` is the plan both directions share: one ``(nn class, constructor arguments, cnnlab
layer)`` per module. It needs no torch, so the names and shapes a state dict must have are known, and
checked, before anything is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..engine.backend import to_numpy
from ..engine.errors import ConfigError, ModelFileError

INSTALL_HINT = "pip install torch (see https://pytorch.org for the CPU or CUDA build)"
#: A BatchNorm buffer PyTorch keeps (how many training steps it took) and cnnlab has no use for: written
#: on export, accepted but not required on import.
IGNORED_BUFFERS = ("num_batches_tracked",)


def require_torch():
    """The ``torch`` module, or a one-line :class:`ConfigError` saying how to install it."""
    try:
        import torch
    except ImportError:
        raise ConfigError(f"this needs PyTorch, which is not installed: {INSTALL_HINT}") from None
    return torch


@dataclass(frozen=True)
class ModuleSpec:
    """One module of the ``nn.Sequential``: ``getattr(torch.nn, type)(**kwargs)``.

    ``layer`` is the index of the cnnlab layer whose weights it holds (None for a weightless module).
    """

    type: str
    kwargs: dict = field(default_factory=dict)
    layer: int | None = None

    def describe(self) -> dict:
        """The JSON-like form stored in exported files: ``{"type": "Conv2d", "kwargs": {...}}``."""
        return {"type": self.type, "kwargs": dict(self.kwargs)}


def _conv_modules(layer, index: int) -> list[ModuleSpec]:
    f, c, kh, kw = layer.params["W"].shape
    (top, bottom), (left, right) = layer.geometry.pad_h, layer.geometry.pad_w
    symmetric = top == bottom and left == right
    conv = ModuleSpec("Conv2d", {"in_channels": int(c), "out_channels": int(f), "kernel_size": (int(kh), int(kw)),
                                 "stride": tuple(layer.stride), "padding": (top, left) if symmetric else (0, 0),
                                 "bias": layer.use_bias}, index)
    return [conv] if symmetric else [ModuleSpec("ZeroPad2d", {"padding": (left, right, top, bottom)}), conv]


def torch_modules(model, drop_final_softmax: bool = True) -> list[ModuleSpec]:
    """The ``nn.Sequential`` equivalent to ``model``, as a list of :class:`ModuleSpec` (no torch needed)."""
    layers = list(enumerate(model.layers))
    if drop_final_softmax and model.layers[-1].kind == "Softmax":
        layers = layers[:-1]
    modules: list[ModuleSpec] = []
    for index, layer in layers:
        kind = layer.kind
        if kind == "Conv2D":
            modules += _conv_modules(layer, index)
        elif kind == "Dense":
            n_in, n_out = layer.params["W"].shape
            modules.append(ModuleSpec("Linear", {"in_features": int(n_in), "out_features": int(n_out),
                                                 "bias": layer.use_bias}, index))
        elif kind in ("MaxPool2D", "AvgPool2D"):
            modules.append(ModuleSpec("MaxPool2d" if kind == "MaxPool2D" else "AvgPool2d",
                                      {"kernel_size": tuple(layer.pool_size), "stride": tuple(layer.stride)}))
        elif kind == "BatchNorm":
            modules.append(ModuleSpec("BatchNorm2d" if len(layer.input_shape) == 3 else "BatchNorm1d",
                                      {"num_features": int(layer.params["gamma"].shape[0]), "eps": layer.eps,
                                       "momentum": layer.momentum}, index))
        elif kind == "Flatten":
            modules.append(ModuleSpec("Flatten"))
        elif kind == "Dropout":
            modules.append(ModuleSpec("Dropout", {"p": layer.rate}))
        elif kind in ("LeakyReLU", "ELU"):
            modules.append(ModuleSpec(kind, {"negative_slope" if kind == "LeakyReLU" else "alpha": layer.alpha}))
        elif kind in ("ReLU", "Sigmoid", "Tanh"):
            modules.append(ModuleSpec(kind))
        elif kind == "Softmax":
            modules.append(ModuleSpec("Softmax", {"dim": -1}))  # cnnlab's softmax is over the last axis
        else:
            raise ConfigError(f"{layer.describe()}: no PyTorch equivalent for layer type {kind}")
    return modules


def torch_code(model_or_modules, drop_final_softmax: bool = False) -> str:
    """Python source of the ``nn.Sequential`` (``from torch import nn`` assumed), one module per line."""
    modules = model_or_modules if isinstance(model_or_modules, list) else torch_modules(
        model_or_modules, drop_final_softmax)
    lines = []
    for spec in modules:
        spec = spec.describe() if isinstance(spec, ModuleSpec) else spec
        arguments = ", ".join(f"{key}={value!r}" for key, value in spec["kwargs"].items())
        lines.append(f"    nn.{spec['type']}({arguments}),")
    return "nn.Sequential(\n" + "\n".join(lines) + "\n)"


def build_sequential(modules, dtype=None):
    """``nn.Sequential`` from the stored description ``[{"type": "Conv2d", "kwargs": {...}}, ...]`` (or
    :class:`ModuleSpec` objects); only classes of ``torch.nn`` are used."""
    torch = require_torch()
    from torch import nn

    built = []
    for spec in modules:
        spec = spec.describe() if isinstance(spec, ModuleSpec) else spec
        cls = getattr(nn, spec["type"], None)
        if not isinstance(cls, type) or not issubclass(cls, nn.Module):
            raise ModelFileError(f"module type {spec['type']!r} is not a torch.nn module")
        built.append(cls(**spec["kwargs"]))
    return nn.Sequential(*built).to(dtype or torch.float32)


def expected_torch_shapes(model, modules: list[ModuleSpec] | None = None) -> dict[str, tuple[int, ...]]:
    """The state-dict names PyTorch gives ``model``'s weights and their shapes (without
    :data:`IGNORED_BUFFERS`)."""
    return {name: shape for name, (_, _, shape) in _name_map(model, modules).items()}


def _name_map(model, modules=None) -> dict[str, tuple[int, str, tuple[int, ...]]]:
    """``torch name -> (cnnlab layer index, cnnlab key, torch shape)`` for every weight and buffer."""
    modules = torch_modules(model) if modules is None else modules
    keys = {"Conv2D": {"weight": "W", "bias": "b"}, "Dense": {"weight": "W", "bias": "b"},
            "BatchNorm": {"weight": "gamma", "bias": "beta", "running_mean": "running_mean",
                          "running_var": "running_var"}}
    names = {}
    for position, spec in enumerate(modules):
        if spec.layer is None:
            continue
        layer = model.layers[spec.layer]
        state = {**layer.params, **layer.buffers}
        for torch_key, key in keys[layer.kind].items():
            if key in state:
                shape = tuple(state[key].shape)
                names[f"{position}.{torch_key}"] = (spec.layer, key, shape[::-1] if _transposed(layer, key) else shape)
    return names


def _transposed(layer, key: str) -> bool:
    """Dense weights are stored transposed in ``nn.Linear``: ``(out, in)`` against cnnlab's ``(in, out)``."""
    return layer.kind == "Dense" and key == "W"


def torch_state_dict(model, modules: list[ModuleSpec] | None = None) -> dict[str, np.ndarray]:
    """``model``'s weights and buffers as NumPy arrays under PyTorch's names and in PyTorch's layouts."""
    state = {}
    for name, (index, key, _) in _name_map(model, modules).items():
        layer = model.layers[index]
        value = to_numpy({**layer.params, **layer.buffers}[key])
        state[name] = np.ascontiguousarray(value.T if _transposed(layer, key) else value)
    return state


def to_torch(model, dtype=None, drop_final_softmax: bool = True):
    """Return an ``nn.Sequential`` equivalent to ``model`` with copies of its weights and buffers.

    ``dtype`` defaults to the model's (float32 or float64). The module is in training mode, as every new
    PyTorch module is: call ``.eval()`` for inference (dropout off, BatchNorm's running statistics).
    """
    torch = require_torch()

    dtype = dtype or (torch.float64 if model.dtype == np.float64 else torch.float32)
    modules = torch_modules(model, drop_final_softmax)
    net = build_sequential(modules, dtype)  # in the final dtype first: loading then keeps every digit
    tensors = {name: torch.from_numpy(value) for name, value in torch_state_dict(model, modules).items()}
    missing, unexpected = net.load_state_dict(tensors, strict=False)
    assert not unexpected and all(name.endswith(IGNORED_BUFFERS) for name in missing), (missing, unexpected)
    return net


def _as_numpy_state(state, what: str) -> dict[str, np.ndarray]:
    """A state dict of torch tensors or NumPy arrays -> float64 NumPy arrays (ignored buffers dropped)."""
    import sys

    torch = sys.modules.get("torch")  # a tensor can only be here if torch is imported: NumPy needs no torch

    arrays = {}
    for name, value in state.items():
        if not isinstance(name, str):
            raise ModelFileError(f"{what}: state dict key {name!r} is not a string")
        if name.rsplit(".", 1)[-1] in IGNORED_BUFFERS:
            continue
        if torch is not None and isinstance(value, torch.Tensor):
            if not value.is_floating_point():
                raise ModelFileError(f"{what}: tensor {name} has dtype {value.dtype}; expected floating point")
            value = value.detach().to("cpu", torch.float64).numpy()
        elif not isinstance(value, np.ndarray) or not np.issubdtype(value.dtype, np.floating):
            raise ModelFileError(f"{what}: state dict entry {name} is {type(value).__name__}; "
                                 "expected a floating-point tensor")
        arrays[name] = value
    return arrays


def _listed(names) -> str:
    names = sorted(names)
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "") if names else "none"


def from_torch(source, model, what: str = "the PyTorch weights"):
    """Copy PyTorch weights into the cnnlab ``model`` of the same architecture, and return it.

    ``source`` is an ``nn.Module`` (its ``state_dict()`` is taken) or a state dict (tensors or NumPy
    arrays) with ``nn.Sequential`` names, as :func:`to_torch` makes them. Strict: a missing or unexpected
    name, a shape that differs, a non-float or non-finite value is a :class:`ModelFileError` naming it, and
    ``model`` is left unchanged.
    """
    if hasattr(source, "state_dict") and callable(source.state_dict):
        source = source.state_dict()
    if not hasattr(source, "items"):
        raise ModelFileError(f"{what}: expected a state dict (names -> tensors), received {type(source).__name__}")
    expected = _name_map(model)
    names = {str(name) for name in source.keys() if str(name).rsplit(".", 1)[-1] not in IGNORED_BUFFERS}
    missing, unexpected = set(expected) - names, names - set(expected)
    if missing or unexpected:
        raise ModelFileError(f"{what} do not match {model.name}: missing {_listed(missing)}; "
                             f"unexpected {_listed(unexpected)}")
    state = _as_numpy_state(source, what)
    for name, (_, _, shape) in expected.items():
        if tuple(state[name].shape) != shape:
            raise ModelFileError(f"{what}: tensor {name} has shape {tuple(state[name].shape)}; "
                                 f"{model.name} needs {shape}")
        if not np.isfinite(state[name]).all():
            raise ModelFileError(f"{what}: tensor {name} holds NaN or infinite values")
    cnnlab_state = {}
    for name, (index, key, _) in expected.items():
        layer = model.layers[index]
        cnnlab_state[f"layers.{index}.{key}"] = state[name].T if _transposed(layer, key) else state[name]
    model.load_state_dict(cnnlab_state)
    return model


def torch_grads_by_cnnlab_name(model, torch_model) -> dict[str, np.ndarray]:
    """PyTorch's parameter gradients under cnnlab's dotted names and layouts (Dense transposed back)."""
    grads = {}
    torch_params = [m for m in torch_model if any(True for _ in m.parameters(recurse=False))]
    ours = [(i, layer) for i, layer in enumerate(model.layers) if layer.params]
    for (index, layer), module in zip(ours, torch_params, strict=True):
        names = {"W": "weight", "b": "bias", "gamma": "weight", "beta": "bias"}
        for key in layer.params:
            g = getattr(module, names[key]).grad.detach().numpy()
            grads[f"layers.{index}.{key}"] = g.T if layer.kind == "Dense" and key == "W" else g
    return grads
