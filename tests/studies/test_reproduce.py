"""``benchmarks/reproduce.py``: the rows are valid configs, the commands are real ``cnnlab train`` commands,
results are judged and rendered correctly, kept between runs, and a tiny smoke run works end to end.

The smoke runs use the tiny fake MNIST of ``conftest.py`` (and, for a Nielsen row with its 10,000-image
hold-out, the real MNIST files when they are present), with ``--scale`` and ``--train-subset`` so they
take seconds. The full reproduction is never run here.
"""

import importlib.util
import json
import os
import shlex
import sys
from pathlib import Path

import pytest

from cnnlab.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def repro():
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "benchmarks" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def quiet(*_):
    pass


def entry(parts_by_seed, scale=1.0, train_subset=None):
    """A results entry as ``run_row`` writes it, from ``[{part: summary}, ...]`` (one dict per seed)."""
    return {"measured": "2024-01-01 00:00", "scale": scale, "train_subset": train_subset, "command": "cmd",
            "runs": [{"seed": s, "seconds": 60.0, "parts": parts} for s, parts in enumerate(parts_by_seed)]}


def test_every_row_is_a_valid_config_and_the_issue_table_is_covered(repro):
    names = [row.name for row in repro.ROWS]
    assert len(names) == len(set(names)) == 15
    for row in repro.ROWS:
        assert (row.threshold is None) != (row.judge is None), row.name
        for options in row.parts.values():
            config = repro.make_config(options, seed=0, scale=1.0, train_subset=None, out="x", name="n",
                                       data_dir=None, progress=False)
            assert isinstance(config, TrainConfig) and config.test
    nielsen = [r for r in repro.ROWS if r.name.startswith("nielsen")]
    assert all(o["val_split"] == 10000 and o["batch_size"] == 10 for r in nielsen for o in r.parts.values())
    assert {r.parts["main"]["dataset"] for r in repro.ROWS if r.name.startswith("fashion")} == {"fashion-mnist"}
    course = repro.ROWS_BY_NAME["course-scratch"].parts["main"]
    assert (course["batch_size"], course["lr"], course["train_subset"], course["val_split"]) == (1, 0.4, 100, 0)
    trained_properly = repro.ROWS_BY_NAME["course-cnn-60k"].parts["main"]  # the same recipe on all 60,000
    assert {k: v for k, v in course.items() if k != "train_subset"} == {
        k: v for k, v in trained_properly.items() if k != "stop_when_stuck"}
    assert trained_properly["stop_when_stuck"] is False  # every epoch trained: the plateau is the result
    assert "--keep-going-when-stuck" in repro.train_command(trained_properly)


def test_course_judge_reads_the_summed_error_curve(repro):
    passed, text = repro.course_judge({"main": {"summed_error_curve": [49.0, 30.0, 12.0]}})
    assert passed and "4.1x down" in text
    passed, text = repro.course_judge({"main": {"summed_error_curve": [49.0, 30.0, 25.0]}})
    assert not passed and "49.00 -> 25.00" in text


def test_train_commands_use_only_real_cnnlab_train_options(repro):
    from cnnlab.training.cli import train

    known = {opt for param in train.params for opt in param.opts + param.secondary_opts}
    for row in repro.ROWS:
        for options in row.parts.values():
            words = shlex.split(repro.train_command(options, seed=4))
            assert words[:2] == ["cnnlab", "train"] and words[-2:] == ["--seed", "4"]
            flags = [w for w in words[2:] if w.startswith("--")]
            assert set(flags) <= known, set(flags) - known
    command = repro.train_command(repro.ROWS_BY_NAME["nielsen-30-crossentropy-l2"].parts["main"])
    assert "--lambda 5 " in command and "--loss binary-crossentropy" in command and "--lr 0.5 " in command


def test_scale_and_subset_reduce_a_config(repro):
    options = {"arch": "mlp:784-30-10", "epochs": 400, "train_subset": 1000}
    config = repro.make_config(options, seed=3, scale=0.01, train_subset=200, out="o", name="n", data_dir="d",
                               progress=False)
    assert (config.epochs, config.train_subset, config.seed, config.data_dir) == (4, 200, 3, "d")
    config = repro.make_config(options, seed=0, scale=0.0001, train_subset=5000, out="o", name="n", data_dir=None,
                               progress=False)
    assert config.epochs == 1 and config.train_subset == 1000  # at least one epoch; never more images


