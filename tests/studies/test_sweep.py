"""Sweeps: grid files and their errors, trial names, running, resuming, reports that match the run folders,
parallel processes, divergence and failures, the CLI, and the Ray executor (with a local Ray instance).

Training tests use the real MNIST files (a few hundred images, an MLP, 1-2 epochs) from ``$CNNLAB_DATA``,
through conftest's ``real_data`` fixture (skipped without them, failed under ``CNNLAB_REQUIRE_DATA=1``).
"""

import csv
import json
import os
import sys

import pytest
from click.testing import CliRunner

from cnnlab.engine.errors import CnnlabError, ConfigError
from cnnlab.studies.grid import load_grid, parse_grid, trial_name
from cnnlab.studies.report import collect, count_parameters
from cnnlab.studies.sweep import run_sweep, run_trials

TINY = {"arch": "mlp:784-8-10", "dataset": "mnist", "data_dir": None, "train_subset": 100, "val_split": 100,
        "batch_size": 20, "epochs": 1, "progress": False, "test": False, "seed": 1}


@pytest.fixture
def mnist(real_data, monkeypatch):
    """The real datasets folder for training tests (a few hundred MNIST images), also in ``TINY``."""
    data = real_data("mnist")
    monkeypatch.setitem(TINY, "data_dir", str(data))
    return data


def quiet(*_):
    pass


def tiny_grid(axes=None, variants=None, **base):
    return parse_grid({"base": {**TINY, **base}, "axes": axes or {}, "variants": variants or []}, "tiny.toml")


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# -- grids ------------------------------------------------------------------------------------------------------
def test_builtin_lab_grid_has_the_ten_classic_variants():
    trials = load_grid("lab").trials()
    combos = [(t.config.optimizer, t.config.activation, t.config.lr) for t in trials]
    expected = {(o, a, lr) for o in ("adam", "sgd") for a in ("tanh", "relu") for lr in (0.01, 0.001)}
    expected |= {("sgd", "tanh", 0.0001), ("adam", "tanh", 0.0001)}
    assert len(combos) == 10 and set(combos) == expected
    assert all(t.config.arch == "lenet5" and t.config.dataset == "mnist" for t in trials)
    assert len({t.name for t in trials}) == 10
    assert trials[0].name == "optimizer=adam_activation=tanh_lr=0.01"
    assert [t.name for t in load_grid("lab").trials()] == [t.name for t in trials]  # stable


def test_overrides_change_the_base_but_not_the_trial_parameters():
    trials = load_grid("lab").trials(epochs=1, lr=0.5, train_subset=200)
    assert {t.config.epochs for t in trials} == {1} and {t.config.train_subset for t in trials} == {200}
    assert sorted({t.config.lr for t in trials}) == [0.0001, 0.001, 0.01]


def test_other_axes_pooling_depth_batch_lambda(tmp_path):
    grid_file = tmp_path / "g.yaml"
    grid_file.write_text("base:\n  arch: vgg-mini\naxes:\n  pooling: [max, avg]\n  arch_options.conv_layers: [2, 6]\n"
                         "  batch-size: [10]\n  lambda: [0.5]\n")
    trials = load_grid(grid_file).trials()
    assert len(trials) == 4
    assert [(t.config.pooling, t.config.arch_options["conv_layers"]) for t in trials] == \
        [("max", 2), ("max", 6), ("avg", 2), ("avg", 6)]
    assert {t.config.batch_size for t in trials} == {10} and {t.config.lmbda for t in trials} == {0.5}
    assert trials[1].name == "pooling=max_conv_layers=6_batch_size=10_lmbda=0.5"
    assert trials[1].label == "pooling=max, conv_layers=6, batch_size=10, lmbda=0.5"


def test_variants_alone_and_duplicates_run_once():
    grid = tiny_grid(axes={"lr": [0.1, 0.2]}, variants=[{"lr": 0.1}, {"lr": 0.3, "optimizer": "sgd"}])
    assert [t.name for t in grid.trials()] == ["lr=0.1", "lr=0.2", "lr=0.3_optimizer=sgd"]
    only = tiny_grid(variants=[{"seed": 1}, {"seed": 2}]).trials()
    assert [t.config.seed for t in only] == [1, 2]


