"""Studies: data size (scaled epochs and λ), initialization, overfitting — trials, tiny real runs through the
CLI, tables that match the run folders, figures.

Tiny runs use the real MNIST files (a few hundred images, small MLPs, 1-3 epochs) from ``$CNNLAB_DATA``,
through conftest's ``real_data`` fixture (skipped without them, failed under ``CNNLAB_REQUIRE_DATA=1``).
"""

import csv
import json

import pytest
from click.testing import CliRunner

from cnnlab.engine.errors import ConfigError
from cnnlab.studies import datasize, initialization, overfitting
from cnnlab.studies.cli import study


@pytest.fixture
def fast(real_data):
    """Options of a tiny real run: the real MNIST folder, one job, 200 validation images, no progress bars."""
    return ["--data-dir", str(real_data("mnist")), "--jobs", "1", "--set", "val_split=200",
            "--set", "progress=false"]


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def metrics(folder):
    return json.loads((folder / "metrics.json").read_text())


# -- data size ----------------------------------------------------------------------------------------------------
def test_datasize_keeps_updates_and_weight_decay_factor():
    trials = datasize.trials(datasize.DEFAULT_SIZES, epochs=10, max_epochs=200)
    by_n = {t.params["train_subset"]: t.config for t in trials}
    assert list(by_n) == [100, 300, 1000, 3000, 10000, 50000]
    assert {n: c.epochs for n, c in by_n.items()} == {100: 200, 300: 200, 1000: 200, 3000: 167, 10000: 50, 50000: 10}
    assert {round(c.lmbda / n, 12) for n, c in by_n.items()} == {5.0 / 50000}  # λ/n is the same for every size
    assert by_n[50000].lmbda == 5.0 and by_n[100].lmbda == pytest.approx(0.01)
    # Examples seen are equal until the cap: 10 epochs x 50,000 = 50 x 10,000 = 167 x 3,000 (rounded).
    assert by_n[10000].epochs * 10000 == by_n[50000].epochs * 50000
    assert abs(by_n[3000].epochs * 3000 - 500000) <= 3000 / 2
    assert all(c.arch == "mlp:784-30-10" and c.batch_size == 10 and c.lr == 0.5 for c in by_n.values())


def test_datasize_options_and_errors():
    trials = datasize.trials([400, 200, 200], epochs=3, max_epochs=5, lmbda=0, arch="mlp:784-5-10")
    assert [(t.name, t.config.epochs, t.config.lmbda) for t in trials] == [("n=200", 5, 0), ("n=400", 3, 0)]
    with pytest.raises(ConfigError, match="sizes must be positive"):
        datasize.trials([0, 10])
    with pytest.raises(ConfigError, match="unknown option 'epoch'"):
        datasize.trials([10], epoch=3)


def test_datasize_figure_has_a_log_axis():
    rows = [{"n": 100, "test_accuracy": 0.7, "best_val_accuracy": 0.71, "final_train_accuracy": 1.0},
            {"n": 1000, "test_accuracy": 0.85, "best_val_accuracy": 0.86, "final_train_accuracy": 0.95}]
    ax = datasize.datasize_figure(rows).axes[0]
    assert ax.get_xscale() == "log"
    assert [list(line.get_xdata()) for line in ax.lines] == [[100, 1000]] * 3
    assert list(ax.lines[0].get_ydata()) == pytest.approx([70.0, 85.0])


@pytest.mark.data
def test_datasize_command_tiny(tmp_path, fast):
    out = tmp_path / "ds"
    result = CliRunner().invoke(study, ["datasize", "--sizes", "100,200", "--epochs", "1", "--arch", "mlp:784-8-10",
                                        "--out", str(out), *fast])
    assert result.exit_code == 0, result.output
    rows = read_csv(out / "results.csv")
    assert [(int(r["n"]), int(r["epochs"]), float(r["lambda"])) for r in rows] == [(100, 2, 2.5), (200, 1, 5.0)]
    assert {float(r["decay_factor"]) for r in rows} == {0.025}
    for r in rows:
        folder = out / r["trial"]
        record = json.loads((folder / "config.json").read_text())
        assert record["resolved"]["n_train"] == int(r["n"])
        assert record["resolved"]["weight_decay"] == pytest.approx(float(r["decay_factor"]))  # λ/n, as trained
        m = metrics(folder)
        assert len(m) == int(r["epochs"]) and float(r["final_val_accuracy"]) == pytest.approx(m[-1]["val_accuracy"])
        summary = json.loads((folder / "summary.json").read_text())
        assert float(r["test_accuracy"]) == pytest.approx(summary["test_accuracy"])
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 100 | 2 | 20 |" in (out / "results.md").read_text()  # n, epochs, updates (2 x 100/10)


