"""Optimizers (how a gradient becomes a weight update) and learning-rate schedules.

An optimizer sees only ``(name, param, grad, decay)`` tuples: ``name`` is the dotted parameter name
(``"0.W"``), which keys its per-parameter state (velocity, Adam moments — created lazily, same dtype as the
parameter); ``decay`` says whether weight decay applies to that parameter (weights yes; biases and
BatchNorm's gamma/beta no). Parameters are updated in place. ``opt.lr`` may be changed between steps, by
a schedule for example. The update rules are PyTorch's (``torch.optim.SGD`` / ``Adam`` / ``AdamW``).

Weight decay and the classic L2 rule
------------------------------------
Nielsen (ch. 3) regularizes ``C = C₀ + (λ / 2n) Σ w²`` with n the size of the *training set*, which gives
the update, for a mini-batch of m examples x,

    w → (1 − ηλ/n) w − (η/m) Σ_x ∂C_x/∂w.

cnnlab's losses are averaged over the mini-batch, so the gradient it hands the optimizer already is
``g = (1/m) Σ_x ∂C_x/∂w``, and weight decay ``wd`` (added to the gradient: ``g + wd · w``) gives

    w → w − η (g + wd · w) = (1 − η · wd) w − (η/m) Σ_x ∂C_x/∂w,

exactly the classic rule when ``wd = λ / n`` — see :func:`classic_l2`. (For example λ = 5 on the 50 000
MNIST training images is ``weight_decay = 1e-4``.) With momentum or Adam the decay term goes through the
velocity / moments like any gradient, as in PyTorch; :class:`AdamW` decouples it instead.
"""

from __future__ import annotations

import math

from .backend import array_module
from .errors import ConfigError, ShapeError


def classic_l2(lmbda: float, n_train: int) -> float:
    """The ``weight_decay`` equivalent to Nielsen's L2 parameter ``λ`` for ``n_train`` training examples."""
    if lmbda < 0 or n_train < 1:
        raise ConfigError(f"classic_l2: expected lmbda >= 0 and n_train >= 1, received {lmbda!r}, {n_train!r}")
    return lmbda / n_train


def _check(owner: str, name: str, value, low: float, high: float = math.inf, low_open=False, high_open=True):
    """Raise ConfigError unless ``value`` is a number in the interval (``low``, ``high``) as specified."""
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and (value > low if low_open else value >= low) and (value < high if high_open else value <= high))
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ConfigError(f"{owner}: {name} must be a number in {interval}, received {value!r}")
    return float(value)


