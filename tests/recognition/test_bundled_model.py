"""The model that ships inside the package: present, accurate, and right on the example pictures."""

import json


from cnnlab.cli import main
from cnnlab.io import bundled_model_path, load_bundled_model


def test_bundled_models_ship_with_the_package_and_are_small():
    path = bundled_model_path()
    assert path.is_file(), f"{path} is missing: the package must ship its model"
    assert path.stat().st_size < 4_000_000
    model = load_bundled_model()
    assert model.info["architecture"]["name"] == "cnn-bn"
    assert model.input_shape == (1, 28, 28)
    assert model.info["class_names"] == [*"0123456789", "not a digit"]
    teaching = load_bundled_model("lenet5")  # the course's small network, by name
    assert teaching.info["architecture"]["name"] == "lenet5" and bundled_model_path("lenet5").stat().st_size < 300_000


def test_bundled_model_reaches_99_6_percent_on_the_mnist_test_set(real_data):
    """Its "not a digit" answers count as wrong here; LeNet-5, the teaching model, keeps its 99%."""
    from cnnlab.data import load_dataset

    test = load_dataset("mnist", split="test", data_dir=real_data("mnist"))
    accuracy = load_bundled_model().evaluate(test).accuracy
    assert accuracy >= 0.996, f"bundled model: {accuracy:.4f} on MNIST test"
    assert load_bundled_model("lenet5").evaluate(test).accuracy >= 0.99


def test_predict_example_reads_the_shipped_drawings(capsys):
    assert main(["predict", "--example", "--json"]) == 0
    answers = {r["file"].rsplit("/", 1)[-1]: r["prediction"] for r in json.loads(capsys.readouterr().out)}
    assert answers == {"seven.png": 7, "three.png": 3}


def test_predict_example_number(capsys):
    assert main(["predict", "--example", "--number", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["number"] == "2026"


def test_predict_without_pictures_is_a_usage_error(capsys):
    assert main(["predict"]) != 0
    assert "--example" in capsys.readouterr().err


def test_predict_reports_each_bad_picture_and_goes_on(tmp_path, capsys):
    """One unreadable file among good ones: its own error in its own result, the rest answered, exit 1."""
    from cnnlab.recognition.serve.cli import example_pictures

    seven = next(p for p in example_pictures(False) if str(p).endswith("seven.png"))
    fake = tmp_path / "fake.png"
    fake.write_text("not a picture")
    assert main(["predict", str(seven), str(fake), str(seven), "--json"]) == 1
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert [r["prediction"] for r in results] == [7, None, 7]
    assert "could not be read as one" in results[1]["error"] and "1 of 3 pictures" in captured.err
    assert main(["predict", str(fake)]) == 2  # a single bad picture: one line that names it
    assert f"{fake}:" in capsys.readouterr().err


def test_percentages_never_round_up_to_certainty():
    from cnnlab.recognition.calibration import percent

    assert percent(0.99996, 2) == ">99.99%" and percent(0.9996, 1) == ">99.9%" and percent(0.996, 0) == ">99%"
    assert percent(1.0, 2) == "100.00%" and percent(0.5, 1) == "50.0%" and percent(0.0, 2) == "0.00%"
