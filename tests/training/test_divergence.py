"""Divergence is a result (issue 12, item 5): a cost that explodes or a run stuck at chance stops as
"diverged", keeps the checkpoint before it, and ``--resume RUN --lr X`` rescues it, on the record."""

import json

import numpy as np
import pytest
from safetensors import safe_open

from cnnlab.cli import main
from cnnlab.engine.errors import NumericalError
from cnnlab.training.callbacks import DivergenceGuard, History
from cnnlab.training.loop import fit

from test_train import small_model, toy_data


def row(epoch, cost, acc, lr=0.1):
    return {"epoch": epoch, "train_cost": cost, "train_accuracy": acc, "val_cost": None, "val_accuracy": None,
            "lr": lr, "seconds": 0.1}


# -- the two rules --------------------------------------------------------------------------------------
def test_explosion_is_more_than_ten_times_the_untrained_cost():
    guard, history = DivergenceGuard(), History(start_cost=2.3)
    assert guard.check(history, row(1, 22.9, 0.5), chance=0.1) is None
    message = guard.check(history, row(1, 23.1, 0.5, lr=1e6), chance=0.1)
    assert "rose to 23.1, more than 10x the untrained model's 2.3" in message and "1e+06" in message


def test_a_checkpoint_without_start_cost_measures_from_the_first_epoch():
    history = History(rows=[row(1, 1.0, 0.5)])
    assert DivergenceGuard().check(history, row(2, 9.0, 0.5), 0.1) is None
    assert "more than 10x" in DivergenceGuard().check(history, row(2, 11.0, 0.5), 0.1)


def test_stall_needs_three_epochs_at_chance_and_no_progress_of_the_cost():
    guard = DivergenceGuard()
    stuck = History(start_cost=0.52, rows=[row(1, 0.5046, 0.0955), row(2, 0.5000, 0.0955)])
    assert "stayed at chance" in guard.check(stuck, row(3, 0.5000, 0.0955), chance=0.11)
    # two epochs only: not yet
    assert guard.check(History(start_cost=0.52, rows=[row(1, 0.50, 0.09)]), row(2, 0.50, 0.09), 0.11) is None
    # a slow but healthy start (Nielsen's large initialisation): at chance, but the cost falls
    slow = History(start_cost=0.9, rows=[row(1, 0.6691, 0.122), row(2, 0.4850, 0.13)])
    assert guard.check(slow, row(3, 0.4711, 0.14), chance=0.11) is None
    # a flat cost above chance is a plateau, not a stall
    plateau = History(start_cost=2.3, rows=[row(1, 0.3, 0.9), row(2, 0.3, 0.9)])
    assert guard.check(plateau, row(3, 0.3, 0.9), chance=0.11) is None


def test_keep_going_when_stuck_turns_off_the_stall_rule_only():
    stuck = History(start_cost=0.52, rows=[row(1, 0.5046, 0.0955), row(2, 0.5000, 0.0955)])
    patient = DivergenceGuard(stall=False)
    assert patient.check(stuck, row(3, 0.5000, 0.0955), chance=0.11) is None
    assert "more than 10x" in patient.check(History(start_cost=2.3), row(1, 23.1, 0.5), chance=0.1)


def test_stall_window_covers_at_least_a_thousand_updates():
    # The course network: 100 images, batch 1 -> 100 steps an epoch, at chance for a few epochs before it
    # learns. Three flat epochs are 300 updates: not enough to call it stuck; ten are.
    guard = DivergenceGuard()
    guard.steps_per_epoch = 100
    flat = [row(e, 0.4706, 0.11) for e in range(1, 10)]
    assert guard.check(History(start_cost=0.49, rows=flat[:2]), flat[2], chance=0.14) is None
    assert guard.check(History(start_cost=0.49, rows=flat[:8]), flat[8], chance=0.14) is None
    message = guard.check(History(start_cost=0.49, rows=flat), row(10, 0.4706, 0.11), chance=0.14)
    assert "for 10 epochs" in message
    # big epochs keep the three-epoch window
    guard.steps_per_epoch = 5000
    assert "for 3 epochs" in guard.check(History(start_cost=0.49, rows=flat[:2]), flat[2], chance=0.14)


def test_without_accuracy_monitors_the_stall_rule_is_off():
    rows = [{**row(e, 0.5, None), "train_accuracy": None} for e in (1, 2, 3)]
    assert DivergenceGuard().check(History(start_cost=0.5, rows=rows[:2]), rows[2], 0.1) is None


# -- fit ---------------------------------------------------------------------------------------------------
def test_fit_with_a_huge_learning_rate_stops_as_diverged():
    with pytest.raises(NumericalError, match=r"epoch 1: the training cost rose to .*\(learning rate 1e\+06 is too high\)") as info:
        fit(small_model(), toy_data(60), epochs=5, batch_size=20, optimizer="sgd", lr=1e6,
            progress=False, verbose=False)
    history = info.value.history
    assert history.stop_reason == "diverged" and history.epochs_done == 0  # the diverged epoch is not kept
    assert history.start_cost == pytest.approx(np.log(4), rel=0.3)  # the untrained model: about ln 4
    # switched off, the same run "completes" (what every run did before the guard)
    history = fit(small_model(), toy_data(60), epochs=2, batch_size=20, optimizer="sgd", lr=1e6,
                  progress=False, verbose=False, divergence=False)
    assert history.stop_reason == "completed"


