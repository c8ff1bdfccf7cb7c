"""The data-parallel training step (cnnlab.data_parallel): same gradients and updates as the serial step."""

import time

import numpy as np
import pytest

from cnnlab import data_parallel as parallel
from cnnlab import threads as threading_tools
from cnnlab.training.presets import build
from cnnlab.engine.errors import ConfigError
from cnnlab.engine.layers import (AvgPool2D, BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, Sigmoid,
                           Softmax, Tanh)
from cnnlab.engine.losses import get_loss
from cnnlab.engine.model import Sequential
from cnnlab.engine.optim import Adam


def on_threads(model, threads):
    """The model itself for one thread, else its DataParallel wrapper: both have train_step."""
    return model if threads == 1 else parallel.DataParallel(model, threads)


def small_cnn(threads, dtype=np.float64, head=Softmax, extra=()):
    """A little CNN on (2, 12, 12) images with every shardable layer kind; seed 0; on ``threads``."""
    layers = [Conv2D(4, 3, padding=1), ReLU(), MaxPool2D(2), Conv2D(6, 3), Tanh(), AvgPool2D(2, stride=1),
              *extra, Flatten(), Dense(12), Sigmoid(), Dense(5), head()]
    return on_threads(Sequential(layers, (2, 12, 12), seed=0, dtype=dtype), threads)


def model_of(step):
    return getattr(step, "model", step)


@pytest.fixture(autouse=True)
def shards_in_threads(monkeypatch):
    """These tests are about the threads; tests/training/test_process_parallel.py tests the processes."""
    monkeypatch.setenv(parallel.SHARDS_VARIABLE, "threads")


@pytest.fixture
def any_size(monkeypatch):
    """Let the small test models shard (real presets are big enough on their own)."""
    monkeypatch.setattr(parallel, "MIN_FLOPS_PER_SAMPLE", 0)


@pytest.fixture
def sharded_calls(monkeypatch):
    """Count sharded steps, so that a test cannot pass by silently taking the serial path."""
    calls = []
    original = parallel.DataParallel.compute_gradients

    def spy(self, *args):
        calls.append(len(args[0]))
        return original(self, *args)

    monkeypatch.setattr(parallel.DataParallel, "compute_gradients", spy)
    return calls


def batch(n, shape=(2, 12, 12), classes=5, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)), rng.integers(0, classes, n)


def grads_of(model):
    model = model_of(model)
    return {f"{i}.{k}": g.copy() for i, layer in enumerate(model.layers) for k, g in layer.grads.items()}


def assert_close(a: dict, b: dict, rtol):
    assert a.keys() == b.keys() and a
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=rtol * np.abs(a[key]).max(), err_msg=key)


@pytest.mark.parametrize("n, threads", [(32, 2), (17, 2), (27, 3)])  # even and uneven shards
def test_gradients_and_loss_equal_the_serial_step(any_size, sharded_calls, n, threads):
    x, y = batch(n)
    serial, sharded = small_cnn(1), small_cnn(threads)
    loss = get_loss("crossentropy")
    v1, out1 = serial.train_step(x, y, loss, Adam())
    v2, out2 = sharded.train_step(x, y, loss, Adam())
    assert sharded_calls == [n]
    assert v2 == pytest.approx(v1, rel=1e-12)
    np.testing.assert_allclose(out2, out1, rtol=1e-12)
    assert_close(grads_of(serial), grads_of(sharded), rtol=1e-10)


def test_unfused_loss_gives_the_same_gradients(any_size, sharded_calls):
    """Quadratic loss on a Sigmoid output: the loss gradient goes through the last activation's backward."""
    x, _ = batch(24)
    target = np.random.default_rng(2).random((24, 5))
    serial, sharded = small_cnn(1, head=Sigmoid), small_cnn(2, head=Sigmoid)
    loss = get_loss("quadratic")
    v1, _ = serial.train_step(x, target, loss, Adam())
    v2, _ = sharded.train_step(x, target, loss, Adam())
    assert sharded_calls == [24]
    assert v2 == pytest.approx(v1, rel=1e-12)
    assert_close(grads_of(serial), grads_of(sharded), rtol=1e-10)