def test_bad_options_leave_an_existing_study_report_alone(tmp_path):
    from cnnlab.studies.sweep import run_study

    reports = []
    trials = initialization.trials()
    with pytest.raises(ConfigError, match="jobs must be a positive integer, received 0"):
        run_study(trials, tmp_path, lambda *args: reports.append(args), jobs=0, echo=lambda *_: None)
    assert reports == [] and list(tmp_path.iterdir()) == []


# -- initialization -------------------------------------------------------------------------------------------------
def test_init_trials_follow_nielsen():
    trials = initialization.trials()
    assert [(t.config.arch, t.config.init) for t in trials] == [
        ("mlp:784-30-10", "default"), ("mlp:784-30-10", "large"), ("mlp:784-100-10", "default"),
        ("mlp:784-100-10", "large")]
    c = trials[0].config
    assert (c.loss, c.optimizer, c.lr, c.lmbda, c.batch_size, c.epochs) == ("binary-crossentropy", "sgd", 0.1, 5.0,
                                                                           10, 30)


@pytest.mark.data
def test_init_command_tiny_table_is_per_epoch(tmp_path, fast):
    out = tmp_path / "init"
    result = CliRunner().invoke(study, ["init", "--archs", "mlp:784-10-10", "--epochs", "2", "--out", str(out),
                                        "--set", "train_subset=200", "--set", "test=false", *fast])
    assert result.exit_code == 0, result.output
    rows = read_csv(out / "results.csv")
    assert list(rows[0]) == ["epoch", "784-10-10_init=default", "784-10-10_init=large"]
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for name in ("784-10-10_init=default", "784-10-10_init=large"):
        assert [float(r[name]) for r in rows] == pytest.approx([m["val_accuracy"] for m in metrics(out / name)])
    from cnnlab.io import load_model

    model = load_model(out / "784-10-10_init=large" / "model.safetensors")
    assert model.info["extra"]["config"]["init"] == "large"
    assert "## Summary" in (out / "results.md").read_text()
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"


# -- overfitting ---------------------------------------------------------------------------------------------------
def test_overfitting_trials_are_the_four_combinations():
    trials = overfitting.trials()
    assert [(t.config.lmbda, t.config.augment) for t in trials] == [(0.0, False), (0.1, False), (0.0, True),
                                                                   (0.1, True)]
    assert {(t.config.train_subset, t.config.epochs, t.config.full_train_eval) for t in trials} == {(1000, 400, True)}


@pytest.mark.data
def test_overfitting_command_tiny(tmp_path, fast):
    out = tmp_path / "of"
    result = CliRunner().invoke(study, ["overfitting", "--train-subset", "100", "--epochs", "2", "--arch",
                                        "mlp:784-8-10", "--out", str(out), "--set", "test=false", *fast])
    assert result.exit_code == 0, result.output
    rows = read_csv(out / "results.csv")
    assert [r["trial"] for r in rows] == ["plain", "l2", "augment", "l2+augment"]
    for r in rows:
        folder = out / r["trial"]
        m = metrics(folder)[-1]
        assert float(r["final_train_accuracy"]) == pytest.approx(m["train_accuracy"])
        assert float(r["final_val_cost"]) == pytest.approx(m["val_cost"])
        assert float(r["gap"]) == pytest.approx(m["train_accuracy"] - m["val_accuracy"])
        config = json.loads((folder / "config.json").read_text())
        assert config["config"]["augment"] == (r["augment"] == "True")
        assert config["resolved"]["weight_decay"] == pytest.approx(float(r["lambda"]) / 100)
    fig_bytes = (out / "curves.png").read_bytes()
    assert fig_bytes[:4] == b"\x89PNG"
    # Run again: everything is done, nothing retrains, the report is rewritten from the folders.
    again = CliRunner().invoke(study, ["overfitting", "--train-subset", "100", "--epochs", "2", "--arch",
                                       "mlp:784-8-10", "--out", str(out), "--set", "test=false", *fast])
    assert again.exit_code == 0 and "0 to run, 4 already done" in again.output
    assert read_csv(out / "results.csv") == rows


def test_overfitting_figure_has_cost_and_accuracy_rows(tmp_path):
    from cnnlab.studies.report import TrialResult

    trials = overfitting.trials(epochs=2)
    rows = [{"epoch": e, "train_cost": 1.0 / e, "val_cost": 1.2, "train_accuracy": 0.5 + 0.2 * e,
             "val_accuracy": 0.6} for e in (1, 2)]
    results = [TrialResult(t.name, t.label, t.params, tmp_path, rows=rows) for t in trials]
    fig = overfitting.overfitting_figure(trials, results)
    assert len(fig.axes) == 8
    assert [ax.get_title() for ax in fig.axes[:4]] == [t.label for t in trials]
    assert list(fig.axes[4].lines[0].get_ydata()) == pytest.approx([70.0, 90.0])
