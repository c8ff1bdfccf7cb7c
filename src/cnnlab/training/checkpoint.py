"""Checkpoints: everything needed to continue a training run exactly where it stopped.

The checkpoint is one safetensors file — arrays under ``model/<name>`` and ``optim/<param>/<key>``, and
the rest (epoch, history, optimizer scalars, the bit-generator states of the model's dropout layers) as
JSON in its metadata. The batches need no state: those of epoch ``e`` are drawn from ``(seed, e)``. One file, so one atomic rename: a checkpoint is
either the previous one or the complete new one, never a mix. No pickle anywhere: opening a checkpoint
executes no code.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from .. import atomic
from ..engine.backend import to_numpy
from ..engine.errors import CnnlabError, ConfigError

#: 2: the batches come from (seed, epoch), so the data generator's state is no longer stored (version 1).
CHECKPOINT_VERSION = 2


def rng_state(rng: np.random.Generator) -> dict:
    """The bit generator's state: a small JSON-able dict (PCG64: two 128-bit integers)."""
    return rng.bit_generator.state


def set_rng_state(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state


def model_rng_states(model) -> dict:
    """States of the generators the model's layers draw from (dropout masks), by layer index."""
    return {str(i): rng_state(layer.rng) for i, layer in enumerate(model.layers)
            if isinstance(getattr(layer, "rng", None), np.random.Generator)}


def restore_model_rng_states(model, states: dict) -> None:
    for index, state in states.items():
        layer = model.layers[int(index)]
        if not isinstance(getattr(layer, "rng", None), np.random.Generator):
            raise ConfigError(f"checkpoint holds a random state for layer {index}, which has no generator")
        # Layers that share the model's generator get the same state several times: harmless.
        set_rng_state(layer.rng, state)


def save_checkpoint(path: str | os.PathLike, model, optimizer, *, epoch: int,
                    history: list[dict], extra: dict | None = None) -> Path:
    """Write everything needed to continue training exactly after ``epoch`` (1-based, completed)."""
    from safetensors.numpy import save

    tensors = {f"model/{name}": np.ascontiguousarray(to_numpy(a)) for name, a in model.state_dict().items()}
    optim_scalars = {}
    for pname, slot in optimizer.state.items():
        for key, value in slot.items():
            if hasattr(value, "shape"):
                tensors[f"optim/{pname}/{key}"] = np.ascontiguousarray(to_numpy(value))
            else:
                optim_scalars.setdefault(pname, {})[key] = value
    meta = {
        "version": CHECKPOINT_VERSION,
        "epoch": int(epoch),
        "optimizer": {"type": type(optimizer).__name__, "config": optimizer.get_config(),
                      "scalars": optim_scalars},
        "model_rng": model_rng_states(model),
        "architecture": model.get_config(),
        "history": history,
        "extra": extra or {},
    }
    data = save(tensors, metadata={"cnnlab-checkpoint": json.dumps(jsonable(meta))})
    atomic.write_bytes(path, data)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, model, optimizer) -> dict:
    """Restore model weights, optimizer state, and generator states in place; returns the metadata."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = json.loads((fh.metadata() or {})["cnnlab-checkpoint"])
        tensors = load_file(str(path))
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable cnnlab checkpoint ({exc})") from None
    except Exception as exc:  # safetensors' own errors for a damaged file
        raise ConfigError(f"{path}: not a readable cnnlab checkpoint ({exc})") from None
    # Version 1 also stored the old shuffling generator's state, which nothing reads any more: such a run
    # resumes with the weights and optimizer state it had, on batches drawn the new way.
    if meta.get("version") not in (1, CHECKPOINT_VERSION):
        raise ConfigError(f"{path}: checkpoint version {meta.get('version')!r}, expected {CHECKPOINT_VERSION}")
    try:
        model.load_state_dict({k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")})
    except CnnlabError as exc:
        raise ConfigError(f"{path}: the checkpoint does not fit the model ({exc})") from None
    if meta["optimizer"]["type"] != type(optimizer).__name__:
        raise ConfigError(f"{path}: checkpoint was written by optimizer {meta['optimizer']['type']}, "
                          f"resuming with {type(optimizer).__name__}")
    state: dict[str, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            pname, _, slot = key[len("optim/"):].rpartition("/")
            state.setdefault(pname, {})[slot] = value
    for pname, scalars in meta["optimizer"]["scalars"].items():
        state.setdefault(pname, {}).update(scalars)
    optimizer.state = state
    restore_model_rng_states(model, meta.get("model_rng", {}))
    return meta


def jsonable(value):
    """Copy of ``value`` that ``json.dumps`` writes as strict JSON: NaN/inf become ``None``, NumPy -> Python."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