def test_presets_train_to_the_same_weights_and_predictions(sharded_calls):
    """lenet5 and vgg-mini, float64: several Adam steps, then identical weights and predictions."""
    x, y = batch(16, shape=(1, 28, 28), classes=10)
    loss = get_loss("crossentropy")
    for arch in ("lenet5", "vgg-mini"):
        serial, sharded = build(arch, seed=0, dtype=np.float64), build(arch, seed=0, dtype=np.float64)
        sharded_step = parallel.DataParallel(sharded, 2)
        opt1, opt2 = Adam(lr=1e-2), Adam(lr=1e-2)
        for _ in range(3):
            serial.train_step(x, y, loss, opt1)
            sharded_step.train_step(x, y, loss, opt2)
        assert_close(grads_of(serial), grads_of(sharded), rtol=1e-5)
        state1, state2 = serial.state_dict(), sharded.state_dict()
        assert_close(state1, state2, rtol=1e-9)
        np.testing.assert_array_equal(serial.predict(x), sharded.predict(x))
    assert len(sharded_calls) == 6


def test_float32_matches_up_to_rounding(sharded_calls):
    x, y = batch(32, shape=(1, 28, 28), classes=10)
    x = x.astype(np.float32)
    serial, sharded = build("lenet5", seed=0), build("lenet5", seed=0)
    loss = get_loss("crossentropy")
    serial.train_step(x, y, loss, Adam())
    parallel.DataParallel(sharded, 2).train_step(x, y, loss, Adam())
    assert sharded_calls == [32]
    assert_close(grads_of(serial), grads_of(sharded), rtol=1e-4)


def bn_cnn(threads, dtype=np.float64):
    """small_cnn with BatchNorm after a convolution (per channel) and after a dense layer (per feature)."""
    # no bias before a BatchNorm (it would be cancelled: its gradient is rounding noise)
    layers = [Conv2D(4, 3, padding=1, use_bias=False), BatchNorm(), ReLU(), MaxPool2D(2), Conv2D(6, 3), Tanh(),
              Flatten(), Dense(12, use_bias=False), BatchNorm(), Sigmoid(), Dense(5), Softmax()]
    return on_threads(Sequential(layers, (2, 12, 12), seed=0, dtype=dtype), threads)


@pytest.mark.parametrize("n, threads", [(32, 2), (27, 3)])
def test_batchnorm_shards_use_the_whole_batch_statistics(any_size, sharded_calls, n, threads):
    """Shards add up their per-channel sums, so each normalises with the statistics of the whole batch:
    the same loss, gradients and running averages as the serial step, over several Adam steps."""
    serial, sharded = bn_cnn(1), bn_cnn(threads)
    loss = get_loss("crossentropy")
    opt1, opt2 = Adam(lr=0.01), Adam(lr=0.01)
    for step in range(3):
        x, y = batch(n, seed=step)
        v1, out1 = serial.train_step(x, y, loss, opt1)
        v2, out2 = sharded.train_step(x, y, loss, opt2)
        assert v2 == pytest.approx(v1, rel=1e-10)
        np.testing.assert_allclose(out2, out1, rtol=1e-9, atol=1e-12)
    assert sharded_calls == [n] * 3
    g1, g2 = grads_of(serial), grads_of(sharded)
    assert g1.keys() == g2.keys()
    for key in g1:
        np.testing.assert_allclose(g2[key], g1[key], rtol=1e-8, atol=1e-14, err_msg=key)
    states = serial.state_dict(), sharded.model.state_dict()
    assert any("running_mean" in key for key in states[0])
    for key, value in states[0].items():  # weights and running averages (updated once per step, not per shard)
        np.testing.assert_allclose(states[1][key], value, rtol=1e-8, atol=1e-12, err_msg=key)
    x, _ = batch(8, seed=9)
    np.testing.assert_allclose(sharded.predict_proba(x), serial.predict_proba(x), rtol=1e-8)


def test_batchnorm_models_copy_and_pickle_after_a_sharded_step(any_size, sharded_calls):
    """The replicas (which hold thread barriers) live in the wrapper, never in the model: a model trained
    in parallel copies and pickles, and its copies train in parallel again."""
    import copy
    import pickle

    step = bn_cnn(2)
    step.train_step(*batch(32), get_loss("crossentropy"), Adam())
    for twin in (copy.deepcopy(step.model), pickle.loads(pickle.dumps(step.model))):
        assert all(type(layer) in (type(own) for own in step.model.layers) for layer in twin.layers)
        x, _ = batch(4, seed=3)
        np.testing.assert_array_equal(twin.predict_proba(x), step.model.predict_proba(x))
        parallel.DataParallel(twin, 2).train_step(*batch(32), get_loss("crossentropy"), Adam())
    assert sharded_calls == [32, 32, 32]


