"""Moving models between NumPy and CuPy: CPU behaviour, the error without CuPy/GPU, and the move itself.

The move is checked with a stand-in "GPU" namespace (a NumPy array subclass registered as CuPy's
``ndarray``), so the test runs everywhere: it proves that every array a model and its optimizer hold
changes array type, and comes back unchanged. On a machine with CuPy and a GPU, the last test compares
real GPU training steps with the CPU.
"""

import types

import numpy as np
import pytest

from cnnlab.engine import backend
from cnnlab.training.presets import build
from cnnlab.engine.device import (available_devices, model_device, optimizer_to_device, synchronize, to_device,
                           to_device_array)
from cnnlab.engine.errors import ConfigError
from cnnlab.engine.losses import get_loss
from cnnlab.engine.optim import Adam


class FakeGpuArray(np.ndarray):
    """Marks arrays that live on the stand-in device."""


class FakeCupy(types.ModuleType):
    """Just enough of CuPy's surface: ``ndarray``, ``asarray``, ``asnumpy``, ``cuda``; the rest is NumPy."""

    ndarray = FakeGpuArray

    def __init__(self):
        super().__init__("fakecupy")
        self.synced = 0
        stream = types.SimpleNamespace(synchronize=self._sync)
        self.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
                                          get_current_stream=lambda: stream)

    def _sync(self):
        self.synced += 1

    def asarray(self, a, dtype=None):
        return np.array(a, dtype=dtype).view(FakeGpuArray)

    def asnumpy(self, a):
        return np.array(a).view(np.ndarray)

    def __getattr__(self, name):
        return getattr(np, name)


@pytest.fixture
def fake_gpu(monkeypatch):
    fake = FakeCupy()
    monkeypatch.setattr(backend, "_cupy", fake)
    return fake


@pytest.fixture
def no_cupy(monkeypatch):
    monkeypatch.setattr(backend, "_cupy", None)


def all_arrays(model, optimizer=None):
    """Every array a model holds (params, grads, buffers, caches) and its optimizer's state."""
    found = []
    for layer in model.layers:
        for value in vars(layer).values():
            if isinstance(value, dict):
                items = value.values()
            else:
                items = value if isinstance(value, (list, tuple)) else [value]
            found += [v for v in items if isinstance(v, np.ndarray)]
    if optimizer is not None:
        found += [v for slot in optimizer.state.values() for v in slot.values() if isinstance(v, np.ndarray)]
    return found


def random_batch(model, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((4, *model.input_shape), dtype=np.float32)
    y = rng.integers(0, 10, 4)
    return x, y


def test_cpu_is_always_available_and_moving_to_cpu_keeps_arrays(no_cupy):
    model = build("lenet5", seed=0)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    ids = {k: id(v) for k, v in model.state_dict().items()}
    assert available_devices() == ["cpu"]
    assert to_device(model, "cpu") is model and model_device(model) == "cpu"
    for name, value in model.state_dict().items():
        assert type(value) is np.ndarray and id(value) == ids[name]  # already NumPy: no copy
        np.testing.assert_array_equal(value, before[name])
    synchronize("cpu")  # a no-op, but must not fail


def test_gpu_without_cupy_is_a_clear_error(no_cupy):
    model = build("mlp", seed=0)
    with pytest.raises(ConfigError, match="CuPy"):
        to_device(model, "gpu")
    with pytest.raises(ConfigError, match="CuPy"):
        to_device_array(np.zeros(3), "gpu")
    assert all(type(a) is np.ndarray for a in model.state_dict().values())  # nothing half-moved


def test_gpu_without_a_usable_device_is_a_clear_error(fake_gpu):
    def no_device():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake_gpu.cuda.runtime.getDeviceCount = no_device
    with pytest.raises(ConfigError, match="needs a CUDA GPU.*no CUDA-capable device"):
        to_device(build("mlp", seed=0), "gpu")
    assert available_devices() == ["cpu"]


def test_unknown_device_names_the_choices():
    with pytest.raises(ConfigError, match="unknown device 'tpu'.*cpu, gpu"):
        to_device(build("mlp", seed=0), "tpu")


def test_every_array_moves_there_and_back(fake_gpu):
    """Params, grads, buffers, cached activations and optimizer state all change device, values intact."""
    model, optimizer, loss = build("cnn-bn", seed=1), Adam(), get_loss("crossentropy")
    x, y = random_batch(model)
    model.train_step(x, y, loss, optimizer)  # fills caches, work buffers and Adam's moments on the CPU
    state = {k: v.copy() for k, v in model.state_dict().items()}
    moments = {n: {k: v.copy() for k, v in s.items() if isinstance(v, np.ndarray)} for n, s in optimizer.state.items()}
    n_arrays = len(all_arrays(model, optimizer))

    to_device(model, "gpu", optimizer)
    assert model_device(model) == "gpu" and available_devices() == ["cpu", "gpu"]
    arrays = all_arrays(model, optimizer)
    assert len(arrays) == n_arrays and all(isinstance(a, FakeGpuArray) for a in arrays)
    assert all(isinstance(layer.grads[k], FakeGpuArray) for layer in model.layers for k in layer.grads)

    to_device(model, "cpu", optimizer)
    assert model_device(model) == "cpu"
    assert all(type(a) is np.ndarray for a in all_arrays(model, optimizer))
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, state[name])
    for name, slots in moments.items():
        for key, value in slots.items():
            np.testing.assert_array_equal(optimizer.state[name][key], value)


