"""`cnnlab train` and `cnnlab evaluate` end to end on a few hundred real MNIST images."""

import json
import os
from pathlib import Path

import pytest

from cnnlab.cli import cli, main
from cnnlab.training.cli import evaluate, train

DATA = Path(os.environ.get("CNNLAB_DATA", Path(__file__).resolve().parents[3] / "shared" / "datasets"))
pytestmark = [
    pytest.mark.data,
    pytest.mark.skipif(not (DATA / "mnist" / "train-images-idx3-ubyte.gz").is_file(),
                       reason="MNIST files not found (set CNNLAB_DATA)"),
]

# The lead registers these on the group in cli.py; registering again here is harmless.
cli.add_command(train)
cli.add_command(evaluate)

SMALL = ["--arch", "mlp:784-16-10", "--dataset", "mnist", "--data-dir", str(DATA), "--train-subset", "300",
         "--val-split", "200", "--batch-size", "20", "--no-progress"]


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_then_evaluate(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "train", *SMALL, "--epochs", "2", "--optimizer", "sgd", "--lr", "0.5",
                           "--out", str(tmp_path), "--name", "r1", "--no-train-accuracy")
    assert code == 0, out
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and "val cost" in epoch_lines[0] and "train cost" in epoch_lines[0]
    train_part = [part for part in epoch_lines[0].split("  ") if part.startswith("train")][0]
    assert "acc" not in train_part  # --no-train-accuracy
    assert "test accuracy:" in out
    run = tmp_path / "r1"
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["lr"] == 0.5 and config["monitors"]["train_accuracy"] is False

    code, out, _ = run_cli(capsys, "evaluate", str(run), "--data-dir", str(DATA), "--max-images", "12")
    assert code == 0
    assert "accuracy:" in out and "per-class accuracy:" in out and "confusion matrix" in out
    assert (run / "confusion.png").is_file() and (run / "misclassified.png").is_file()

    code, out, err = run_cli(capsys, "evaluate", str(run / "model.safetensors"), "--data-dir", str(DATA),
                             "--json", "--out", str(tmp_path / "ev"))
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"accuracy", "n", "per_class", "confusion"}
    assert result["n"] == 10_000 and len(result["per_class"]) == 10
    assert sum(map(sum, result["confusion"])) == 10_000
    assert result["accuracy"] == pytest.approx(sum(result["confusion"][k][k] for k in range(10)) / 10_000)
    assert (tmp_path / "ev" / "misclassified.png").is_file()


def test_config_file_with_command_line_override_and_resume(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'arch = "mlp:784-16-10"\ndataset = "mnist"\ndata-dir = "{DATA}"\ntrain-subset = 300\n'
                   f'val-split = 200\nepochs = 5\noptimizer = "adam"\nlr = 0.01\ntest = false\n'
                   f'out = "{tmp_path}"\nname = "fromfile"\nprogress = false\n')
    code, out, _ = run_cli(capsys, "train", "--config", str(cfg), "--epochs", "1")
    assert code == 0, out
    assert sum(line.startswith("epoch ") for line in out.splitlines()) == 1  # --epochs beat the file's 5
    code, out, _ = run_cli(capsys, "train", "--resume", str(tmp_path / "fromfile"), "--epochs", "2")
    assert code == 0 and "resuming" in out and "epoch 2/2" in out
    rows = json.loads((tmp_path / "fromfile" / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2]


def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", *SMALL, "--arch", "resnet", "--out", str(tmp_path))
    assert code == 2 and "unknown architecture 'resnet'" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "train", "--resume", str(tmp_path / "missing"))
    assert code == 2 and "run folder not found" in err
    code, _, err = run_cli(capsys, "train", "--resume", str(tmp_path / "missing"), "--batch-size", "5",
                           "--lambda", "1", "--no-val-cost")
    assert code == 2 and ("only --epochs, --progress, --test, --device, --lr may be given, "
                          "received --batch-size, --lambda, --val-cost") in err
    code, _, err = run_cli(capsys, "train", *SMALL, "--epochs", "0", "--out", str(tmp_path))
    assert code == 2 and "epochs must be a positive integer" in err
    code, _, err = run_cli(capsys, "train", *SMALL, "--val-split", "ten")
    assert code == 2 and "--val-split" in err
    code, _, err = run_cli(capsys, "evaluate", str(tmp_path / "nope.safetensors"))
    assert code == 2 and "not found" in err