def test_batchnorm_steps_started_in_pool_threads_do_not_wait_for_each_other(any_size, monkeypatch):
    """Steps whose shards wait for each other need all their threads at once: two at the same time, one
    of them inside our worker pool, must both finish (the one in the pool trains serially)."""
    monkeypatch.setattr(parallel, "SHARD_SUM_TIMEOUT", 20.0)
    models = [bn_cnn(2), bn_cnn(2)]
    loss = get_loss("crossentropy")
    start = time.perf_counter()
    values = threading_tools.map_in_threads(lambda m: m.train_step(*batch(32), loss, Adam())[0], models, 2)
    assert all(np.isfinite(v) for v in values) and time.perf_counter() - start < 10


def test_a_failing_batchnorm_shard_does_not_leave_the_others_waiting(any_size, sharded_calls, monkeypatch):
    """A shard that raises between two BatchNorm layers must not leave the other shard waiting for it
    at the second one: the step raises the real error, and the next step works again."""
    import threading

    monkeypatch.setattr(parallel, "SHARD_SUM_TIMEOUT", 20.0)  # a hang fails the test instead of stalling it
    model = bn_cnn(2)
    loss = get_loss("crossentropy")
    original = Tanh.forward
    failing = {"on": True}

    def forward(self, inputs, training=False, keep_cache=False):  # Tanh sits between the two BatchNorm layers
        if failing["on"] and training and threading.current_thread() is not threading.main_thread():
            raise ValueError("boom in one shard")
        return original(self, inputs, training, keep_cache)

    monkeypatch.setattr(Tanh, "forward", forward)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="boom in one shard"):
        model.train_step(*batch(32), loss, Adam())
    assert time.perf_counter() - start < 10  # released by the abort, not by the 20 s timeout
    failing["on"] = False
    value, _ = model.train_step(*batch(32), loss, Adam())
    assert np.isfinite(value) and sharded_calls == [32, 32]


@pytest.mark.parametrize("frozen", [False, True])
def test_dropout_draws_the_masks_of_the_serial_step(any_size, sharded_calls, frozen):
    x, y = batch(32)
    loss = get_loss("crossentropy")
    serial = small_cnn(1, extra=(Dropout(0.5), Dropout(0.3)))
    sharded = small_cnn(2, extra=(Dropout(0.5), Dropout(0.3)))
    for model in (serial, sharded.model):
        for layer in model.layers:
            if layer.kind == "Dropout":
                layer.freeze_mask(frozen)
    for _ in range(2):  # the second step draws new masks (or reuses the frozen ones)
        serial.train_step(x, y, loss, Adam())
        sharded.train_step(x, y, loss, Adam())
        assert_close(grads_of(serial), grads_of(sharded), rtol=1e-10)
    assert sharded_calls == [32, 32]
    masks = [(a._mask, b._mask) for a, b in zip(serial.layers, sharded.model.layers) if a.kind == "Dropout"]
    assert len(masks) == 2 and all(np.array_equal(a, b) for a, b in masks)


def test_small_models_and_small_batches_train_serially(any_size, sharded_calls, monkeypatch):
    model = small_cnn(1)
    step = parallel.training_step(model, 2)
    assert isinstance(step, parallel.DataParallel)
    loss = get_loss("crossentropy")
    step.train_step(*batch(2 * parallel.MIN_SHARD - 1), loss, Adam())  # too small to split
    assert sharded_calls == []
    step.train_step(*batch(2 * parallel.MIN_SHARD), loss, Adam())
    assert sharded_calls == [2 * parallel.MIN_SHARD]
    monkeypatch.setattr(parallel, "MIN_FLOPS_PER_SAMPLE", 10**12)  # now the model is "too small to gain"
    assert parallel.training_step(model, 2) is model
    assert parallel.training_step(small_cnn(1, extra=(Dropout(0.5),)), 1).__class__.__name__ == "Sequential"