def test_threshold_rows_are_judged_on_the_mean_over_seeds(repro):
    row = repro.ROWS_BY_NAME["lenet5"]  # target 99.0%
    ours, verdict, passed = repro.judge(row, entry([{"main": {"test_accuracy": 0.992}},
                                                    {"main": {"test_accuracy": 0.986}}]))
    assert passed is False and verdict == "fail"  # mean 98.9%, although one seed passed
    assert ours.startswith("98.90% ± 0.42") and "min 98.60%" in ours and "max 99.20%" in ours
    ours, verdict, passed = repro.judge(row, entry([{"main": {"test_accuracy": 0.9905}}]))
    assert (ours, verdict, passed) == ("99.05%", "pass", True)
    _, verdict, _ = repro.judge(row, entry([{"main": {"test_accuracy": 0.995}}], scale=0.1))
    assert "reduced run, not a result" in verdict


def overfit_summary(train, val, peak):
    return {"final_train_accuracy": train, "final_val_accuracy": val, "peak_val_accuracy": peak,
            "test_accuracy": val}


def test_overfitting_row_needs_the_whole_picture(repro):
    row = repro.ROWS_BY_NAME["nielsen-overfitting"]
    good = {"without": overfit_summary(1.0, 0.82, 0.84), "with": overfit_summary(0.97, 0.87, 0.88)}
    ours, verdict, passed = repro.judge(row, entry([good]))
    assert passed and verdict.startswith("pass") and ours.startswith("84.00% / 88.00% (peak validation)")
    no_memorising = {**good, "without": overfit_summary(0.95, 0.82, 0.84)}
    _, verdict, passed = repro.judge(row, entry([no_memorising]))
    assert not passed and "memorises without L2" in verdict
    l2_no_help = {**good, "with": overfit_summary(1.0, 0.81, 0.83)}
    _, verdict, passed = repro.judge(row, entry([l2_no_help]))
    assert not passed and "higher peak with L2" in verdict and "smaller gap with L2" in verdict


def test_render_keeps_unrun_rows_and_marks_them(repro):
    results = {"version": 1, "rows": {"lenet5": entry([{"main": {"test_accuracy": 0.991}}])}}
    text = repro.render(results)
    table = [line for line in text.splitlines() if line.startswith("| ")][2:]
    assert len(table) == len(repro.ROWS)
    lenet = next(line for line in table if line.startswith("| `lenet5` (tanh"))
    assert "| 99.10% |" in lenet and "| pass |" in lenet and "| 60 s |" in lenet and "| 0 |" in lenet
    assert sum("not run yet" in line for line in table) == len(repro.ROWS) - 1


def test_smoke_run_writes_results_and_keeps_earlier_rows(repro, fake_mnist, tmp_path):
    out, results = tmp_path / "runs", tmp_path / "results.json"
    common = ["--scale", "0.01", "--train-subset", "30", "--data-dir", str(fake_mnist.data_dir), "--out", str(out)]
    assert repro.main(["--only", "keras-mnist-b1000", "lenet5", *common], echo=quiet) == 0
    # A reduced run goes to <out>/results.json by default, never to docs/results.json.
    stored = json.loads((out / "results.json").read_text())
    assert set(stored["rows"]) == {"keras-mnist-b1000", "lenet5"}
    first = stored["rows"]["keras-mnist-b1000"]
    part = first["runs"][0]["parts"]["main"]
    assert 0 <= part["test_accuracy"] <= 1 and part["epochs"] == 1 and Path(part["run"]).is_dir()
    assert first["scale"] == 0.01 and first["train_subset"] == 30 and "--scale 0.01" in first["command"]

    os.replace(out / "results.json", results)
    assert repro.main(["--only", "lenet5", "--runs", "2", "--results", str(results), *common], echo=quiet) == 0
    stored = json.loads(results.read_text())
    assert stored["rows"]["keras-mnist-b1000"] == first  # not run this time: kept as it was
    assert [r["seed"] for r in stored["rows"]["lenet5"]["runs"]] == [0, 1]
    markdown = results.with_suffix(".md").read_text()
    assert "reduced: epochs × 0.01, 30 training images" in markdown
    assert markdown.count("not run yet") == len(repro.ROWS) - 2