def test_optimizer_scalars_stay_and_arrays_move(fake_gpu):
    optimizer = Adam()
    optimizer.state = {"layers.0.W": {"m": np.ones(3, np.float32), "step": 7}}
    optimizer_to_device(optimizer, "gpu")
    assert isinstance(optimizer.state["layers.0.W"]["m"], FakeGpuArray)
    assert optimizer.state["layers.0.W"]["step"] == 7


def test_synchronize_waits_on_the_gpu_stream(fake_gpu):
    synchronize("gpu")
    assert fake_gpu.synced == 1


def test_real_gpu_training_step_matches_cpu():
    """On a CUDA machine: one Adam step of lenet5 on CuPy gives the CPU's loss and weights (float32)."""
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed (optional: pip install cnnlab[gpu])")
    if "gpu" not in available_devices():
        pytest.skip("CuPy is installed but no CUDA GPU is usable")
    loss = get_loss("crossentropy")
    cpu_model, gpu_model = build("lenet5", seed=2), to_device(build("lenet5", seed=2), "gpu")
    cpu_opt, gpu_opt = Adam(), Adam()
    x, y = random_batch(cpu_model, seed=3)
    cpu_loss, _ = cpu_model.train_step(x, y, loss, cpu_opt)
    gpu_loss, out = gpu_model.train_step(cupy.asarray(x), cupy.asarray(y), loss, gpu_opt)
    assert isinstance(out, cupy.ndarray)
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-4)
    to_device(gpu_model, "cpu")
    for name, value in cpu_model.state_dict().items():
        np.testing.assert_allclose(gpu_model.state_dict()[name], value, rtol=1e-4, atol=1e-5)


def test_fit_on_the_gpu_trains_there_and_matches_the_cpu(fake_gpu):
    """``fit(device="gpu")`` moves the model and the optimizer, copies every batch and its labels over,
    and computes exactly what the CPU computes; evaluation follows the model to its device."""
    from cnnlab.training.loop import evaluate, fit

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 64)
    val = (images[:16], labels[:16])
    results = {}
    seen = []  # the array types of the batches and labels train_step received
    for device in ("cpu", "gpu"):
        model = build("lenet5", seed=0)
        step = model.train_step
        model.train_step = lambda x, y, *rest, step=step: seen.append((device, type(x), type(y))) or step(x, y, *rest)
        optimizer = Adam(lr=1e-3)
        history = fit(model, (images, labels), val, epochs=2, batch_size=16, optimizer=optimizer, seed=1,
                      progress=False, verbose=False, device=device, threads=1)  # the same serial step on both
        # (the stand-in's xp.empty makes plain NumPy work buffers, so we look at what training updates)
        kept = list(model.state_dict().values()) + [v for slot in optimizer.state.values() for v in slot.values()
                                                    if isinstance(v, np.ndarray)]
        on_device = all(type(a) is FakeGpuArray for a in kept)
        results[device] = (history, model, on_device, evaluate(model, val))
    cpu, gpu = results["cpu"], results["gpu"]
    assert gpu[2] and not cpu[2] and model_device(gpu[1]) == "gpu"
    assert {types for types in seen if types[0] == "gpu"} == {("gpu", FakeGpuArray, FakeGpuArray)}
    assert {types for types in seen if types[0] == "cpu"} == {("cpu", np.ndarray, np.ndarray)}
    with pytest.raises(ConfigError, match="the model is on the gpu, but device 'cpu' was asked for"):
        evaluate(gpu[1], val, device="cpu")
    for row_cpu, row_gpu in zip(cpu[0].rows, gpu[0].rows):
        for key in ("train_cost", "train_accuracy", "val_cost", "val_accuracy"):
            assert row_gpu[key] == pytest.approx(row_cpu[key], rel=1e-6)
    for name, value in cpu[1].state_dict().items():
        np.testing.assert_allclose(backend.to_numpy(gpu[1].state_dict()[name]), value, rtol=1e-5, atol=1e-7)
    assert gpu[3].accuracy == cpu[3].accuracy and np.array_equal(gpu[3].confusion, cpu[3].confusion)