@pytest.mark.parametrize("data, message", [
    ({"axes": {"learning_rat": [0.1]}}, "unknown option 'learning_rat'"),
    ({"axes": {"lr": []}}, "axis 'lr' is empty"),
    ({"axes": {"lr": 0.1}}, "expected a list of values"),
    ({"axes": {"lr": [0.1, -1.0]}}, "axis 'lr': lr must be"),
    ({"axes": {"name": ["a"]}}, "set by the sweep"),
    ({"axes": {"lr.x": [1]}}, "hold named options"),
    ({"variants": [{"optimiser": "sgd"}]}, "variants[0]: unknown option 'optimiser'"),
    ({"variants": [{}]}, "variants[0] is empty"),
    ({"base": {"epochs": 0}}, "epochs must be a positive integer"),
    ({"axis": {"lr": [0.1]}}, "unknown grid key(s) ['axis']"),
    ({}, "no trials"),
])
def test_grid_errors_are_clear(data, message):
    with pytest.raises(ConfigError) as info:
        parse_grid(data, "bad.toml").trials()
    assert message in str(info.value) and "bad.toml" in str(info.value)


def test_unknown_grid_name_lists_the_builtin_ones():
    with pytest.raises(ConfigError, match="built-in grids: lab"):
        load_grid("labb")


def test_trial_names_are_clean_and_bounded():
    assert trial_name({"arch": "mlp:784-30-10", "augment": True}) == "arch=mlp-784-30-10_augment=true"
    long = trial_name({"layers": [{"type": "Dense", "units": u} for u in range(30)]})
    assert len(long) <= 100 and long == trial_name({"layers": [{"type": "Dense", "units": u} for u in range(30)]})
    assert long != trial_name({"layers": [{"type": "Dense", "units": u} for u in range(31)]})


# -- running, reports, resume ---------------------------------------------------------------------------------------
@pytest.mark.data
def test_sweep_report_matches_the_run_folders(mnist, tmp_path):
    grid = tiny_grid(axes={"optimizer": ["adam", "sgd"]}, variants=[{"optimizer": "sgd", "lr": 0.5}], test=True)
    outcomes, results = run_sweep(grid, tmp_path, jobs=1, echo=quiet)
    assert [o.status for o in outcomes] == ["finished"] * 3
    rows = read_csv(tmp_path / "results.csv")
    assert [r["trial"] for r in rows] == ["optimizer=adam", "optimizer=sgd", "optimizer=sgd_lr=0.5"]
    assert list(rows[0])[:3] == ["trial", "optimizer", "lr"] and rows[0]["lr"] == ""
    from cnnlab.io import load_model

    for row in rows:
        folder = tmp_path / row["trial"]
        summary = json.loads((folder / "summary.json").read_text())
        metrics = json.loads((folder / "metrics.json").read_text())
        assert float(row["test_accuracy"]) == pytest.approx(summary["test_accuracy"])
        assert float(row["final_val_accuracy"]) == pytest.approx(metrics[-1]["val_accuracy"])
        assert float(row["best_val_accuracy"]) == pytest.approx(max(m["val_accuracy"] for m in metrics))
        assert float(row["epoch_seconds"]) == pytest.approx(metrics[0]["seconds"])
        assert int(row["params"]) == load_model(folder / "model.safetensors").n_params == 784 * 8 + 8 + 8 * 10 + 10
        assert row["status"] == "finished" and int(row["epochs"]) == 1
        config = json.loads((folder / "config.json").read_text())["config"]
        assert config["optimizer"] == row["optimizer"]
    md = (tmp_path / "results.md").read_text()
    assert "| adam |" in md and f"{100 * float(rows[2]['test_accuracy']):.2f}" in md
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "sweep.json").read_text())["trials"][2]["params"] == {"optimizer": "sgd", "lr": 0.5}


