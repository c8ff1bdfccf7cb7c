"""The fit loop: learning, monitors, schedules, callbacks, stops (early, Ctrl-C, NaN), exact resume."""

import os

import numpy as np
import pytest

from cnnlab.engine.errors import NumericalError, ShapeError
from cnnlab.engine.layers import BatchNorm, Dense, Dropout, Flatten, ReLU, Softmax
from cnnlab.engine.model import Sequential
from cnnlab.engine.optim import Adam, StepLR
from cnnlab.training.callbacks import Callback, History, format_row
from cnnlab.data.batches import batch_bounds
from cnnlab.data.normalize import normalize
from cnnlab.training.loop import evaluate, fit


def toy_data(n=400, seed=0, classes=4):
    """uint8 images (N, 1, 8, 8): class k lights up row block k (plus noise), easy to learn."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    images = rng.integers(0, 60, (n, 1, 8, 8)).astype(np.uint8)
    for k in range(classes):
        images[labels == k, 0, 2 * k:2 * k + 2, :] = 220
    return images, labels


def small_model(seed=0, dropout=0.0):
    layers = [Flatten(), Dense(16), ReLU()]
    if dropout:
        layers.append(Dropout(dropout))
    return Sequential(layers + [Dense(4), Softmax()], (1, 8, 8), seed=seed)


def test_fit_learns_and_records_every_monitor():
    train, val = toy_data(400, 0), toy_data(100, 1)
    model = small_model()
    history = fit(model, train, val, epochs=4, batch_size=20, optimizer="adam", lr=0.01,
                  progress=False, verbose=False)
    assert isinstance(history, History) and history.stop_reason == "completed"
    assert [r["epoch"] for r in history.rows] == [1, 2, 3, 4]
    assert history["val_accuracy"][-1] > 0.95
    assert history["train_cost"][-1] < history["train_cost"][0]
    assert all(r["seconds"] > 0 and r["lr"] == 0.01 for r in history.rows)
    assert history.best["val_accuracy"] == max(history["val_accuracy"])
    assert evaluate(model, val).accuracy == pytest.approx(history["val_accuracy"][-1])


def test_running_training_monitors_need_no_extra_forward_pass():
    """Training accuracy comes from the logits train_step returns: one forward per batch, no more."""
    images, labels = toy_data(100)
    model = small_model()
    calls = []
    original = model.forward
    model.forward = lambda x, training=False, stop=None: calls.append(training) or original(x, training, stop)
    history = fit(model, (images, labels), epochs=1, batch_size=25, progress=False, verbose=False)
    assert calls == [True] * 4
    assert 0 <= history["train_accuracy"][0] <= 1 and history["train_cost"][0] > 0


def test_switched_off_monitors_are_none_and_full_train_eval_is_inference():
    train = toy_data(120)
    history = fit(small_model(), train, toy_data(40, 1), epochs=1, batch_size=40, progress=False,
                  verbose=False, monitors={"train_accuracy": False, "val_cost": False})
    row = history.rows[0]
    assert row["train_accuracy"] is None and row["val_cost"] is None
    assert row["train_cost"] is not None and row["val_accuracy"] is not None

    model = small_model()
    history = fit(model, train, epochs=1, batch_size=40, progress=False, verbose=False, full_train_eval=True)
    after = evaluate(model, train, loss="crossentropy")  # the weights at the end of the epoch
    assert history["train_accuracy"][0] == pytest.approx(after.accuracy)
    assert history["train_cost"][0] == pytest.approx(after.loss, rel=1e-5)


def test_schedule_sets_the_learning_rate_each_epoch():
    history = fit(small_model(), toy_data(60), epochs=5, batch_size=30, optimizer="sgd", lr=0.4,
                  schedule=StepLR(0.4, step_size=2, gamma=0.5), progress=False, verbose=False)
    assert history["lr"] == pytest.approx([0.4, 0.4, 0.2, 0.2, 0.1])


def test_progress_bar_and_epoch_line(capsys):
    from cnnlab.training.callbacks import ProgressBar

    fit(small_model(), toy_data(100), toy_data(20, 1), epochs=2, batch_size=10, progress=False, verbose=True,
        callbacks=[ProgressBar(every=2, mininterval=0)])
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2 and lines[1].startswith("epoch 2/2")
    assert "train cost" in lines[0] and "val cost" in lines[0] and lines[0].endswith(" s")
    assert "epoch 1/2" in err and "loss " in err  # tqdm's bar with the running loss


def test_format_row_leaves_out_switched_off_monitors():
    row = {"epoch": 3, "train_cost": None, "train_accuracy": None, "val_cost": 0.25, "val_accuracy": 0.9512,
           "lr": 0.001, "seconds": 1.25}
    assert format_row(row, 10) == "epoch  3/10  val cost 0.2500 acc 95.12%  lr 1.0e-03  1.2 s"


class Poison(Callback):
    """Puts a NaN into the output layer's weights after epoch ``at`` (as a diverging run would)."""

    def __init__(self, at):
        self.at = at

    def on_epoch_end(self, state, row):
        if row["epoch"] == self.at:
            state.model.layers[-2].params["W"][0, 0] = np.nan


