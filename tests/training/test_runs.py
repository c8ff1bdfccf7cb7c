"""Run folders: layout, atomic files, model files, checkpoints, exact resume, NaN and Ctrl-C behaviour.

Uses the real MNIST files (a few hundred images) from ``$CNNLAB_DATA``; skipped when they are absent.
"""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from cnnlab.training.config import TrainConfig
from cnnlab.engine.errors import ConfigError, NumericalError
from cnnlab.io import load_model, read_model_info
from cnnlab.data.loading import load_dataset
from cnnlab.training.checkpoint import load_checkpoint
from cnnlab.training.recipes import load_data
from cnnlab.training.runs import RunFolder, train_run
from cnnlab.training.callbacks import Callback

DATA = Path(os.environ.get("CNNLAB_DATA", Path(__file__).resolve().parents[3] / "shared" / "datasets"))
pytestmark = [
    pytest.mark.data,
    pytest.mark.skipif(not (DATA / "mnist" / "train-images-idx3-ubyte.gz").is_file(),
                       reason="MNIST files not found (set CNNLAB_DATA)"),
]

SMALL = dict(arch="mlp:784-16-10", dataset="mnist", data_dir=str(DATA), train_subset=300, val_split=200,
             batch_size=20, optimizer="momentum", lr=0.1, epochs=2, progress=False, test=False, seed=3)


def quiet(*_):
    pass


def test_run_folder_holds_every_file_and_the_model_loads(tmp_path):
    config = TrainConfig(**SMALL, out=str(tmp_path), name="first", lmbda=5.0)
    run, history, model = train_run(config, echo=quiet)
    assert run.path == tmp_path / "first"
    names = sorted(p.name for p in run.path.iterdir())
    assert names == sorted(["config.json", "metrics.csv", "metrics.json", "model.safetensors", "best.safetensors",
                            "checkpoint.safetensors", "curves.png", "summary.json"])  # no temporary files
    record = json.loads(run.config.read_text())
    assert record["config"]["seed"] == 3 and record["versions"]["numpy"] == np.__version__
    assert record["resolved"]["weight_decay"] == pytest.approx(5.0 / 300)  # classic L2: λ / n_train
    assert record["resolved"]["n_train"] == 300 and record["resolved"]["n_val"] == 200

    rows = json.loads(run.metrics_json.read_text())
    with open(run.metrics_csv) as fh:
        csv_rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == [1, 2] and len(csv_rows) == 2
    assert float(csv_rows[1]["val_accuracy"]) == pytest.approx(rows[1]["val_accuracy"])
    assert rows == history.rows

    loaded = load_model(run.model)
    x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
    info = read_model_info(run.model)
    assert info["preprocessing"]["scale"] == pytest.approx(1 / 255) and info["class_names"][3] == "3"
    assert "thin_strokes" not in info["preprocessing"]  # trained on MNIST's strokes: fat ones get narrowed
    best = read_model_info(run.best)["extra"]
    assert best["epoch"] == history.best["epoch"] and best["val_accuracy"] == history.best["val_accuracy"]
    assert run.curves.read_bytes()[:4] == b"\x89PNG"


def test_a_model_trained_with_thickness_augmentation_keeps_fat_strokes(tmp_path):
    from cnnlab.recognition.preprocess import thins_strokes

    config = TrainConfig(**{**SMALL, "epochs": 1}, augment=True, augment_options={"thickness": 0.5},
                         out=str(tmp_path))
    run, _, _ = train_run(config, echo=quiet)
    assert not thins_strokes(read_model_info(run.model)["preprocessing"])


def test_standardize_stores_the_training_split_statistics_and_evaluation_uses_them(tmp_path):
    from cnnlab.training.recipes import preprocessing_for
    from cnnlab.training.loop import evaluate

    run, _, model = train_run(TrainConfig(**{**SMALL, "epochs": 1, "test": True}, standardize=True,
                                          out=str(tmp_path)), echo=quiet)
    pre = read_model_info(run.model)["preprocessing"]
    train_images = load_data(TrainConfig(**SMALL), quiet)[0].images / 255.0
    assert pre["mean"] == pytest.approx(train_images.mean(), abs=1e-6)  # MNIST: about 0.13 and 0.31
    assert pre["std"] == pytest.approx(train_images.std(), abs=1e-6)
    # per channel, on colour images; a constant channel is only shifted
    two = np.stack([np.full((4, 2, 2), 51), np.arange(16).reshape(4, 2, 2)], axis=1).astype(np.uint8)
    pre = preprocessing_for("folder:x", (2, 2, 2), standardize_with=two)
    assert pre["mean"] == pytest.approx([0.2, 7.5 / 255], abs=1e-6)
    assert pre["std"] == pytest.approx([1.0, np.arange(16).std() / 255], abs=1e-6)
    # the test accuracy reported at the end used the same inputs as evaluate() on the saved file
    summary = json.loads((run.path / "summary.json").read_text())
    test = load_dataset("mnist", "test", str(DATA))
    assert evaluate(load_model(run.model), test).accuracy == pytest.approx(summary["test_accuracy"])