@pytest.mark.data
def test_resume_runs_only_unfinished_trials(mnist, tmp_path):
    grid = tiny_grid(axes={"lr": [0.01, 0.02]})
    run_sweep(grid, tmp_path, jobs=1, echo=quiet)
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/summary.json")}
    weights = {p: p.read_bytes() for p in tmp_path.glob("*/model.safetensors")}
    (tmp_path / "lr=0.02" / "summary.json").unlink()  # as if killed after its last checkpoint

    outcomes, results = run_sweep(grid, tmp_path, jobs=1, echo=quiet)
    assert [(o.trial.name, o.state, o.status) for o in outcomes] == [
        ("lr=0.01", "done", "skipped"), ("lr=0.02", "resume", "finished")]
    for p, stamp in stamps.items():
        if p.parent.name != "lr=0.02":
            assert p.stat().st_mtime_ns == stamp
    assert (tmp_path / "lr=0.02" / "summary.json").is_file()
    assert all(p.read_bytes() == data for p, data in weights.items())  # resumed after the last epoch: no change
    assert [r.status for r in results] == ["finished"] * 2

    # More epochs: every trial continues from its checkpoint; the first epoch is kept as it was.
    first = json.loads((tmp_path / "lr=0.01" / "metrics.json").read_text())
    outcomes, results = run_sweep(grid, tmp_path, jobs=1, overrides={"epochs": 2}, echo=quiet)
    assert {o.state for o in outcomes} == {"resume"}
    again = json.loads((tmp_path / "lr=0.01" / "metrics.json").read_text())
    assert len(again) == 2 and again[0] == first[0]
    assert [int(r["epochs"]) for r in read_csv(tmp_path / "results.csv")] == [2, 2]


@pytest.mark.data
def test_a_folder_trained_with_other_options_is_an_error(mnist, tmp_path):
    run_sweep(tiny_grid(axes={"lr": [0.01]}), tmp_path, jobs=1, echo=quiet)
    (tmp_path / "lr=0.01" / "summary.json").unlink()
    with pytest.raises(ConfigError, match=r"batch_size: 20 there, 10 now"):
        run_sweep(tiny_grid(axes={"lr": [0.01]}, batch_size=10), tmp_path, jobs=1, echo=quiet)


@pytest.mark.data
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_diverged_and_failed_trials_do_not_stop_the_others(mnist, tmp_path):
    grid = tiny_grid(variants=[{"lr": 1e30, "optimizer": "sgd", "activation": "relu"},
                               {"val_split": 70000},  # valid options, but MNIST has 60,000 images
                               {"lr": 0.01}])
    lines = []
    outcomes, results = run_sweep(grid, tmp_path, jobs=1, echo=lines.append)
    assert [o.status for o in outcomes] == ["diverged", "failed", "finished"]
    assert "--val-split 70000 holds out 70000" in outcomes[1].error and "epoch 1" in outcomes[0].error
    assert [r.status for r in results] == ["diverged", "not run", "finished"]
    assert any("failed" in line for line in lines)
    again, _ = run_sweep(grid, tmp_path, jobs=1, echo=quiet)
    assert [o.state for o in again] == ["diverged", "new", "done"]  # a diverged trial is not retried