class Optimizer:
    """Base class: holds ``lr``, ``weight_decay`` and the per-parameter ``state`` dict (keyed by name)."""

    def __init__(self, lr: float, weight_decay: float = 0.0):
        self.lr = _check(type(self).__name__, "lr", lr, 0.0, low_open=True)
        self.weight_decay = _check(type(self).__name__, "weight_decay", weight_decay, 0.0)
        self.state: dict[str, dict] = {}

    def step(self, pairs) -> None:
        """Update every parameter in place from its gradient: ``pairs`` = [(name, param, grad, decay), ...]."""
        for name, param, grad, decay in pairs:
            if grad.shape != param.shape:
                raise ShapeError(f"{type(self).__name__}: gradient of {name!r} has shape {tuple(grad.shape)}, "
                                 f"expected the parameter's shape {tuple(param.shape)}")
            self.update(name, param, grad, self.weight_decay if decay else 0.0)

    def update(self, name: str, param, grad, weight_decay: float) -> None:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"lr": self.lr, "weight_decay": self.weight_decay}

    def _state(self, name: str, key: str, param):
        """Per-parameter state array ``state[name][key]``, created as zeros like ``param`` on first use."""
        slot = self.state.setdefault(name, {})
        if key not in slot:
            slot[key] = array_module(param).zeros_like(param)
        return slot[key]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and weight decay.

    With ``g = ∂C/∂w + wd · w``::

        momentum = 0:   w ← w − η g
        momentum μ:     v ← μ v + g             (v starts at 0, so the first v is g)
                        w ← w − η v             (classical)
                        w ← w − η (g + μ v)     (nesterov=True)
    """

    def __init__(self, lr: float, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0):
        super().__init__(lr, weight_decay)
        self.momentum = _check("SGD", "momentum", momentum, 0.0, 1.0)
        if nesterov and self.momentum == 0:
            raise ConfigError("SGD: nesterov=True needs a momentum > 0, received momentum=0")
        self.nesterov = bool(nesterov)

    def get_config(self) -> dict:
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}

    def update(self, name, param, grad, weight_decay):
        g = grad + weight_decay * param if weight_decay else grad
        if not self.momentum:
            param -= self.lr * g
            return
        v = self._state(name, "velocity", param)
        v *= self.momentum
        v += g
        if self.nesterov:
            param -= self.lr * (g + self.momentum * v)
        else:
            param -= self.lr * v


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with PyTorch's L2-style weight decay.

    With ``g = ∂C/∂w + wd · w`` and t the number of updates of this parameter so far (1, 2, ...)::

        m ← β₁ m + (1 − β₁) g            v ← β₂ v + (1 − β₂) g²
        w ← w − η · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
    """

    decoupled = False  # AdamW sets this

    def __init__(self, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(lr, weight_decay)
        owner = type(self).__name__
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ConfigError(f"{owner}: betas must be a pair (beta1, beta2), received {betas!r}")
        self.betas = (_check(owner, "beta1", betas[0], 0.0, 1.0), _check(owner, "beta2", betas[1], 0.0, 1.0))
        self.eps = _check(owner, "eps", eps, 0.0, low_open=True)

    def get_config(self) -> dict:
        return {**super().get_config(), "betas": list(self.betas), "eps": self.eps}

    def update(self, name, param, grad, weight_decay):
        beta1, beta2 = self.betas
        if self.decoupled:
            param *= 1 - self.lr * weight_decay
            g = grad
        else:
            g = grad + weight_decay * param if weight_decay else grad
        m = self._state(name, "m", param)
        v = self._state(name, "v", param)
        slot = self.state[name]
        slot["t"] = t = slot.get("t", 0) + 1

        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * (g * g)
        # Bias corrections folded into scalars; the array work is in place on one temporary.
        step = array_module(param).sqrt(v)
        step /= math.sqrt(1 - beta2 ** t)
        step += self.eps
        array_module(param).divide(m, step, out=step)
        step *= self.lr / (1 - beta1 ** t)
        param -= step


class AdamW(Adam):
    """Adam with *decoupled* weight decay (Loshchilov & Hutter 2019), as ``torch.optim.AdamW``::

        w ← (1 − η · wd) w,   then the Adam step on the plain gradient (wd never enters m or v)
    """

    decoupled = True

    def __init__(self, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(lr, betas, eps, weight_decay)


# -- learning-rate schedules: callables epoch (0-based) -> lr ----------------------------------------------
class ConstantLR:
    """``lr(epoch) = base_lr``."""

    def __init__(self, base_lr: float):
        self.base_lr = _check("ConstantLR", "base_lr", base_lr, 0.0, low_open=True)

    def __call__(self, epoch: int) -> float:
        return self.base_lr


class StepLR:
    """``lr(epoch) = base_lr · gamma^(epoch // step_size)``: divide by 1/gamma every ``step_size`` epochs."""

    def __init__(self, base_lr: float, step_size: int, gamma: float = 0.1):
        self.base_lr = _check("StepLR", "base_lr", base_lr, 0.0, low_open=True)
        if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
            raise ConfigError(f"StepLR: step_size must be a positive integer, received {step_size!r}")
        self.step_size = step_size
        self.gamma = _check("StepLR", "gamma", gamma, 0.0, low_open=True)

    def __call__(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineLR:
    """``lr(epoch) = min_lr + (base_lr − min_lr) · (1 + cos(π · epoch / total_epochs)) / 2``.

    Falls from ``base_lr`` at epoch 0 to ``min_lr`` at ``total_epochs`` and stays there afterwards.
    """

    def __init__(self, base_lr: float, total_epochs: int, min_lr: float = 0.0):
        self.base_lr = _check("CosineLR", "base_lr", base_lr, 0.0, low_open=True)
        if isinstance(total_epochs, bool) or not isinstance(total_epochs, int) or total_epochs < 1:
            raise ConfigError(f"CosineLR: total_epochs must be a positive integer, received {total_epochs!r}")
        self.total_epochs = total_epochs
        self.min_lr = _check("CosineLR", "min_lr", min_lr, 0.0, self.base_lr, high_open=False)

    def __call__(self, epoch: int) -> float:
        progress = min(epoch, self.total_epochs) / self.total_epochs
        return self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * progress)) / 2


SCHEDULES = {"constant": ConstantLR, "step": StepLR, "cosine": CosineLR}


def get_schedule(name: str, base_lr: float, **kwargs):
    """A schedule by name: ``"constant"``, ``"step"`` (step_size, gamma), ``"cosine"`` (total_epochs, min_lr)."""
    try:
        cls = SCHEDULES[name]
    except KeyError:
        raise ConfigError(f"unknown schedule {name!r}; expected one of: {', '.join(SCHEDULES)}") from None
    try:
        return cls(base_lr, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"schedule {name!r}: {exc}") from None


# name -> (class, defaults that the name implies)
OPTIMIZERS = {
    "sgd": (SGD, {}),
    "momentum": (SGD, {"momentum": 0.9}),
    "nesterov": (SGD, {"momentum": 0.9, "nesterov": True}),
    "adam": (Adam, {}),
    "adamw": (AdamW, {}),
}


def get_optimizer(name: str, **kwargs) -> Optimizer:
    """An optimizer by name: ``"sgd"``, ``"momentum"`` (SGD, μ = 0.9), ``"nesterov"``, ``"adam"``, ``"adamw"``.

    Keyword arguments go to the constructor and override the name's defaults (``momentum=0.95``).
    """
    try:
        cls, defaults = OPTIMIZERS[name.lower()]
    except (KeyError, AttributeError):
        raise ConfigError(f"unknown optimizer {name!r}; expected one of: {', '.join(OPTIMIZERS)}") from None
    if cls is SGD and "lr" not in kwargs:
        raise ConfigError(f"optimizer {name!r} needs a learning rate, e.g. lr=0.1")
    try:
        return cls(**{**defaults, **kwargs})
    except TypeError as exc:  # an unknown keyword argument
        raise ConfigError(f"optimizer {name!r}: {exc}") from None
