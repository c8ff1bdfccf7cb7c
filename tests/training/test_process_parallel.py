"""Shards in worker processes (cnnlab.process_parallel): the same numbers as the threads, errors and workers handled."""

import os
import signal

import numpy as np
import pytest

from cnnlab import data_parallel as parallel
from cnnlab import process_parallel as processes
from cnnlab.engine.errors import ShapeError
from cnnlab.engine.layers import AvgPool2D, BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, Softmax, Tanh
from cnnlab.engine.losses import get_loss
from cnnlab.engine.model import Sequential
from cnnlab.engine.optim import Adam
from cnnlab.training.presets import build

pytestmark = pytest.mark.skipif(not processes.processes_available(), reason="worker processes need fork (Linux)")


def small_cnn(dtype=np.float64, extra=()):
    layers = [Conv2D(4, 3, padding=1), ReLU(), MaxPool2D(2), Conv2D(6, 3), Tanh(), AvgPool2D(2, stride=1), *extra,
              Flatten(), Dense(12), ReLU(), Dense(5), Softmax()]
    return Sequential(layers, (2, 12, 12), seed=0, dtype=dtype)


def batch(n, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 2, 12, 12)), rng.integers(0, 5, n)


def params_of(model):
    return [layer.params[key].copy() for layer in model.layers for key in sorted(layer.params)]


def train(step, steps=3, n=40):
    loss, opt = get_loss("crossentropy"), Adam(lr=1e-2)
    values = []
    for s in range(steps):
        x, y = batch(n, seed=s)
        values.append(step.train_step(x, y, loss, opt)[0])
    return values


@pytest.mark.parametrize("extra", [(), (Dropout(0.4),)], ids=["plain", "dropout"])
@pytest.mark.parametrize("threads", [2, 3])
def test_processes_give_the_threads_numbers_bit_for_bit_and_the_serial_ones_to_rounding(threads, extra):
    """Dropout too: this process draws the whole batch's masks as the serial step would."""
    by_threads, by_processes, serial = (small_cnn(extra=[type(layer)(layer.rate) for layer in extra])
                                        for _ in range(3))
    step = processes.ProcessDataParallel(by_processes, threads)
    try:
        losses = train(step)
        assert len(step.worker_pids) == threads - 1 and all(p.is_alive() for _, p in step._workers)
    finally:
        step.close()
    assert losses == train(parallel.DataParallel(by_threads, threads))
    for a, b in zip(params_of(by_processes), params_of(by_threads)):
        assert np.array_equal(a, b)
    np.testing.assert_allclose(losses, train(serial), rtol=1e-12)
    for a, b in zip(params_of(by_processes), params_of(serial)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_the_workers_see_parameters_the_user_replaced_between_steps():
    ours, reference = small_cnn(), small_cnn()
    step = processes.ProcessDataParallel(ours, 2)
    try:
        train(step, steps=1)
        train(reference, steps=1)
        for model in (ours, reference):  # e.g. loading weights: a new array, not an in-place update
            model.layers[0].params["W"] = np.full_like(model.layers[0].params["W"], 0.05)
        x, y = batch(40, seed=7)
        loss, opt_a, opt_b = get_loss("crossentropy"), Adam(), Adam()
        got = step.train_step(x, y, loss, opt_a)[0]
        expected = reference.train_step(x, y, loss, opt_b)[0]
    finally:
        step.close()
    assert got == pytest.approx(expected, rel=1e-12)


def test_a_failing_shard_raises_its_own_error_and_the_next_step_works():
    step = processes.ProcessDataParallel(small_cnn(), 2)
    x, y = batch(40)
    bad = np.zeros((40, 3))  # one-hot targets of the wrong width: the loss refuses them in every shard
    try:
        with pytest.raises(ShapeError):
            step.train_step(x, bad, get_loss("crossentropy"), Adam())
        assert np.isfinite(step.train_step(x, y, get_loss("crossentropy"), Adam())[0])
    finally:
        step.close()


def test_a_worker_killed_between_steps_is_replaced_and_one_killed_during_a_step_is_reported(monkeypatch):
    step = processes.ProcessDataParallel(small_cnn(), 2)
    x, y = batch(40)
    loss = get_loss("crossentropy")
    try:
        step.train_step(x, y, loss, Adam())
        first = step._workers[0][1]
        os.kill(first.pid, signal.SIGKILL)
        first.join()
        step.train_step(x, y, loss, Adam())  # noticed before the step: a new worker is forked
        assert step._workers[0][1].pid != first.pid
        victim = step._workers[0][1]
        original = step._ensure_started

        def start_then_kill():  # the worker dies after the step has checked on it, before it is sent work
            original()
            os.kill(victim.pid, signal.SIGKILL)
            victim.join()

        monkeypatch.setattr(step, "_ensure_started", start_then_kill)
        with pytest.raises(RuntimeError, match=r"training worker process \(pid \d+\) died during the step"):
            step.train_step(x, y, loss, Adam())
        monkeypatch.undo()
        assert np.isfinite(step.train_step(x, y, loss, Adam())[0])  # and the next step has a new worker
    finally:
        step.close()


def test_close_stops_the_workers_and_a_later_step_starts_new_ones():
    step = processes.ProcessDataParallel(small_cnn(), 2)
    x, y = batch(40)
    step.train_step(x, y, get_loss("crossentropy"), Adam())
    worker = step._workers[0][1]
    step.close()
    assert not worker.is_alive() and worker.exitcode == 0
    step.train_step(x, y, get_loss("crossentropy"), Adam())
    assert step._workers[0][1].is_alive()
    step.close()


def test_training_step_chooses_processes_only_for_models_whose_shards_need_not_talk(monkeypatch):
    monkeypatch.setattr(parallel, "MIN_FLOPS_PER_SAMPLE", 0)
    monkeypatch.delenv(parallel.SHARDS_VARIABLE, raising=False)
    assert isinstance(parallel.training_step(build("lenet5", seed=0), 2), processes.ProcessDataParallel)
    assert isinstance(parallel.training_step(small_cnn(extra=[Dropout(0.3)]), 2), processes.ProcessDataParallel)
    assert isinstance(parallel.training_step(small_cnn(extra=[BatchNorm()]), 2), parallel.DataParallel)
    monkeypatch.setenv(parallel.SHARDS_VARIABLE, "threads")
    assert isinstance(parallel.training_step(build("lenet5", seed=0), 2), parallel.DataParallel)
    assert parallel.training_step(build("lenet5", seed=0), 1).__class__ is Sequential


def test_fit_stops_its_workers_when_it_returns(monkeypatch):
    started = []
    original = processes.ProcessDataParallel._start

    def spy(self):
        original(self)
        started.extend(process for _, process in self._workers)

    monkeypatch.setattr(processes.ProcessDataParallel, "_start", spy)
    monkeypatch.delenv(parallel.SHARDS_VARIABLE, raising=False)
    model = build("lenet5", seed=0)
    rng = np.random.default_rng(0)
    model.fit((rng.random((64, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 64)), epochs=1, batch_size=32,
              threads=2, verbose=False, progress=False)
    assert started and all(not process.is_alive() for process in started)