def test_add_seeds_pools_new_seeds_with_the_earlier_runs(repro, fake_mnist, tmp_path, capsys):
    out, results = tmp_path / "runs", tmp_path / "results.json"
    common = ["--only", "lenet5", "--scale", "0.01", "--train-subset", "30", "--data-dir",
              str(fake_mnist.data_dir), "--out", str(out), "--results", str(results)]
    assert repro.main([*common, "--add-seeds"], echo=quiet) == 2  # nothing to add to yet
    assert "needs earlier runs" in capsys.readouterr().err and not results.exists()
    assert repro.main(common, echo=quiet) == 0
    assert repro.main([*common, "--add-seeds", "--seed", "1", "--runs", "2"], echo=quiet) == 0
    entry = json.loads(results.read_text())["rows"]["lenet5"]
    assert [r["seed"] for r in entry["runs"]] == [0, 1, 2]
    assert entry["command"].startswith("python benchmarks/reproduce.py --only lenet5 --runs 3 ")
    assert "| 0, 1, 2 |" in results.with_suffix(".md").read_text()
    # a seed measured already, or other settings, is refused before any training
    assert repro.main([*common, "--add-seeds", "--seed", "2"], echo=quiet) == 2
    assert "seed(s) [2] were measured already" in capsys.readouterr().err
    assert repro.main([*common[:-4], "--scale", "0.02", *common[-4:], "--add-seeds", "--seed", "5"], echo=quiet) == 2
    assert "--scale/--train-subset differ" in capsys.readouterr().err
    assert [r["seed"] for r in json.loads(results.read_text())["rows"]["lenet5"]["runs"]] == [0, 1, 2]
    # entries stored before settings were recorded cannot be checked: refused
    stored = json.loads(results.read_text())
    del stored["rows"]["lenet5"]["settings"]
    results.write_text(json.dumps(stored))
    assert repro.main([*common, "--add-seeds", "--seed", "7"], echo=quiet) == 2
    assert "predate recorded settings" in capsys.readouterr().err
    args = repro.parse_args(["--only", "lenet5"])
    assert repro.reproduce_command("lenet5", args, [2, 0, 1, 7]) == (
        "python benchmarks/reproduce.py --only lenet5 --runs 3 (then --add-seeds with seeds 7)")


def test_unknown_rows_and_bad_options_are_refused(repro, capsys):
    with pytest.raises(SystemExit):
        repro.main(["--only", "lenet6"])
    assert "unknown row(s) lenet6" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        repro.main(["--scale", "0"])


def test_list_names_every_row(repro):
    lines = []
    assert repro.main(["--list"], echo=lines.append) == 0
    assert [line.split()[0] for line in lines] == [row.name for row in repro.ROWS]


@pytest.mark.data
def test_nielsen_row_holds_out_10000_images(repro, tmp_path, real_data):
    data = real_data("mnist")
    out = tmp_path / "runs"
    assert repro.main(["--only", "nielsen-30-quadratic", "--scale", "0.01", "--train-subset", "100",
                       "--data-dir", str(data), "--out", str(out)], echo=quiet) == 0
    part = json.loads((out / "results.json").read_text())["rows"]["nielsen-30-quadratic"]["runs"][0]["parts"]["main"]
    record = json.loads((Path(part["run"]) / "config.json").read_text())
    assert record["resolved"]["n_val"] == 10000 and record["resolved"]["n_train"] == 100
    assert record["config"]["loss"] == "quadratic" and record["config"]["lr"] == 3.0
    assert 0.1 < part["test_accuracy"] <= 1  # 100 images, one epoch: better than chance


