"""ONNX export: the graph passes onnx.checker, and onnxruntime computes what cnnlab computes (float32)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from cnnlab.cli import main
from cnnlab.io import load_bundled_model, load_model, save_model

onnx = pytest.importorskip("onnx", reason="ONNX export tests need onnx (pip install -e '.[test]')")
ort = pytest.importorskip("onnxruntime", reason="ONNX export tests need onnxruntime (pip install -e '.[test]')")
from cnnlab.interop.onnx_export import OPSET, onnx_metadata, to_onnx  # noqa: E402
from export_models import PRESETS, every_layer_model, preset  # noqa: E402

TOLERANCE = 1e-5


def run_onnx(proto_or_path, x: np.ndarray) -> np.ndarray:
    source = proto_or_path.SerializeToString() if hasattr(proto_or_path, "SerializeToString") else str(proto_or_path)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def mnist_inputs(real_data, n: int = 1000) -> np.ndarray:
    """The first ``n`` MNIST test images as network inputs (float32 (n, 1, 28, 28), the model's scaling)."""
    from cnnlab.data import load_dataset
    from cnnlab.data.normalize import normalize

    test = load_dataset("mnist", split="test", data_dir=real_data("mnist"), download=False, progress=False)
    return normalize(test.images[:n])


@pytest.mark.data
@pytest.mark.parametrize("name", [*PRESETS, "bundled"])
def test_every_preset_matches_onnxruntime_on_1000_mnist_test_images(real_data, name):
    model = load_bundled_model() if name == "bundled" else preset(name)
    x = mnist_inputs(real_data)
    proto = to_onnx(model)
    onnx.checker.check_model(proto, full_check=True)
    ours, theirs = model.predict_proba(x), run_onnx(proto, x)
    assert theirs.shape == ours.shape == (1000, model.output_shape[-1]) and theirs.dtype == np.float32
    assert np.abs(ours - theirs).max() <= TOLERANCE
    if name == "bundled":  # the trained model: the same answers, not only close numbers
        assert (ours.argmax(1) == theirs.argmax(1)).all()


@pytest.mark.parametrize("softmax", [True, False], ids=["probabilities", "logits"])
def test_every_layer_type_and_option_matches_onnxruntime(softmax):
    model = every_layer_model(softmax=softmax)
    x = np.random.default_rng(1).normal(size=(64, 3, 13, 11)).astype(np.float32)  # negatives reach ELU etc.
    proto = to_onnx(model)
    ours, theirs = model.predict_proba(x), run_onnx(proto, x)
    assert theirs.shape == ours.shape
    assert np.abs(ours - theirs).max() <= TOLERANCE
    ops = [node.op_type for node in proto.graph.node]
    expected = ["Conv", "BatchNormalization", "LeakyRelu", "Conv", "Elu", "MaxPool", "Conv", "Sigmoid",
                "AveragePool", "Flatten", "Gemm", "BatchNormalization", "Tanh", "Identity", "Gemm", "Relu",
                "Gemm"] + (["Softmax"] if softmax else [])
    assert ops == expected
    pads = {node.name: list(a.ints) for node in proto.graph.node for a in node.attribute if a.name == "pads"}
    assert pads == {"conv2d_0": [1, 0, 1, 0], "conv2d_3": [1, 1, 2, 2], "conv2d_6": [1, 0, 1, 1]}


def test_the_batch_axis_is_free_and_the_opset_is_17():
    model = preset("lenet5")
    proto = to_onnx(model)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", OPSET)] and OPSET == 17
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    for n in (1, 7):
        x = np.random.default_rng(n).random((n, 1, 28, 28), dtype=np.float32)
        assert np.abs(run_onnx(proto, x) - model.predict_proba(x)).max() <= TOLERANCE


def test_preprocessing_and_class_names_go_into_the_metadata(tmp_path):
    preprocessing = {"scale": 1 / 255, "mean": 0.2860, "std": 0.3530, "polarity": "light-on-dark",
                     "size": [28, 28], "channels": 1}
    names = [f"class {i}" for i in range(10)]
    path = save_model(preset("keras-mnist"), tmp_path / "m.safetensors", class_names=names,
                      preprocessing=preprocessing)
    assert main(["export", str(path), "--format", "onnx", "-o", str(tmp_path / "m.onnx")]) == 0
    proto = onnx.load(str(tmp_path / "m.onnx"))
    meta = onnx_metadata(proto)
    assert meta["preprocessing"] == preprocessing and meta["class_names"] == names
    assert meta["architecture"] == load_model(path).get_config()
    assert {p.key for p in proto.metadata_props} >= {"cnnlab.preprocessing", "cnnlab.class_names"}
    assert json.loads({p.key: p.value for p in proto.metadata_props}["cnnlab.preprocessing"])["std"] == 0.3530


def test_cli_exports_a_run_folder_and_replaces_an_old_file_whole(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    model = preset("vgg-mini")
    save_model(model, run / "model.safetensors")
    out = tmp_path / "model.onnx"
    out.write_bytes(b"an older export")
    assert main(["export", str(run), "-o", str(out)]) == 0  # format from the suffix
    assert "opset 17" in capsys.readouterr().out
    x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    assert np.abs(run_onnx(out, x) - model.predict_proba(x)).max() <= TOLERANCE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "run"]  # no temporary file left


def test_cli_refuses_bad_requests_in_one_line_and_writes_nothing(tmp_path, capsys):
    model_file = save_model(preset("mlp"), tmp_path / "m.safetensors")
    before = model_file.read_bytes()
    cases = [
        (["export", str(model_file), "-o", str(tmp_path / "m.bin")], "cannot tell the format"),
        (["export", str(model_file), "--format", "onnx", "-o", str(model_file)], "is the input model itself"),
        (["export", str(tmp_path / "missing.safetensors"), "-o", str(tmp_path / "x.onnx")], "not found"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert model_file.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_missing_onnx_package_names_the_extra_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    assert main(["export", "--format", "onnx", "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "cnnlab[onnx]" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()