@pytest.mark.data
def test_parallel_processes_write_logs_and_restore_the_environment(mnist, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    trials = tiny_grid(axes={"seed": [1, 2]}).trials()
    outcomes = run_trials(trials, tmp_path, jobs=2, echo=quiet)
    assert [o.status for o in outcomes] == ["finished", "finished"]
    assert "OPENBLAS_NUM_THREADS" not in os.environ
    for t in trials:
        assert "epoch 1/1" in (tmp_path / "logs" / f"{t.name}.log").read_text()
        assert json.loads((tmp_path / t.name / "trial.json").read_text())["status"] == "finished"
    a, b = collect(trials, tmp_path)
    assert a.final_val_accuracy is not None and a.rows != b.rows  # two different seeds, two real runs


def test_parallel_workers_get_cores_over_jobs_threads(monkeypatch):
    """Each worker's models (CNNLAB_THREADS) and BLAS get cores / jobs threads, not every core each."""
    import concurrent.futures
    from concurrent.futures import ThreadPoolExecutor

    from cnnlab import threads as parallel
    from cnnlab.studies import sweep

    class InlinePool(ThreadPoolExecutor):  # stands in for the process pool: sees the workers' environment
        def __init__(self, max_workers, mp_context=None):
            super().__init__(max_workers=max_workers)

    seen = []

    def fake_trial(payload):
        seen.append((os.environ["CNNLAB_THREADS"], os.environ["OPENBLAS_NUM_THREADS"],
                     parallel.default_threads(), payload["threads"]))
        return {"status": "finished", "error": "", "seconds": 0.0}

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", InlinePool)
    monkeypatch.setattr(sweep, "execute_trial", fake_trial)
    monkeypatch.setattr(sweep, "core_count", lambda: 6)
    monkeypatch.delenv("CNNLAB_THREADS", raising=False)
    results = list(sweep.run_local([{}, {}, {}], jobs=3))
    assert len(results) == 3 and seen == [("2", "2", 2, 2)] * 3
    assert "CNNLAB_THREADS" not in os.environ  # restored for this process


def test_limit_threads_sets_cnnlab_threads_in_a_running_worker(monkeypatch):
    """Ray workers have imported NumPy already: the models they build still get the trial's threads."""
    import threadpoolctl

    from cnnlab import threads as parallel
    from cnnlab.studies.sweep import _limit_threads

    blas = []
    monkeypatch.setattr(threadpoolctl, "threadpool_limits", blas.append)  # leave this process's BLAS alone
    monkeypatch.delenv("CNNLAB_THREADS", raising=False)
    before = parallel.default_threads()
    _limit_threads(None)
    assert parallel.default_threads() == before and blas == []
    monkeypatch.setenv("CNNLAB_THREADS", "")  # so that monkeypatch restores the variable after the test
    _limit_threads(3)
    assert parallel.default_threads() == 3 and blas == [3]


@pytest.mark.parametrize("options, message", [
    ({"jobs": 0}, "jobs must be a positive integer, received 0"),
    ({"executor": "dask"}, "unknown executor 'dask'"),
    ({"cpus_per_trial": -1}, "cpus_per_trial must be a positive integer"),
    ({"address": "ray://x:1"}, "is for --executor ray"),
])
def test_bad_options_leave_no_sweep_folder(tmp_path, options, message):
    """`cnnlab sweep -j 0 lab` used to leave runs/sweep-lab/ with a report of 10 "not run" trials."""
    out = tmp_path / "sweep-lab"
    with pytest.raises(ConfigError, match=message):
        run_sweep(load_grid("lab"), out, echo=quiet, **options)
    assert not out.exists()


def test_a_mismatching_run_folder_leaves_the_sweep_files_alone(tmp_path):
    """A folder holding a checkpoint trained with batch_size 20: a rerun with 10 is refused, nothing rewritten."""
    folder = tmp_path / "lr=0.01"
    folder.mkdir()
    (folder / "checkpoint.safetensors").write_bytes(b"")
    (folder / "config.json").write_text(json.dumps({"config": tiny_grid(axes={"lr": [0.01]}).trials()[0]
                                                    .config.to_dict()}))
    (tmp_path / "sweep.json").write_text("the earlier sweep\n")
    with pytest.raises(ConfigError, match=r"batch_size: 20 there, 10 now"):
        run_sweep(tiny_grid(axes={"lr": [0.01]}, batch_size=10), tmp_path, jobs=1, echo=quiet)
    assert (tmp_path / "sweep.json").read_text() == "the earlier sweep\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr=0.01", "sweep.json"]  # no report written


def test_bad_executor_options():
    trials = tiny_grid(axes={"lr": [0.1]}).trials()
    with pytest.raises(ConfigError, match="unknown executor 'dask'"):
        run_trials(trials, "unused", executor="dask")
    with pytest.raises(ConfigError, match="jobs must be a positive integer"):
        run_trials(trials, "unused", jobs=0)
    with pytest.raises(ConfigError, match="--address .* is for --executor ray"):
        run_trials(trials, "unused", address="ray://x:1")