def test_replicas_share_parameters_but_not_gradients_or_buffers(any_size):
    step = small_cnn(2)
    step.train_step(*batch(32), get_loss("crossentropy"), Adam())
    conv = step.model.layers[0]
    twins = [replica.layers[0] for replica in step.replicas]
    for twin in twins:
        assert twin.params is conv.params
        assert twin.grads is not conv.grads and twin._work is not conv._work
    assert twins[0]._work["padded"] is not twins[1]._work["padded"]


def test_replaced_parameter_arrays_are_used(any_size):
    """A device move or a loader may replace a layer's params dict: the next sharded step must see it."""
    x, y = batch(32)
    loss = get_loss("crossentropy")
    serial, sharded = small_cnn(1), small_cnn(2)
    sharded.train_step(x, y, loss, Adam())  # builds the replicas
    for src, dst in zip(serial.layers, sharded.model.layers):
        dst.params = {k: v.copy() for k, v in src.params.items()}
    serial.train_step(x, y, loss, Adam())
    sharded.train_step(x, y, loss, Adam())
    assert_close(grads_of(serial), grads_of(sharded), rtol=1e-10)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_threads_must_be_a_positive_integer(threads):
    with pytest.raises(ConfigError, match="threads"):
        parallel.DataParallel(small_cnn(1), threads)
    with pytest.raises(ConfigError, match="threads"):
        parallel.training_step(small_cnn(1), threads)


def test_predict_proba_runs_batches_in_threads_with_the_same_result(monkeypatch):
    calls = []
    original = parallel.map_in_threads
    monkeypatch.setattr(parallel, "map_in_threads", lambda fn, items, threads: calls.append(len(items))
                        or original(fn, items, threads))
    x, _ = batch(50)
    # Same weights, BatchNorm and Dropout included: inference caches nothing, so any layer may run in threads.
    serial = small_cnn(1, extra=(BatchNorm(), Dropout(0.5)))
    threaded = small_cnn(2, extra=(BatchNorm(), Dropout(0.5)))
    expected = serial.predict_proba(x, batch_size=7)
    assert isinstance(threaded, parallel.DataParallel)
    got = threaded.predict_proba(x, batch_size=7)
    assert calls == [8]  # ceil(50 / 7) batches, in order
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_array_equal(threaded.predict(x, batch_size=7), expected.argmax(axis=1))


def test_map_in_threads_keeps_order_and_raises():
    assert threading_tools.map_in_threads(lambda v: v * v, list(range(20)), 3) == [v * v for v in range(20)]

    def fail_on_seven(v):
        if v == 7:
            raise ValueError("seven")
        return v

    with pytest.raises(ValueError, match="seven"):
        threading_tools.map_in_threads(fail_on_seven, list(range(10)), 2)


def test_cnnlab_threads_sets_the_default_thread_count(monkeypatch):
    monkeypatch.delenv(threading_tools.THREADS_VARIABLE, raising=False)
    cores = threading_tools.default_threads()
    assert cores >= 1
    monkeypatch.setenv(threading_tools.THREADS_VARIABLE, str(cores + 3))
    assert threading_tools.default_threads() == cores + 3
    for bad in ("0", "-2", "two", "1.5"):
        monkeypatch.setenv(threading_tools.THREADS_VARIABLE, bad)
        with pytest.raises(ConfigError, match=f"CNNLAB_THREADS must be a positive integer.*{bad!r}"):
            threading_tools.default_threads()


def test_threads_none_follows_cnnlab_threads(any_size, sharded_calls, monkeypatch):
    x, y = batch(32)
    model = small_cnn(1)
    monkeypatch.setenv(threading_tools.THREADS_VARIABLE, "1")
    assert parallel.training_step(model) is model  # one thread: the serial step
    monkeypatch.setenv(threading_tools.THREADS_VARIABLE, "2")
    step = parallel.training_step(model)
    step.train_step(x, y, get_loss("crossentropy"), Adam())
    assert sharded_calls == [32] and step.threads == 2