def test_a_normal_run_is_never_stopped():
    history = fit(small_model(), toy_data(200), toy_data(60, 1), epochs=6, batch_size=20, optimizer="sgd",
                  lr=0.1, progress=False, verbose=False)
    assert history.stop_reason == "completed" and history.epochs_done == 6


# -- the command line: stop, keep, rescue ---------------------------------------------------------------------
TINY = ["--arch", "mlp:784-16-10", "--dataset", "mnist", "--val-split", "20", "--batch-size", "10",
        "--no-progress", "--no-test", "--optimizer", "sgd"]


def test_cli_diverges_keeps_the_checkpoint_and_resume_with_lr_rescues(fake_mnist, tmp_path, capsys):
    args = [*TINY, "--data-dir", str(fake_mnist.data_dir), "--out", str(tmp_path)]
    assert main(["train", *args, "--lr", "1e6", "--epochs", "3", "--name", "hot"]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "error:" not in err
    assert "training stopped: epoch 1: the training cost rose to" in out
    assert "--resume" in out and "--lr LR" in out and "done (diverged, 0 epochs kept)" in err
    run = tmp_path / "hot"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stop_reason"] == "diverged" and summary["epochs_done"] == 0 and "10x" in summary["error"]
    assert not (run / "model.safetensors").exists()  # the diverged weights are not the run's model
    assert not (run / "run.lock").exists()  # the lock is released after a divergence too
    with safe_open(str(run / "checkpoint.safetensors"), framework="numpy") as fh:
        assert json.loads(fh.metadata()["cnnlab-checkpoint"])["epoch"] == 0

    # the same rate again: said to be hopeless, and it is
    assert main(["train", "--resume", str(run)]) == 1
    assert "will most likely diverge again (give --lr)" in capsys.readouterr()[0]

    assert main(["train", "--resume", str(run), "--lr", "0.05"]) == 0
    out, _ = capsys.readouterr()
    assert "learning rate changed from 1e+06 to 0.05 at epoch 1" in out
    record = json.loads((run / "config.json").read_text())
    assert record["config"]["lr"] == 0.05
    assert record["changes"] == [{"epoch": 1, "option": "lr", "from": 1e6, "to": 0.05,
                                  "note": "learning rate changed from 1e+06 to 0.05 at epoch 1"}]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stop_reason"] == "completed" and summary["epochs_done"] == 3
    assert summary["changes"] == ["learning rate changed from 1e+06 to 0.05 at epoch 1"]
    assert [r["lr"] for r in json.loads((run / "metrics.json").read_text())] == [0.05] * 3


def test_start_cost_survives_a_resume(fake_mnist, tmp_path, capsys):
    args = [*TINY, "--data-dir", str(fake_mnist.data_dir), "--out", str(tmp_path), "--lr", "0.05"]
    assert main(["train", *args, "--epochs", "1", "--name", "r"]) == 0
    with safe_open(str(tmp_path / "r" / "checkpoint.safetensors"), framework="numpy") as fh:
        start = json.loads(fh.metadata()["cnnlab-checkpoint"])["extra"]["start_cost"]
    assert 0 < start < 10 * np.log(10)  # the untrained model on random pixels: a few units
    # a rate change in the middle of a run is recorded at the epoch it takes effect
    assert main(["train", "--resume", str(tmp_path / "r"), "--epochs", "2", "--lr", "0.02"]) == 0
    record = json.loads((tmp_path / "r" / "config.json").read_text())
    assert [c["epoch"] for c in record["changes"]] == [2]
    with safe_open(str(tmp_path / "r" / "checkpoint.safetensors"), framework="numpy") as fh:
        assert json.loads(fh.metadata()["cnnlab-checkpoint"])["extra"]["start_cost"] == start


def test_cli_keep_going_when_stuck_trains_every_epoch(fake_mnist, tmp_path, capsys):
    # saturated sigmoid units under a quadratic cost: at chance for ever (the rule's own example)
    args = ["--arch", "mlp:784-16-10", "--activation", "sigmoid", "--loss", "quadratic", "--lr", "1e6",
            "--dataset", "mnist", "--val-split", "20", "--batch-size", "1", "--epochs", "30", "--no-progress",
            "--no-test", "--optimizer", "sgd", "--data-dir", str(fake_mnist.data_dir), "--out", str(tmp_path)]
    assert main(["train", *args, "--name", "stopped"]) == 1
    assert "training is stuck" in capsys.readouterr()[0]
    assert main(["train", *args, "--name", "patient", "--keep-going-when-stuck"]) == 0
    summary = json.loads((tmp_path / "patient" / "summary.json").read_text())
    assert summary["stop_reason"] == "completed" and summary["epochs_done"] == 30
    assert json.loads((tmp_path / "patient" / "config.json").read_text())["config"]["stop_when_stuck"] is False
