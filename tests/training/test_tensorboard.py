"""``--tensorboard DIR``: the event files written are read back, record by record, and checked."""

from __future__ import annotations

import struct
import sys

import numpy as np
import pytest

pytest.importorskip("tensorboardX", reason="tensorboardX (the 'tensorboard' extra) is not installed")

from tensorboardX.proto.event_pb2 import Event  # noqa: E402

from cnnlab.engine.errors import ConfigError  # noqa: E402
from cnnlab.training.loop import fit  # noqa: E402
from cnnlab.training.presets import build  # noqa: E402
from cnnlab.training.tensorboard import TensorBoardLogger  # noqa: E402


def read_events(logdir):
    """Every Event in the folder's event files (TFRecord framing: length, CRC, data, CRC)."""
    events = []
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            events.append(Event.FromString(data[pos + 12:pos + 12 + length]))
            pos += 12 + length + 4
    return events


def scalars(events) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for event in events:
        for value in event.summary.value:
            if value.HasField("simple_value"):
                out.setdefault(value.tag, {})[event.step] = value.simple_value
    return out


def histogram_tags(events) -> set[str]:
    return {v.tag for e in events for v in e.summary.value if v.HasField("histo")}


def tiny_data(n, seed):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n)


def test_epoch_metrics_and_weight_histograms_are_logged(tmp_path):
    model = build("mlp:784-8-10")
    logdir = tmp_path / "tb" / "run-a"
    history = fit(model, tiny_data(40, 0), tiny_data(20, 1), epochs=2, batch_size=10, optimizer="sgd", lr=0.1,
                  callbacks=[TensorBoardLogger(logdir)], progress=False, verbose=False, threads=1)
    events = read_events(logdir)
    logged = scalars(events)
    for key, tag in (("train_cost", "cost/train"), ("val_cost", "cost/val"), ("val_accuracy", "accuracy/val"),
                     ("lr", "lr")):
        assert logged[tag] == pytest.approx({row["epoch"]: row[key] for row in history.rows}), tag
    assert set(logged["cost/train"]) == {1, 2}
    assert histogram_tags(events) == {f"weights/{name}" for name, _, _ in model.parameters()}


def test_switched_off_monitors_are_not_logged(tmp_path):
    fit(build("mlp:784-8-10"), tiny_data(30, 2), None, epochs=1, batch_size=10, optimizer="sgd", lr=0.1,
        callbacks=[TensorBoardLogger(tmp_path, histograms=False)], progress=False, verbose=False, threads=1,
        monitors={"train_accuracy": False})
    events = read_events(tmp_path)
    assert set(scalars(events)) == {"cost/train", "lr", "seconds"}  # no validation set, no train accuracy
    assert histogram_tags(events) == set()


def test_a_file_as_logdir_and_a_missing_tensorboardx_are_clear_errors(tmp_path, monkeypatch):
    (tmp_path / "f").write_text("mine")
    with pytest.raises(ConfigError, match=r"is a file; expected a folder for the event files"):
        TensorBoardLogger(tmp_path / "f")
    assert (tmp_path / "f").read_text() == "mine"
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"needs the tensorboardX package: pip install 'cnnlab\[tensorboard\]'"):
        TensorBoardLogger(tmp_path / "tb")


def test_cnnlab_train_tensorboard_option(fake_mnist, tmp_path, capsys):
    from cnnlab.cli import main

    logdir = tmp_path / "tb"
    code = main(["train", "--arch", "mlp:784-8-10", "--data-dir", str(fake_mnist.data_dir), "--val-split", "20",
                 "--epochs", "2", "--batch-size", "10", "--no-progress", "--out", str(tmp_path / "runs"),
                 "--name", "r", "--tensorboard", str(logdir)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    logged = scalars(read_events(logdir))
    assert set(logged["accuracy/val"]) == {1, 2} and set(logged["cost/train"]) == {1, 2}
    assert (tmp_path / "runs" / "r" / "metrics.csv").is_file()  # beside the CSV, not instead of it