def test_checkpoint_is_safetensors_without_pickle(tmp_path):
    from safetensors import safe_open

    run, _, _ = train_run(TrainConfig(**{**SMALL, "epochs": 1}, out=str(tmp_path)), echo=quiet)
    with safe_open(str(run.checkpoint), framework="numpy") as fh:
        keys = set(fh.keys())
        meta = json.loads(fh.metadata()["cnnlab-checkpoint"])
    assert {"model/layers.1.W", "optim/layers.1.W/velocity"} <= keys
    assert meta["epoch"] == 1 and meta["optimizer"]["type"] == "SGD" and meta["version"] == 2
    assert "rng" not in meta  # the batches of epoch e come from (seed, e): no data generator to keep
    assert b"pickle" not in run.checkpoint.read_bytes()[:4096]


def test_resume_continues_exactly(tmp_path):
    """Two epochs straight give the same weights as one epoch, then --resume for one more (Adam, dropout)."""
    options = {**SMALL, "arch": "mlp:784-16-10", "optimizer": "adam", "lr": 0.01, "augment": True,
               "augment_options": {"rotation": 10.0, "shift": 1.0}, "out": str(tmp_path)}
    straight_run, _, straight = train_run(TrainConfig(**options, name="straight"), echo=quiet)
    part_run, _, _ = train_run(TrainConfig(**{**options, "epochs": 1}, name="part"), echo=quiet)
    resumed_run, history, resumed = train_run(TrainConfig(**{**options, "epochs": 2}), resume=part_run.path,
                                              echo=quiet)
    assert resumed_run.path == part_run.path
    assert [r["epoch"] for r in history.rows] == [1, 2]
    for name, value in straight.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], value, err_msg=name)
    straight_metrics = json.loads(straight_run.metrics_json.read_text())
    resumed_metrics = json.loads(part_run.metrics_json.read_text())
    for a, b in zip(straight_metrics, resumed_metrics):
        assert a["val_accuracy"] == b["val_accuracy"] and a["train_cost"] == pytest.approx(b["train_cost"])


def test_resume_with_no_more_epochs_says_epochs_is_the_total(tmp_path):
    """--resume RUN --epochs 1 after one epoch did nothing and printed "after epoch 1 of 1": an error now."""
    run, _, _ = train_run(TrainConfig(**{**SMALL, "epochs": 1}, out=str(tmp_path), name="one"), echo=quiet)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in run.path.iterdir())
    with pytest.raises(ConfigError, match=r"already trained 1 epochs and --epochs is the total \(1\): give --epochs 2"):
        train_run(TrainConfig(**{**SMALL, "epochs": 1}, out=str(tmp_path)), resume=run.path, echo=quiet)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in run.path.iterdir()) == before  # nothing rewritten


class Poison(Callback):
    def on_epoch_end(self, state, row):
        if row["epoch"] == 1:
            state.model.layers[-2].params["W"][:] = np.nan


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    lines = []
    with pytest.raises(NumericalError, match="epoch 2, batch 1/"):
        train_run(TrainConfig(**{**SMALL, "epochs": 3}, out=str(tmp_path), name="nan"), echo=lines.append,
                  callbacks=[Poison()])
    run = RunFolder(tmp_path / "nan")
    assert any("checkpoint of epoch 1, before the divergence, is kept" in line for line in lines)
    assert not run.model.exists()  # the diverged weights are not saved as the final model
    from cnnlab.training.presets import build
    from cnnlab.engine.optim import SGD

    model = build("mlp:784-16-10", output="softmax")
    meta = load_checkpoint(run.checkpoint, model, SGD(0.1, momentum=0.9))
    assert meta["epoch"] == 1 and all(np.isfinite(v).all() for v in model.state_dict().values())


def test_ctrl_c_saves_then_resume_finishes(tmp_path):
    class Interrupt(Callback):
        def on_batch_end(self, state, batch, loss):
            if state.epoch == 2 and batch == 3:
                raise KeyboardInterrupt

    lines = []
    run, history, _ = train_run(TrainConfig(**{**SMALL, "epochs": 3}, out=str(tmp_path)), echo=lines.append,
                                callbacks=[Interrupt()])
    assert history.stop_reason == "interrupted" and history.epochs_done == 1
    assert run.model.is_file() and any("--resume" in line for line in lines)
    _, history, _ = train_run(None, resume=run.path, echo=quiet)
    assert history.stop_reason == "completed" and [r["epoch"] for r in history.rows] == [1, 2, 3]


def test_new_runs_never_overwrite_and_bad_resume_folders_are_refused(tmp_path):
    a = RunFolder.create(tmp_path, "same")
    b = RunFolder.create(tmp_path, "same")
    assert a.path != b.path and b.path.name == "same-2"
    with pytest.raises(ConfigError, match="checkpoint.safetensors is missing"):
        RunFolder.open(a.path)
    with pytest.raises(ConfigError, match="run folder not found"):
        RunFolder.open(tmp_path / "nope")


@pytest.mark.parametrize("options, message", [
    ({"augment": True, "augment_options": {"rotaton": 5}}, "augment_options"),
    ({"arch": "keras-mnist", "arch_options": {"dropout": 2.0}}, "[Dd]ropout"),
    ({"optimizer": "adam", "momentum": 0.9}, "momentum applies to"),
])
def test_a_bad_option_leaves_no_run_folder_behind(tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        train_run(TrainConfig(**{**SMALL, **options, "train_subset": 20, "val_split": 0}, out=str(tmp_path)),
                  echo=quiet)
    assert list(tmp_path.iterdir()) == []
