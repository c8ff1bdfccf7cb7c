"""Export a cnnlab model to ONNX, so it runs in onnxruntime, OpenCV, TensorRT, a browser...

The graph is built node by node with the ``onnx`` package (opset 17, float32), one node per cnnlab layer:

=============================  ==========================================================================
cnnlab layer                   ONNX node
=============================  ==========================================================================
Conv2D                         ``Conv`` (``pads`` = [top, left, bottom, right]: asymmetric "same" as is)
MaxPool2D / AvgPool2D          ``MaxPool`` / ``AveragePool`` (no padding, floor: cnnlab's output size)
Dense                          ``Gemm`` (cnnlab's ``W`` is ``(n_in, units)``, so ``transB = 0``)
Flatten                        ``Flatten`` (axis 1: ``(N, C, H, W) -> (N, C*H*W)``, the same C order)
Dropout                        ``Identity`` (dropout does nothing at inference)
BatchNorm                      ``BatchNormalization`` with the running statistics (inference form)
ReLU, LeakyReLU, ELU           ``Relu``, ``LeakyRelu`` (alpha), ``Elu`` (alpha)
Sigmoid, Tanh, Softmax         ``Sigmoid``, ``Tanh``, ``Softmax`` (axis −1, as cnnlab)
=============================  ==========================================================================

The input is ``input`` of shape ``(N, C, H, W)`` (``(N, D)`` for a flat model) with a symbolic batch
axis ``N``; the output is ``output`` (probabilities when the model ends with Softmax). The network input
is what cnnlab's own forward pass takes, i.e. *after* preprocessing; how pixels become that input
(scale, mean, std, polarity, size) is written into the model's ``metadata_props`` as JSON under
``cnnlab.preprocessing``, beside ``cnnlab.class_names`` and ``cnnlab.architecture``.

``onnx`` is an optional dependency (``pip install 'cnnlab[onnx]'``); it is imported only here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .. import atomic
from ..version import __version__
from ..engine.backend import to_numpy
from ..engine.errors import ConfigError

OPSET = 17
#: The IR version of opset 17 (ONNX 1.12): runtimes that know opset 17 all read it.
IR_VERSION = 8
INPUT_NAME, OUTPUT_NAME = "input", "output"
INSTALL_HINT = "pip install 'cnnlab[onnx]'"


def require_onnx():
    """The ``onnx`` module, or a one-line :class:`ConfigError` saying which extra to install."""
    try:
        import onnx
    except ImportError:
        raise ConfigError(f"ONNX export needs the onnx package, which is not installed: {INSTALL_HINT}") from None
    return onnx


def model_metadata(model) -> dict[str, str]:
    """The ``metadata_props`` written into the ONNX file: ``cnnlab.preprocessing``, ``cnnlab.class_names``
    and ``cnnlab.architecture`` as JSON (see :func:`cnnlab.interop.export_info.export_info`), and the input formula."""
    from .export_info import export_info

    props = {f"cnnlab.{key}": json.dumps(value) for key, value in export_info(model).items()}
    props["cnnlab.input"] = "input = (pixels * scale - mean) / std, float32 (N, C, H, W); see cnnlab.preprocessing"
    return props


class _GraphBuilder:
    """Collects nodes and initializers (weights) while the layers are walked in order."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.nodes = []
        self.initializers = []

    def weight(self, name: str, array) -> str:
        """Add ``array`` (any float dtype) as a float32 initializer called ``name``; returns the name."""
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(to_numpy(array), dtype=np.float32),
                                                         name=name))
        return name

    def node(self, op: str, inputs: list[str], output: str, name: str, **attributes) -> str:
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=name, **attributes))
        return output