# -- CLI -----------------------------------------------------------------------------------------------------------
@pytest.mark.data
def test_cli_sweep_with_a_grid_file_and_settings(mnist, tmp_path):
    from cnnlab.studies.cli import sweep

    grid = tmp_path / "grid.toml"
    grid.write_text('[base]\narch = "mlp:784-8-10"\nval_split = 100\nbatch_size = 20\nprogress = false\n'
                    'test = false\n[axes]\nactivation = ["relu", "tanh"]\n')
    out = tmp_path / "out"
    result = CliRunner().invoke(sweep, [str(grid), "--out", str(out), "--epochs", "1", "--train-subset", "100",
                                        "--data-dir", str(mnist), "--jobs", "1", "--set", "optimizer=sgd",
                                        "--set", "lr=0.05"])
    assert result.exit_code == 0, result.output
    assert "2 trials" in result.output and "results:" in result.output
    rows = read_csv(out / "results.csv")
    assert [r["activation"] for r in rows] == ["relu", "tanh"]
    config = json.loads((out / "activation=tanh" / "config.json").read_text())["config"]
    assert (config["optimizer"], config["lr"], config["epochs"], config["train_subset"]) == ("sgd", 0.05, 1, 100)
    again = CliRunner().invoke(sweep, [str(grid), "--out", str(out), "--epochs", "1", "--train-subset", "100",
                                       "--data-dir", str(mnist), "--set", "optimizer=sgd", "--set", "lr=0.05"])
    assert again.exit_code == 0 and "0 to run, 2 already done" in again.output


def test_cli_errors_are_cnnlab_errors(tmp_path):
    from cnnlab.studies.cli import sweep

    result = CliRunner().invoke(sweep, ["nonexistent-grid", "--out", str(tmp_path)])
    assert isinstance(result.exception, CnnlabError) and "unknown grid" in str(result.exception)
    result = CliRunner().invoke(sweep, ["lab", "--out", str(tmp_path), "--set", "lr"])
    assert isinstance(result.exception, ConfigError) and "KEY=VALUE" in str(result.exception)
    result = CliRunner().invoke(sweep, ["lab", "--out", str(tmp_path), "--set", "learning_rate=0.1"])
    assert isinstance(result.exception, ConfigError) and "unknown option 'learning_rate'" in str(result.exception)


@pytest.mark.data
def test_cli_exit_code_1_when_a_trial_fails(mnist, tmp_path):
    from cnnlab.studies.cli import sweep

    grid = tmp_path / "grid.toml"
    grid.write_text('[base]\narch = "mlp:784-8-10"\ndataset = "mnist"\n[[variants]]\nval_split = 70000\n')
    result = CliRunner().invoke(sweep, [str(grid), "--out", str(tmp_path / "out"), "--jobs", "1",
                                        "--data-dir", str(mnist), "--set", "progress=false"])
    assert result.exit_code == 1 and "did not finish" in result.output


# -- Ray -------------------------------------------------------------------------------------------------------------
def test_ray_missing_gives_an_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    trials = tiny_grid(axes={"lr": [0.1]}).trials()
    with pytest.raises(ConfigError, match=r"pip install 'cnnlab\[ray\]'"):
        run_trials(trials, tmp_path, executor="ray", echo=quiet)


@pytest.mark.slow
@pytest.mark.data
def test_ray_executor_on_a_local_instance(mnist, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'cnnlab[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # workers inherit PYTHONPATH
    try:
        grid = tiny_grid(axes={"lr": [0.01, 0.02]})
        outcomes, results = run_sweep(grid, tmp_path, executor="ray", jobs=2, echo=quiet)
        assert ray.is_initialized()  # an instance started by the caller is left running
    finally:
        ray.shutdown()
    assert [o.status for o in outcomes] == ["finished", "finished"]
    assert [r.status for r in results] == ["finished", "finished"]
    assert all(r.final_val_accuracy is not None for r in results)
    assert count_parameters(tmp_path / "lr=0.01") == 784 * 8 + 8 + 90
    assert "epoch 1/1" in (tmp_path / "logs" / "lr=0.02.log").read_text()
