"""The same training run with PyTorch computing every step: a peer run on identical batches.

When a recipe misses its published figure, is it the recipe or the engine? :class:`TorchStep` answers it
by changing only the engine. ``fit(model, ..., step_with=TorchStep)`` trains exactly as cnnlab does — the
same initial weights (copied by :func:`~cnnlab.interop.torch_bridge.to_torch`), the same batches in the
same order with the same augmentation, the same learning-rate schedule, the same validation and test code
— except that each step's forward pass, backward pass and update are PyTorch's (``autograd`` and
``torch.optim``). After every step the weights (and BatchNorm's running statistics) are copied back into
the cnnlab model, so everything that reads the model between steps (validation, checkpoints, the test
accuracy) sees PyTorch's weights.

    from cnnlab.interop.torch_step import TorchStep
    history = fit(model, train, val, epochs=10, optimizer="adam", lr=1e-3, step_with=TorchStep)

``benchmarks/reproduce.py --peer torch`` runs the table's recipes this way. What stays different: the
random numbers PyTorch draws for Dropout, and the order of floating-point sums inside the operations.

PyTorch is not a dependency of cnnlab; this module imports it when a step is built.
"""

from __future__ import annotations

import numpy as np

from ..engine.errors import ConfigError
from ..engine.losses import BinaryCrossEntropy, Quadratic, SoftmaxCrossEntropy
from ..engine.optim import SGD, Adam, AdamW
from .torch_bridge import _name_map, _transposed, require_torch, to_torch


def torch_optimizer(optimizer, groups):
    """The ``torch.optim`` optimizer with ``optimizer``'s rule and hyper-parameters (cnnlab's rules are
    PyTorch's, see :mod:`cnnlab.engine.optim`); ``groups`` = ``(decayed, not decayed)`` parameter lists."""
    torch = require_torch()
    decayed, plain = groups
    param_groups = [{"params": decayed, "weight_decay": optimizer.weight_decay},
                    {"params": plain, "weight_decay": 0.0}]
    param_groups = [g for g in param_groups if g["params"]]
    if isinstance(optimizer, AdamW):
        return torch.optim.AdamW(param_groups, lr=optimizer.lr, betas=optimizer.betas, eps=optimizer.eps)
    if isinstance(optimizer, Adam):
        return torch.optim.Adam(param_groups, lr=optimizer.lr, betas=optimizer.betas, eps=optimizer.eps)
    if isinstance(optimizer, SGD):
        return torch.optim.SGD(param_groups, lr=optimizer.lr, momentum=optimizer.momentum,
                               nesterov=optimizer.nesterov)
    raise ConfigError(f"TorchStep: no PyTorch counterpart for the optimizer {type(optimizer).__name__}; "
                      "expected SGD, Adam or AdamW")


class TorchStep:
    """``train_step(x, y, loss, optimizer)`` computed by PyTorch on a copy of ``model``; see the module text.

    ``threads``: PyTorch's intra-op threads (``None``: leave PyTorch's setting). Built on the first step,
    when the loss is known: a loss cnnlab fuses with the final Softmax (cross-entropy) gets the network
    without it and ``cross_entropy`` on the logits, as cnnlab computes it.
    """

    def __init__(self, model, threads: int | None = None):
        self.model = model
        self.threads = threads
        self.net = None
        self._optimizer = None
        self._loss = None
        self._copies = []  # (torch tensor, cnnlab array, transposed?) refreshed after every step

    def _build(self, loss, optimizer) -> None:
        torch = require_torch()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        if not isinstance(loss, (SoftmaxCrossEntropy, BinaryCrossEntropy, Quadratic)):
            raise ConfigError(f"TorchStep: no PyTorch counterpart for the loss {type(loss).__name__}; expected "
                              "cross-entropy, binary cross-entropy or quadratic")
        self._fused = fused = self.model.fused_stop(loss) is not None
        self.net = to_torch(self.model, drop_final_softmax=fused)
        if fused and self.model.layers[-1].kind == "Sigmoid":
            self.net = self.net[:-1]  # the loss takes the logits, as cnnlab's fused one
        self.net.train()
        self._loss = loss
        names = _name_map(self.model)
        state = dict(self.net.named_parameters()) | dict(self.net.named_buffers())
        decayed, plain = [], []
        for name, (index, key, _) in names.items():
            layer = self.model.layers[index]
            target = layer.params.get(key)
            if target is None:
                target = layer.buffers[key]
            elif key in layer.regularized:
                decayed.append(state[name])
            else:
                plain.append(state[name])
            self._copies.append((state[name], target, _transposed(layer, key)))
        self._optimizer = torch_optimizer(optimizer, (decayed, plain))

    def _loss_value(self, output, y):
        """PyTorch's value of cnnlab's loss: summed over the classes, averaged over the batch, as cnnlab's
        (:mod:`cnnlab.engine.losses`); on the logits where cnnlab fuses the loss with the last activation."""
        functional = require_torch().nn.functional
        n = output.shape[0]
        if isinstance(self._loss, SoftmaxCrossEntropy):
            return functional.cross_entropy(output, y) if self._fused else functional.nll_loss(output.log(), y)
        target = functional.one_hot(y, output.shape[1]).to(output.dtype)
        if isinstance(self._loss, BinaryCrossEntropy):
            if self._fused:
                return functional.binary_cross_entropy_with_logits(output, target, reduction="sum") / n
            return functional.binary_cross_entropy(output, target, reduction="sum") / n
        return 0.5 * ((output - target) ** 2).sum() / n

    def train_step(self, x, y, loss, optimizer) -> tuple[float, np.ndarray]:
        """One PyTorch step on the batch ``x (N, C, H, W)``, labels ``y (N,)``; returns (loss, output)."""
        torch = require_torch()
        if self.net is None:
            self._build(loss, optimizer)
        for group in self._optimizer.param_groups:
            group["lr"] = optimizer.lr  # the schedule sets cnnlab's optimizer's rate every epoch
        xb = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32 if self.model.dtype == np.float32
                                                   else np.float64))
        yb = torch.from_numpy(np.asarray(y, dtype=np.int64))
        self._optimizer.zero_grad(set_to_none=True)
        output = self.net(xb)
        value = self._loss_value(output, yb)
        value.backward()
        self._optimizer.step()
        with torch.no_grad():
            for tensor, target, transposed in self._copies:
                values = tensor.numpy()
                target[...] = values.T if transposed else values
        return float(value.item()), output.detach().numpy()