def test_nan_loss_stops_with_a_clear_error():
    with pytest.raises(NumericalError, match=r"epoch 2, batch 1/3: .*nan") as info:
        fit(small_model(), toy_data(60), epochs=5, batch_size=20, callbacks=[Poison(1)],
            progress=False, verbose=False)
    assert info.value.history.stop_reason == "diverged"
    assert info.value.history.epochs_done == 1


class Interrupt(Callback):
    def __init__(self, epoch, batch):
        self.at = (epoch, batch)

    def on_batch_end(self, state, batch, loss):
        if (state.epoch, batch) == self.at:
            raise KeyboardInterrupt


def test_ctrl_c_stops_cleanly_and_callbacks_still_finish():
    ended = []

    class End(Callback):
        def on_train_end(self, state):
            ended.append(state.history.stop_reason)

    history = fit(small_model(), toy_data(60), epochs=5, batch_size=20, callbacks=[Interrupt(2, 1), End()],
                  progress=False, verbose=False)
    assert history.stop_reason == "interrupted" and history.epochs_done == 1
    assert ended == ["interrupted"]


def test_early_stopping_waits_patience_epochs():
    class Frozen(Callback):  # validation accuracy never improves after epoch 1
        def on_epoch_end(self, state, row):
            row["val_accuracy"] = 0.5 if row["epoch"] == 1 else 0.4

    history = fit(small_model(), toy_data(40), toy_data(20, 1), epochs=10, batch_size=20, early_stop=2,
                  callbacks=[Frozen()], progress=False, verbose=False)
    assert history.stop_reason == "early_stop" and history.epochs_done == 3


def test_resume_from_checkpoint_gives_identical_weights(tmp_path):
    """2 epochs straight == 1 epoch, checkpoint, fresh objects, 1 more epoch (dropout + augmentation)."""
    from cnnlab.data.augment import Augmentation
    from cnnlab.training.checkpoint import load_checkpoint, save_checkpoint

    data = toy_data(90)
    kw = dict(batch_size=20, augment=Augmentation(rotation=10, shift=1, scale=0.05), progress=False, verbose=False)

    straight = small_model(dropout=0.3)
    fit(straight, data, epochs=2, optimizer=Adam(0.01), seed=3, **kw)

    first, opt = small_model(dropout=0.3), Adam(0.01)
    history = fit(first, data, epochs=1, optimizer=opt, seed=3, **kw)
    save_checkpoint(tmp_path / "ckpt.safetensors", first, opt, epoch=1, history=history.rows)

    second, opt2 = small_model(seed=99, dropout=0.3), Adam(0.01)
    meta = load_checkpoint(tmp_path / "ckpt.safetensors", second, opt2)
    resumed = fit(second, data, epochs=2, optimizer=opt2, seed=3, initial_epoch=meta["epoch"],
                  history=History(meta["history"]), **kw)

    assert [r["epoch"] for r in resumed.rows] == [1, 2]
    for name, value in straight.state_dict().items():
        np.testing.assert_array_equal(second.state_dict()[name], value, err_msg=name)