def test_engine_check_compares_the_means_with_pytorchs(repro):
    results = {"version": 1, "rows": {"lenet5": entry([{"main": {"test_accuracy": 0.9878}}]),
                                      "fashion-lenet5": entry([{"main": {"test_accuracy": 0.9000}}])},
               "peers": {"torch": {"lenet5": entry([{"main": {"test_accuracy": 0.9905}}, {"main": {"test_accuracy": 0.9901}}]),
                                   "fashion-lenet5": entry([{"main": {"test_accuracy": 0.9010}}])}}}
    table = [line for line in repro.render(results).splitlines() if line.startswith("| ")]
    lenet = next(line for line in table if line.startswith("| `lenet5` (tanh"))
    assert "| 99.03% ± 0.03 (min 99.01%, max 99.05%) (reaches the target; seeds 0, 1) |" in lenet
    assert "| -0.27 pp: differ |" in lenet and "| 60 s (PyTorch 60 s) |" in lenet
    fashion = next(line for line in table if line.startswith("| Fashion-MNIST, `lenet5`"))
    assert "| -0.10 pp: agree |" in fashion and "(reaches the target; seeds 0)" in fashion
    assert sum("no run yet" in line for line in table) == len(repro.ROWS) - 2


def test_peer_run_is_stored_apart_from_cnnlabs(repro, fake_mnist, tmp_path):
    pytest.importorskip("torch", reason="--peer torch needs torch (pip install -e '.[test]')")
    out, results = tmp_path / "runs", tmp_path / "results.json"
    common = ["--only", "lenet5", "--scale", "0.01", "--train-subset", "30", "--data-dir", str(fake_mnist.data_dir),
              "--out", str(out), "--results", str(results)]
    assert repro.main(common, echo=quiet) == 0
    ours = json.loads(results.read_text())["rows"]["lenet5"]
    assert repro.main([*common, "--peer", "torch"], echo=quiet) == 0
    stored = json.loads(results.read_text())
    assert stored["rows"]["lenet5"] == ours  # cnnlab's runs untouched
    peer = stored["peers"]["torch"]["lenet5"]
    assert peer["engine"] == "torch" and peer["command"].endswith("--peer torch")
    assert Path(peer["runs"][0]["parts"]["main"]["run"]).name.startswith("lenet5-torch-seed0")
    assert 0 <= peer["runs"][0]["parts"]["main"]["test_accuracy"] <= 1
    line = next(line for line in results.with_suffix(".md").read_text().splitlines() if line.startswith("| `lenet5` (tanh"))
    assert " pp: " in line  # the engine check is filled in


def test_engine_check_uses_the_seeds_both_ran(repro):
    results = {"version": 1, "rows": {"lenet5": entry([{"main": {"test_accuracy": a}} for a in (0.99, 0.98, 0.97)])},
               "peers": {"torch": {"lenet5": entry([{"main": {"test_accuracy": 0.9895}}])}}}
    lenet = next(line for line in repro.render(results).splitlines() if line.startswith("| `lenet5` (tanh"))
    assert "| +0.05 pp: agree (seeds 0) |" in lenet


def test_a_recipe_that_gets_stuck_is_recorded_not_a_crash(repro, fake_mnist, tmp_path, monkeypatch):
    from cnnlab.training import loop

    # the guard of cnnlab train finds the epoch stuck, as it did the course CNN on all of MNIST
    monkeypatch.setattr(loop.DivergenceGuard, "check", lambda self, history, row, chance: "training is stuck")
    row = repro.ROWS_BY_NAME["lenet5"]
    results = tmp_path / "results.json"
    lines = []
    assert repro.main(["--only", "lenet5", "--scale", "0.01", "--train-subset", "30", "--data-dir",
                       str(fake_mnist.data_dir), "--out", str(tmp_path / "runs"), "--results", str(results)],
                      echo=lines.append) == 0
    part = json.loads(results.read_text())["rows"]["lenet5"]["runs"][0]["parts"]["main"]
    assert part["stop_reason"] == "diverged" and part["error"] and part["test_accuracy"] is None
    assert any(line.startswith("training stopped:") for line in lines)
    ours, verdict, passed = repro.judge(row, json.loads(results.read_text())["rows"]["lenet5"])
    assert ours.startswith("training stopped: ") and verdict == "fail" and passed is False
