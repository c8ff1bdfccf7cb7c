"""Model files: safetensors round trip, strict loading, atomic writes."""

import json

import numpy as np
import pytest

from cnnlab.architectures import build
from cnnlab.errors import ModelFileError
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
    with pytest.raises(ModelFileError, match=r"layers.0.W: expected shape \(6, 1, 5, 5\)"):
        load_model(path)


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