def test_normalize_scales_standardises_and_flattens():
    images = np.full((2, 1, 2, 2), 255, np.uint8)
    x = normalize(images)
    assert x.dtype == np.float32 and x.max() == 1.0
    x = normalize(images, {"scale": 1 / 255, "mean": 0.5, "std": 0.25}, input_shape=(4,))
    assert x.shape == (2, 4) and np.allclose(x, 2.0)
    with pytest.raises(ShapeError, match=r"model expects \(3,\)"):
        normalize(images, input_shape=(3,))


@pytest.mark.data
def test_mlp_learns_real_mnist_subset():
    from cnnlab.data.loading import load_dataset

    folder = os.environ.get("CNNLAB_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "datasets"))
    if not os.path.isfile(os.path.join(folder, "mnist", "t10k-images-idx3-ubyte.gz")):
        pytest.skip("MNIST files not found (set CNNLAB_DATA)")
    test = load_dataset("mnist", "test", folder, download=False, progress=False)
    train, val = test.subset(np.arange(500)), test.subset(np.arange(500, 1000))
    from cnnlab.training.presets import build

    model = build("mlp:784-30-10", seed=0, output="softmax")
    history = fit(model, train, val, epochs=2, batch_size=10, optimizer="sgd", lr=0.5,
                  progress=False, verbose=False)
    # chance is 10%; six batch seeds gave 70.4-78.6% after these two epochs on 500 images
    assert history["val_accuracy"][-1] > 0.65


def test_batch_bounds_fold_a_single_last_sample_only_when_asked():
    assert batch_bounds(21, 10) == [0, 10, 20, 21]
    assert batch_bounds(21, 10, fold_single=True) == [0, 10, 21]
    assert batch_bounds(22, 10, fold_single=True) == [0, 10, 20, 22]
    assert batch_bounds(1, 10, fold_single=True) == [0, 1]


def test_batchnorm_model_trains_when_the_last_batch_holds_one_image():
    """21 images in batches of 10: the 21st joins the second batch instead of failing alone in BatchNorm."""
    images, labels = toy_data(21)
    model = Sequential([Flatten(), Dense(8), BatchNorm(), ReLU(), Dense(4), Softmax()], (1, 8, 8), seed=0)
    sizes = []
    original = model.train_step
    model.train_step = lambda x, y, loss, opt: sizes.append(len(x)) or original(x, y, loss, opt)
    history = fit(model, (images, labels), epochs=2, batch_size=10, progress=False, verbose=False)
    assert history.stop_reason == "completed"
    assert sizes == [10, 11, 10, 11]


@pytest.mark.parametrize("options, message", [
    ({"batch_size": 0}, "batch_size must be an integer >= 1, received 0"),
    ({"batch_size": 2.5}, "batch_size must be an integer >= 1"),
    ({"epochs": -1}, "epochs must be an integer >= 0"),
])
def test_fit_refuses_bad_counts(options, message):
    from cnnlab.engine.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        fit(small_model(), toy_data(20), **options, progress=False, verbose=False)


def test_early_stop_without_validation_accuracy_is_refused():
    from cnnlab.engine.errors import ConfigError

    with pytest.raises(ConfigError, match="early_stop=2 .* there is no validation set"):
        fit(small_model(), toy_data(40), epochs=3, early_stop=2, progress=False, verbose=False)
    with pytest.raises(ConfigError, match="the val_accuracy monitor is off"):
        fit(small_model(), toy_data(40), toy_data(20, 1), epochs=3, early_stop=2,
            monitors={"val_accuracy": False}, progress=False, verbose=False)