def _layer_node(graph: _GraphBuilder, layer, x: str, out: str) -> str:
    """Add the node(s) of one cnnlab layer reading tensor ``x``; returns the name of its output ``out``."""
    kind, name = layer.kind, layer.name
    if kind == "Conv2D":
        geometry = layer.geometry
        (top, bottom), (left, right) = geometry.pad_h, geometry.pad_w
        inputs = [x, graph.weight(f"{name}.W", layer.params["W"])]
        if layer.use_bias:
            inputs.append(graph.weight(f"{name}.b", layer.params["b"]))
        return graph.node("Conv", inputs, out, name, kernel_shape=list(layer.kernel_size),
                          strides=list(layer.stride), pads=[top, left, bottom, right])
    if kind in ("MaxPool2D", "AvgPool2D"):
        op = "MaxPool" if kind == "MaxPool2D" else "AveragePool"
        return graph.node(op, [x], out, name, kernel_shape=list(layer.pool_size), strides=list(layer.stride))
    if kind == "Dense":
        inputs = [x, graph.weight(f"{name}.W", layer.params["W"])]
        if layer.use_bias:
            inputs.append(graph.weight(f"{name}.b", layer.params["b"]))
        return graph.node("Gemm", inputs, out, name)
    if kind == "Flatten":
        return graph.node("Flatten", [x], out, name, axis=1)
    if kind == "Dropout":
        return graph.node("Identity", [x], out, name)
    if kind == "BatchNorm":
        inputs = [x] + [graph.weight(f"{name}.{key}", source[key]) for source, key in (
            (layer.params, "gamma"), (layer.params, "beta"),
            (layer.buffers, "running_mean"), (layer.buffers, "running_var"))]
        return graph.node("BatchNormalization", inputs, out, name, epsilon=layer.eps)
    if kind in ("LeakyReLU", "ELU"):
        return graph.node({"LeakyReLU": "LeakyRelu", "ELU": "Elu"}[kind], [x], out, name, alpha=layer.alpha)
    if kind in ("ReLU", "Sigmoid", "Tanh"):
        return graph.node({"ReLU": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh"}[kind], [x], out, name)
    if kind == "Softmax":
        return graph.node("Softmax", [x], out, name, axis=-1)
    raise ConfigError(f"{layer.describe()}: no ONNX equivalent for layer type {kind}")


def to_onnx(model):
    """Build and check the ONNX ``ModelProto`` of a cnnlab :class:`~cnnlab.engine.model.Sequential` (float32).

    Input ``input`` ``(N, *model.input_shape)``, output ``output`` ``(N, *model.output_shape)``, with a
    symbolic batch axis. Raises :class:`ConfigError` when ``onnx`` is missing.
    """
    onnx = require_onnx()
    from onnx import TensorProto, helper

    graph = _GraphBuilder(onnx)
    tensor = INPUT_NAME
    for index, layer in enumerate(model.layers):
        last = index == len(model.layers) - 1
        tensor = _layer_node(graph, layer, tensor, OUTPUT_NAME if last else f"{layer.name}_out")
    inputs = [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", *model.input_shape])]
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", *model.output_shape])]
    proto = helper.make_model(
        helper.make_graph(graph.nodes, model.name, inputs, outputs, initializer=graph.initializers),
        opset_imports=[helper.make_opsetid("", OPSET)], producer_name="cnnlab", producer_version=__version__,
        doc_string=f"cnnlab {model.name}: {len(model.layers)} layers, {model.n_params:,} parameters")
    proto.ir_version = IR_VERSION
    helper.set_model_props(proto, model_metadata(model))
    onnx.checker.check_model(proto, full_check=True)  # full_check also infers and checks every shape
    return proto


def export_onnx(model, path: str | os.PathLike) -> Path:
    """Write ``model`` as an ONNX file at ``path`` atomically (the old file stays until the new one is
    complete); returns the path."""
    proto = to_onnx(model)
    path = Path(path)
    atomic.write_bytes(path, proto.SerializeToString())
    return path


def onnx_metadata(proto) -> dict[str, object]:
    """The ``cnnlab.*`` metadata of an ONNX model, JSON values decoded (``preprocessing``, ``class_names``...)."""
    found = {}
    for prop in proto.metadata_props:
        if prop.key.startswith("cnnlab."):
            key = prop.key.removeprefix("cnnlab.")
            try:
                found[key] = json.loads(prop.value)
            except json.JSONDecodeError:
                found[key] = prop.value
    return found