def test_train_on_a_gpu_without_cupy_is_a_clear_error_and_leaves_no_run_folder(tmp_path, capsys, monkeypatch):
    from cnnlab.engine import backend

    monkeypatch.setattr(backend, "_cupy", None)  # as on a machine without CuPy, even where it is installed
    code, _, err = run_cli(capsys, "train", *SMALL, "--device", "gpu", "--out", str(tmp_path / "runs"))
    assert code == 2 and "device 'gpu' needs CuPy" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()
    code, _, err = run_cli(capsys, "train", *SMALL, "--device", "tpu")
    assert code == 2 and "--device" in err


def test_evaluate_refuses_bad_counts_and_train_an_unwritable_out(tmp_path, capsys):
    code, _, err = run_cli(capsys, "evaluate", "--batch-size", "0", "--no-plots")
    assert code == 2 and "--batch-size" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "evaluate", "--max-images", "-3", "--no-plots")
    assert code == 2 and "--max-images" in err
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(capsys, "train", *SMALL, "--epochs", "1", "--out", str(blocker / "runs"))
    assert code == 2 and err.startswith("error: cannot write ") and str(blocker) in err


def test_evaluate_batches_default_to_those_of_predict_proba():
    import inspect

    from cnnlab.engine.model import Sequential

    default = {p.name: p.default for p in evaluate.params}["batch_size"]
    assert default == inspect.signature(Sequential.predict_proba).parameters["batch_size"].default == 256


def test_evaluate_without_model_uses_the_bundled_one(capsys):
    code, out, _ = run_cli(capsys, "evaluate", "--data-dir", str(DATA), "--json", "--no-plots")
    assert code == 0
    assert json.loads(out)["accuracy"] >= 0.99


def test_evaluate_writes_nothing_where_the_user_did_not_ask(tmp_path, capsys, monkeypatch):
    """The bundled model has no run folder: without --out (or --plots) no PNG lands in the current folder."""
    data = str(DATA.resolve())  # CNNLAB_DATA may be relative to where the tests started
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "evaluate", "--data-dir", data, "--json")
    assert code == 0 and json.loads(out)["n"] == 10_000
    assert list(tmp_path.iterdir()) == []
    code, _, _ = run_cli(capsys, "evaluate", "--data-dir", data, "--out", str(tmp_path / "figs"))
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["confusion.png", "misclassified.png"]


def test_val_split_test_validates_on_the_test_split_after_every_epoch(tmp_path, capsys):
    small = [a if a != "200" else "test" for a in SMALL]  # --val-split test
    code, out, _ = run_cli(capsys, "train", *small, "--epochs", "2", "--out", str(tmp_path), "--name", "t",
                           "--no-test")
    assert code == 0, out
    assert "300 training images, 10,000 validation images (the test split)" in out
    rows = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert len(rows) == 2
    code, out, _ = run_cli(capsys, "evaluate", str(tmp_path / "t" / "model.safetensors"), "--data-dir", str(DATA),
                           "--json", "--out", str(tmp_path / "ev"))
    result = json.loads(out)
    assert result["n"] == 10_000 and result["accuracy"] == pytest.approx(rows[-1]["val_accuracy"], abs=1e-9)
    code, out, _ = run_cli(capsys, "train", *[a if a != "200" else "tset" for a in SMALL], "--epochs", "1")
    assert code != 0 and "--val-split must be a fraction like 0.1, a count like 10000 or 'test'" in out + _
