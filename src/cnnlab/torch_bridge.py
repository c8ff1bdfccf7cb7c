"""The same network in PyTorch, with the same weights: for parity tests and the speed benchmark.

PyTorch is *not* a dependency of cnnlab; it is imported here only when this module is used (tests,
benchmarks). The translation is one-to-one, layer by layer. Two layouts differ and are converted:

* Dense weights are ``(n_in, n_out)`` in cnnlab (``y = x @ W``) and ``(out, in)`` in ``nn.Linear``;
* a final ``Softmax`` is dropped: PyTorch's ``CrossEntropyLoss`` takes the logits, as cnnlab's fused loss does.
"""

from __future__ import annotations

import numpy as np


def to_torch(model, dtype=None, drop_final_softmax: bool = True):
    """Return an ``nn.Sequential`` equivalent to ``model`` with copies of its weights and buffers."""
    import torch
    from torch import nn

    dtype = dtype or (torch.float64 if model.dtype == np.float64 else torch.float32)
    modules = []
    layers = model.layers[:-1] if drop_final_softmax and model.layers[-1].kind == "Softmax" else model.layers
    for layer in layers:
        kind = layer.kind
        if kind == "Conv2D":
            g = layer.geometry
            f, c, kh, kw = layer.params["W"].shape
            (pt, pb), (pl, pr) = g.pad_h, g.pad_w
            symmetric = pt == pb and pl == pr
            conv = nn.Conv2d(c, f, (kh, kw), stride=layer.stride, padding=(pt, pl) if symmetric else 0,
                             bias=layer.use_bias)
            if not symmetric:
                modules.append(nn.ZeroPad2d((pl, pr, pt, pb)))
            conv.weight.data = torch.tensor(layer.params["W"])
            if layer.use_bias:
                conv.bias.data = torch.tensor(layer.params["b"])
            modules.append(conv)
        elif kind == "Dense":
            n_in, n_out = layer.params["W"].shape
            linear = nn.Linear(n_in, n_out, bias=layer.use_bias)
            linear.weight.data = torch.tensor(layer.params["W"].T.copy())
            if layer.use_bias:
                linear.bias.data = torch.tensor(layer.params["b"])
            modules.append(linear)
        elif kind in ("MaxPool2D", "AvgPool2D"):
            cls = nn.MaxPool2d if kind == "MaxPool2D" else nn.AvgPool2d
            modules.append(cls(tuple(layer.pool_size), stride=tuple(layer.stride)))
        elif kind == "BatchNorm":
            n = layer.params["gamma"].shape[0]
            cls = nn.BatchNorm2d if len(layer.input_shape) == 3 else nn.BatchNorm1d
            bn = cls(n, eps=layer.eps, momentum=layer.momentum)
            bn.weight.data = torch.tensor(layer.params["gamma"])
            bn.bias.data = torch.tensor(layer.params["beta"])
            bn.running_mean.data = torch.tensor(layer.buffers["running_mean"])
            bn.running_var.data = torch.tensor(layer.buffers["running_var"])
            modules.append(bn)
        elif kind == "Flatten":
            modules.append(nn.Flatten())
        elif kind == "Dropout":
            modules.append(nn.Dropout(layer.rate))
        elif kind == "ReLU":
            modules.append(nn.ReLU())
        elif kind == "LeakyReLU":
            modules.append(nn.LeakyReLU(layer.alpha))
        elif kind == "ELU":
            modules.append(nn.ELU(layer.alpha))
        elif kind == "Sigmoid":
            modules.append(nn.Sigmoid())
        elif kind == "Tanh":
            modules.append(nn.Tanh())
        elif kind == "Softmax":
            modules.append(nn.Softmax(dim=-1))
        else:  # pragma: no cover - every layer type is listed above
            raise NotImplementedError(f"no PyTorch equivalent for {kind}")
    return nn.Sequential(*modules).to(dtype)


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