class FakeBlas:
    """Stands in for threadpoolctl's controller, with its semantics: ``limit()`` sets the count and
    remembers the one it found, which ``restore_original_limits()`` puts back. (Real OpenBLAS may ignore
    counts set from threads other than the main one, which would make a real-BLAS test depend on it.)"""

    def __init__(self, threads):
        self.threads = threads

    def limit(self, limits, user_api):
        blas, found = self, self.threads

        class Limiter:
            def restore_original_limits(self):
                blas.threads = found

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.restore_original_limits()

        self.threads = limits
        return Limiter()


def test_overlapping_calls_restore_the_blas_threads_when_the_last_one_ends(monkeypatch):
    """A enters, B enters, A leaves, B leaves: BLAS stays at 1 until B leaves, then gets its 3 threads back."""
    import threading

    blas = FakeBlas(3)
    monkeypatch.setattr(threading_tools, "_CONTROLLER", [blas])
    inside = {"a": threading.Event(), "b": threading.Event()}
    release = {"a": threading.Event(), "b": threading.Event()}

    def call(name):
        def hold(_):
            inside[name].set()
            assert release[name].wait(10)
        threading_tools.map_in_threads(hold, [0, 1], 2)

    a, b = threading.Thread(target=call, args=("a",)), threading.Thread(target=call, args=("b",))
    a.start()
    assert inside["a"].wait(10) and blas.threads == 1
    b.start()
    assert inside["b"].wait(10)
    release["a"].set()
    a.join(10)
    assert not a.is_alive() and blas.threads == 1  # B still runs: BLAS stays on one thread
    release["b"].set()
    b.join(10)
    assert not b.is_alive() and blas.threads == 3  # the last one out restored the count found first

    def fail(_):
        raise ValueError("no")

    with pytest.raises(ValueError):
        threading_tools.map_in_threads(fail, [0, 1], 2)
    assert blas.threads == 3  # also after an exception


def test_map_in_threads_waits_for_its_helpers_when_the_caller_raises():
    import threading
    import time

    caller = threading.current_thread()
    helper_started, running, calls = threading.Event(), [], []

    def fn(item):
        calls.append(item)
        if threading.current_thread() is caller:
            assert helper_started.wait(10)
            raise ValueError("caller failed")
        running.append(item)
        helper_started.set()
        time.sleep(0.2)  # still busy when the caller raises
        running.remove(item)

    with pytest.raises(ValueError, match="caller failed"):
        threading_tools.map_in_threads(fn, list(range(10)), 2)
    assert running == []  # the helper had finished before the exception reached us
    assert len(calls) < 10  # and took no new item after the failure


def test_dropout_draw_mask_is_the_mask_forward_uses():
    x = np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32)
    by_forward, by_draw = Dropout(0.3, seed=5), Dropout(0.3, seed=5)
    for layer in (by_forward, by_draw):
        layer.build((3, 5, 5), np.random.default_rng(0))
    out = by_forward.forward(x, training=True)
    mask = by_draw.draw_mask(x.shape, x.dtype)
    assert mask.dtype == np.float32 and by_draw._mask is mask
    np.testing.assert_array_equal(mask, by_forward._mask)
    np.testing.assert_array_equal(out, x * mask)
    assert set(np.unique(mask)) <= {0.0, np.float32(1 / 0.7)} and 0 < (mask == 0).mean() < 0.6
    assert not np.array_equal(by_draw.draw_mask(x.shape, x.dtype), mask)  # a fresh draw each time ...
    by_draw.freeze_mask(True)
    frozen = by_draw._mask
    assert by_draw.draw_mask(x.shape, x.dtype) is frozen  # ... unless the mask is fixed


def test_sharded_step_draws_dropout_masks_without_a_forward_pass(any_size, sharded_calls, monkeypatch):
    """The model's own Dropout layers only draw masks; the replicas alone run forward passes."""
    model = small_cnn(2, extra=(Dropout(0.5),))
    own = next(layer for layer in model.model.layers if layer.kind == "Dropout")
    forwarded = []
    original = Dropout.forward
    monkeypatch.setattr(Dropout, "forward", lambda self, x, training=False, keep_cache=False: forwarded.append(self)
                        or original(self, x, training, keep_cache))
    model.train_step(*batch(32), get_loss("crossentropy"), Adam())
    assert sharded_calls == [32] and len(forwarded) == 2
    assert own not in forwarded and own._mask.shape == (32, *own.input_shape)
