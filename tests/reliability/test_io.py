"""Model files: safetensors round trip, strict loading, atomic writes."""

import json

import numpy as np
import pytest

from cnnlab.training.presets import build
from cnnlab.engine.errors import ModelFileError
from cnnlab.io import load_model, read_model_info, save_model


@pytest.mark.parametrize("arch", ["lenet5", "cnn-bn", "mlp:784-30-10"])
def test_round_trip_gives_identical_predictions(tmp_path, arch):
    model = build(arch, seed=5)
    if arch == "cnn-bn":  # give BatchNorm non-trivial running statistics, which must be saved too
        for layer in model.layers:
            for buf in layer.buffers.values():
                buf[...] = np.random.default_rng(0).random(buf.shape) + 0.5
    path = save_model(model, tmp_path / "m.safetensors", class_names=list("0123456789"), extra={"acc": 0.99})
    loaded = load_model(path)
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(model.predict_proba(x), loaded.predict_proba(x))
    assert loaded.info["extra"] == {"acc": 0.99}
    assert read_model_info(path)["architecture"]["name"] == arch
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left behind


def test_missing_and_garbage_files_are_clear_errors(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"this is not a model")
    with pytest.raises(ModelFileError, match="not a readable safetensors"):
        load_model(bad)


def test_tensor_with_wrong_shape_is_refused(tmp_path):
    from safetensors.numpy import save_file

    model = build("lenet5")
    path = save_model(model, tmp_path / "m.safetensors")
    info = read_model_info(path)
    tensors = dict(model.state_dict())
    tensors["layers.0.W"] = np.zeros((6, 1, 3, 3), np.float32)
    save_file(tensors, str(path), metadata={"cnnlab": json.dumps(info)})
    with pytest.raises(ModelFileError, match=r"layers.0.W has shape \(6, 1, 3, 3\); the architecture needs \(6, 1, 5, 5\)"):
        load_model(path)


def _rewrite(path, info=None, tensors=None, raw_metadata=None):
    """Write a (hostile) model file: the given metadata and tensors in place of the real ones."""
    from safetensors.numpy import save_file

    save_file(tensors, str(path), metadata={"cnnlab": raw_metadata if raw_metadata is not None else json.dumps(info)})


@pytest.mark.parametrize("units", [10**6, 10**9])
def test_a_file_cannot_make_us_allocate_what_its_metadata_asks_for(tmp_path, units):
    """A Dense of 10^9 units once tried to allocate 2.9 TiB (MemoryError) before any check."""
    model = build("mlp:784-30-10")
    path = save_model(model, tmp_path / "m.safetensors")
    info = read_model_info(path)
    info["architecture"]["layers"][1]["config"]["units"] = units  # layer 0 is the Flatten
    _rewrite(path, info, dict(model.state_dict()))
    with pytest.raises(ModelFileError, match=r"layers.1.W has shape \(784, 30\); the architecture needs "
                                             rf"\(784, {units}\)|parameters; at most|per sample is more than"):
        load_model(path)


def test_huge_input_shape_and_layer_count_are_refused_before_building(tmp_path):
    model = build("mlp:784-30-10")
    path = save_model(model, tmp_path / "m.safetensors")
    info = read_model_info(path)
    wide = json.loads(json.dumps(info))
    wide["architecture"]["input_shape"] = [100_000, 100_000]
    _rewrite(path, wide, dict(model.state_dict()))
    with pytest.raises(ModelFileError, match="values"):
        load_model(path)
    many = json.loads(json.dumps(info))
    many["architecture"]["layers"] = [{"type": "ReLU", "config": {}}] * 100_000
    _rewrite(path, many, dict(model.state_dict()))
    with pytest.raises(ModelFileError, match="100,000 layers"):
        load_model(path)


def test_deeply_nested_metadata_is_a_clear_error(tmp_path):
    model = build("mlp:784-30-10")
    path = tmp_path / "m.safetensors"
    _rewrite(path, tensors=dict(model.state_dict()), raw_metadata="[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelFileError, match="nested too deeply"):
        load_model(path)


@pytest.mark.parametrize(("value", "message"), [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite")])
def test_non_finite_weights_are_refused(tmp_path, value, message):
    model = build("lenet5")
    path = save_model(model, tmp_path / "m.safetensors")
    tensors = dict(model.state_dict())
    tensors["layers.3.W"] = tensors["layers.3.W"].copy()
    tensors["layers.3.W"][0, 0, 0, 0] = value
    _rewrite(path, read_model_info(path), tensors)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_integer_weights_are_refused(tmp_path):
    model = build("lenet5")
    path = save_model(model, tmp_path / "m.safetensors")
    tensors = dict(model.state_dict())
    tensors["layers.0.W"] = tensors["layers.0.W"].astype(np.int32)
    _rewrite(path, read_model_info(path), tensors)
    with pytest.raises(ModelFileError, match="layers.0.W has dtype I32; expected floating point"):
        load_model(path)


def test_unknown_layer_options_name_the_layer_not_python(tmp_path):
    model = build("mlp:784-30-10")
    path = save_model(model, tmp_path / "m.safetensors")
    info = read_model_info(path)
    info["architecture"]["layers"][0]["config"] = {"units": 3}
    _rewrite(path, info, dict(model.state_dict()))
    with pytest.raises(ModelFileError, match=r"layer 0 \(Flatten\): options \['units'\] are not") as caught:
        load_model(path)
    assert "__init__" not in str(caught.value)


@pytest.mark.parametrize("arch", ["lenet5", "vgg-mini", "keras-mnist", "cnn-bn", "mlp:784-30-10"])
def test_state_shapes_are_what_build_creates(arch):
    """The shapes a file is checked against are exactly the arrays the layers build."""
    model = build(arch)
    for layer in model.layers:
        built = {**{k: v.shape for k, v in layer.params.items()}, **{k: v.shape for k, v in layer.buffers.items()}}
        assert layer.state_shapes(layer.input_shape) == built


def test_failed_save_leaves_the_old_file_intact(tmp_path, monkeypatch):
    model = build("lenet5")
    path = save_model(model, tmp_path / "m.safetensors")
    before = path.read_bytes()

    import safetensors.numpy

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save", broken_save)
    with pytest.raises(OSError):
        save_model(build("lenet5", seed=9), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_saved_files_get_ordinary_permissions(tmp_path):
    import os

    path = save_model(build("lenet5"), tmp_path / "m.safetensors")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
